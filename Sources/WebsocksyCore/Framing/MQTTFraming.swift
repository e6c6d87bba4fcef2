import CWebsocksy

extension BuiltinFraming {
    /// One MQTT control packet per message, binary: the Fixed Header (one byte of packet type and
    /// flags, then the Remaining Length) and the Remaining Length bytes after it. MQTT 3.1.1 §2.2
    /// and MQTT 5 §2.1 share this header, so one framing serves both.
    ///
    /// The header says where the packet ends, so nothing is searched and nothing is kept between
    /// calls: a packet still in flight is asked for again (0) until all of it is buffered, and the
    /// gateway's `peer-buffer` cap ends a connection whose packet will not fit (1009).
    ///
    /// A Remaining Length that does not end within four bytes is a Malformed Packet (MQTT 3.1.1
    /// §2.2.3, MQTT 5 §1.5.5): the stream cannot be cut any further, so the framing fails (1011).
    ///
    /// Deliberately not in `kind(of:)`: what is left when the peer closes is part of a packet, not
    /// a message, so it is dropped (with a `-v` log line) by the rule for plugins, not delivered.
    static let mqtt: ws_framing = { data, length, _, opcode, _, _ in
        guard let data else { return 0 }  // the end-of-connection call: no state to free
        opcode!.pointee = ws_frame_binary
        switch MQTTFixedHeader.decode(UnsafeRawBufferPointer(start: data, count: length)) {
        case .header(let size, let remainingLength):
            let packetLength = size + remainingLength
            return packetLength <= length ? Int64(packetLength) : 0
        case .needMore: return 0
        case .malformed: return -1
        }
    }
}

/// The MQTT Fixed Header, read from the start of a byte stream.
enum MQTTFixedHeader {
    enum Decoded: Equatable {
        /// The header is `size` bytes (2–5) and `remainingLength` bytes of the packet follow it.
        case header(size: Int, remainingLength: Int)
        /// The header is not all there yet.
        case needMore
        /// The Remaining Length has a fifth byte: no valid packet starts here.
        case malformed
    }

    /// The Remaining Length is a Variable Byte Integer of at most four bytes (268 435 455).
    static let maxRemainingLengthBytes = 4

    /// Reads the byte of packet type and flags, then the Remaining Length: 7 bits per byte, least
    /// significant first, the top bit (0x80) saying another byte follows.
    static func decode(_ bytes: UnsafeRawBufferPointer) -> Decoded {
        var remainingLength = 0
        for index in 0..<maxRemainingLengthBytes {
            let at = 1 + index
            guard at < bytes.count else { return .needMore }
            let encodedByte = bytes[at]
            remainingLength |= Int(encodedByte & 0x7F) << (7 * index)
            if encodedByte & 0x80 == 0 { return .header(size: at + 1, remainingLength: remainingLength) }
        }
        return .malformed
    }
}
