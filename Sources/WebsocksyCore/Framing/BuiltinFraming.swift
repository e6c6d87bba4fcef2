import CWebsocksy
import Glibc

/// The built-in framing functions, written against the same C signature as plugins.
enum BuiltinFraming {
    /// The kind of messages a built-in cuts: what the core may rely on without checking.
    enum Kind {
        /// Text only when the bytes are valid UTF-8, else binary (`auto`, `newline`).
        case textWhenValid
        /// Always binary (`binary`, `separator`).
        case binary
    }

    /// The kind of `function` when it is a built-in; nil for a plugin's function.
    static func kind(of function: ws_framing) -> Kind? {
        switch address(of: function) {
        case address(of: auto), address(of: autoDatagram), address(of: newline): .textWhenValid
        case address(of: binary), address(of: separator): .binary
        default: nil
        }
    }

    /// The function to run for a peer: on datagram peers `auto` frames each datagram whole.
    static func forPeer(_ function: ws_framing, datagram: Bool) -> ws_framing {
        datagram && address(of: function) == address(of: auto) ? autoDatagram : function
    }

    /// Framing functions are C function pointers: two are the same function when their addresses are.
    static func address(of function: ws_framing) -> UnsafeRawPointer {
        unsafeBitCast(function, to: UnsafeRawPointer.self)
    }

    /// Everything now: text when it is valid UTF-8, else binary. A UTF-8 sequence cut off at the end
    /// of the buffer (the rest is still in flight) is held back so a text stream split mid-character
    /// stays text; it goes out with the next read.
    static let auto: ws_framing = { data, length, _, opcode, _, _ in
        guard let data, length > 0 else { return 0 }
        let bytes = UnsafeRawBufferPointer(start: data, count: length)
        var validator = UTF8Validator()
        guard validator.validate(bytes) else {
            opcode!.pointee = ws_frame_binary
            return Int64(length)
        }
        opcode!.pointee = ws_frame_text
        if validator.isComplete { return Int64(length) }
        // Valid but unfinished: frame the complete characters, keep the 1–3 trailing bytes.
        let tail = UTF8Validator.incompleteTailLength(bytes)
        return Int64(length - tail)
    }

    /// `auto` for datagram peers, where one read is one datagram and must be one message: all of it,
    /// text when it is valid UTF-8, else binary. Nothing is held back to join the next datagram.
    static let autoDatagram: ws_framing = { data, length, _, opcode, _, _ in
        guard let data else { return 0 }
        opcode!.pointee = UTF8Validator.isValid(UnsafeRawBufferPointer(start: data, count: length)) ? ws_frame_text : ws_frame_binary
        return Int64(length)
    }

    /// Everything now, binary.
    static let binary: ws_framing = { data, length, _, opcode, _, _ in
        guard data != nil else { return 0 }
        opcode!.pointee = ws_frame_binary
        return Int64(length)
    }

    /// Up to and including the configured separator; binary messages.
    static let separator: ws_framing = { data, length, _, opcode, state, config in
        cut(data, length, opcode, state) { (try? SeparatorSpec.parse(config.map { String(cString: $0) } ?? "")) ?? [] }
    }

    /// Up to and including the configured line end; text when valid UTF-8, else binary.
    static let newline: ws_framing = { data, length, _, opcode, state, config in
        let n = cut(data, length, opcode, state) { (try? SeparatorSpec.newline(config.map { String(cString: $0) })) ?? [] }
        if n > 0, let data, UTF8Validator.isValid(UnsafeRawBufferPointer(start: data, count: Int(n))) {
            opcode!.pointee = ws_frame_text
        }
        return n
    }

    /// The shared separator search. Per-connection state (malloc'd on first use, freed by the
    /// NULL-data call) holds the separator and how far the buffer was already searched, so a long
    /// line arriving in many reads is scanned once, and a separator split across reads is found.
    private static func cut(_ data: UnsafeMutablePointer<UInt8>?, _ length: Int, _ opcode: UnsafeMutablePointer<ws_operation>?,
                            _ state: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ separator: () -> [UInt8]) -> Int64 {
        guard let state else { return -1 }
        guard let data else {
            free(state.pointee)
            state.pointee = nil
            return 0
        }
        if state.pointee == nil {
            let bytes = separator()
            guard !bytes.isEmpty, let block = malloc(2 * MemoryLayout<Int>.stride + bytes.count) else { return -1 }
            block.storeBytes(of: 0, as: Int.self)
            block.storeBytes(of: bytes.count, toByteOffset: MemoryLayout<Int>.stride, as: Int.self)
            bytes.withUnsafeBytes { (block + 2 * MemoryLayout<Int>.stride).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
            state.pointee = block
        }
        let block = state.pointee!
        let scanned = block.load(as: Int.self)
        let sepLength = block.load(fromByteOffset: MemoryLayout<Int>.stride, as: Int.self)
        let sep = (block + 2 * MemoryLayout<Int>.stride).assumingMemoryBound(to: UInt8.self)
        opcode!.pointee = ws_frame_binary
        var i = min(scanned, length)
        let first = sep[0]
        while i + sepLength <= length {
            guard let hit = memchr(data + i, Int32(first), length - i - sepLength + 1) else { break }
            let at = UnsafeMutableRawPointer(hit).assumingMemoryBound(to: UInt8.self) - data
            if memcmp(data + at, sep, sepLength) == 0 {
                block.storeBytes(of: 0, as: Int.self)
                return Int64(at + sepLength)
            }
            i = at + 1
        }
        // Nothing yet: next time resume where a separator could still start.
        block.storeBytes(of: max(0, length - sepLength + 1), as: Int.self)
        return 0
    }
}
