@testable import WebsocksyCore

/// Builds a client frame byte by byte, masking with a plain loop independent of `Masking`.
func clientFrame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true, rsv: UInt8 = 0,
                 masked: Bool = true, key: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]) -> [UInt8] {
    var out: [UInt8] = [(fin ? 0x80 : 0) | (rsv << 4) | opcode]
    let maskBit: UInt8 = masked ? 0x80 : 0
    let n = payload.count
    if n < 126 {
        out.append(maskBit | UInt8(n))
    } else if n <= 0xFFFF {
        out += [maskBit | 126, UInt8(n >> 8), UInt8(n & 0xFF)]
    } else {
        out.append(maskBit | 127)
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((UInt64(n) >> UInt64(shift)) & 0xFF)) }
    }
    if masked {
        out += key
        for (i, b) in payload.enumerated() { out.append(b ^ key[i % 4]) }
    } else {
        out += payload
    }
    return out
}

func text(_ s: String) -> [UInt8] { Array(s.utf8) }

/// A reader event with its payload copied out, so events can be compared after the buffer moved on.
enum ReaderEvent: Equatable {
    case data([UInt8], Opcode, start: Bool, end: Bool)
    case ping([UInt8])
    case pong([UInt8])
    case close(UInt16?, [UInt8])
    case violation(UInt16)
}

/// Feeds `bytes` to a reader in chunks of `chunk` bytes, the way a connection does with its inbox.
func readEvents(_ bytes: [UInt8], chunk: Int = .max, maxMessage: UInt64 = 16 << 20) -> [ReaderEvent] {
    var reader = WebSocketReader(maxMessageSize: maxMessage)
    var pending: [UInt8] = []
    var events: [ReaderEvent] = []
    var offset = 0
    while offset < bytes.count {
        let end = min(bytes.count, offset + min(chunk, bytes.count))
        pending += bytes[offset..<end]
        offset = end
        loop: while true {
            let (consumed, event): (Int, ReaderEvent?) = pending.withUnsafeMutableBytes { buffer in
                let (consumed, event) = reader.next(buffer)
                switch event {
                case .needMore: return (consumed, nil)
                case .data(let p, let op, let s, let e): return (consumed, .data(Array(p), op, start: s, end: e))
                case .ping(let p): return (consumed, .ping(Array(p)))
                case .pong(let p): return (consumed, .pong(Array(p)))
                case .close(let code, let reason): return (consumed, .close(code, Array(reason)))
                case .violation(let code, _): return (consumed, .violation(code.rawValue))
                }
            }
            pending.removeFirst(consumed)
            guard let event else { break loop }
            events.append(event)
        }
    }
    return events
}

/// Joins data chunks into whole messages so results can be compared whatever the chunking.
enum MessageEvent: Equatable {
    case message([UInt8], Opcode)
    case other(ReaderEvent)
}

func messages(_ events: [ReaderEvent]) -> [MessageEvent] {
    var out: [MessageEvent] = []
    var current: [UInt8] = []
    for event in events {
        if case .data(let p, let op, _, let end) = event {
            current += p
            if end { out.append(.message(current, op)); current = [] }
        } else {
            out.append(.other(event))
        }
    }
    return out
}
