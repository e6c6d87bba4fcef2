// libFuzzer target: the WebSocket session (the frame reader with message rules and UTF-8 checks,
// control frames, the close handshake and permessage-deflate), fed in fuzzer-chosen pieces.
import WebsocksyCore

/// One pool for every run, as in the gateway (its buffers and lent inflaters outlive connections).
nonisolated(unsafe) let pool = CompressionPool(settings: DeflateSettings())
let withContext = DeflateParameters.negotiate(ExtensionOffer.parse(["permessage-deflate; client_max_window_bits"]), settings: DeflateSettings())!
let withoutContext = DeflateParameters.negotiate(ExtensionOffer.parse(["permessage-deflate"]), settings: DeflateSettings())!

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrames(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 3 else { return 0 }
    // The first byte picks the piece size, the second the message limit, the third whether the
    // server has already sent its Close (bit 0) and whether compression was agreed, keeping the
    // client's window (bit 1) or not (bit 2): all matter to the session.
    let piece = Int(data[0]) + 1
    let limit = UInt64(data[1]) << 8
    let parameters = data[2] & 2 != 0 ? withContext : data[2] & 4 != 0 ? withoutContext : nil
    var session = WebSocketSession(maxMessageSize: limit, compression: parameters.map { PerMessageDeflate(parameters: $0, pool: pool) })
    if data[2] & 1 == 1 { precondition(session.startClose()) }
    var messageBytes: UInt64 = 0
    var pending: [UInt8] = []
    var offset = 3
    while offset < size {
        let end = min(size, offset + piece)
        pending.append(contentsOf: UnsafeBufferPointer(start: data + offset, count: end - offset))
        offset = end
        while true {
            let (consumed, action) = pending.withUnsafeMutableBytes { session.next($0) }
            precondition(consumed >= 0 && consumed <= pending.count)
            pending.removeFirst(consumed)
            switch action {
            case .needMore:
                break
            case .reply:
                precondition(session.canSend, "a pong after our Close")
                continue
            case .deliver(let payload, _, let start, let end):
                // Inflated or not, no message grows past the limit, in chunks of bounded size.
                if start { messageBytes = 0 }
                messageBytes += UInt64(payload.count)
                precondition(messageBytes <= limit && payload.count <= 64 << 10)
                if end { messageBytes = 0 }
                continue
            case .none:
                continue
            case .closeReceived, .closeCompleted, .fail:
                precondition(session.isFinished && !session.canSend)
                return 0
            }
            break
        }
    }
    return 0
}
