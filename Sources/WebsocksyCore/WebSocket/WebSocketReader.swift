/// The receiving half of the RFC 6455 protocol for a server, without I/O: it is handed the bytes a
/// client sent and returns one event at a time, unmasking payload in place and enforcing the rules
/// of §5 (framing, fragmentation, control frames), §8.1 (UTF-8 in text) and the message size limit.
///
/// Data payload is handed out as it arrives (a chunk of a frame at a time), so a large message is
/// streamed, never buffered whole here. Control frames are handed out complete (at most 125 bytes).
public struct WebSocketReader {
    public enum Event {
        /// Nothing more can be decoded from the bytes given.
        case needMore
        /// Payload of a text or binary message, unmasked and (for text) valid UTF-8 so far.
        /// `messageStart` marks its first chunk, `messageEnd` its last; an empty message is one
        /// event with both set.
        case data(UnsafeMutableRawBufferPointer, opcode: Opcode, messageStart: Bool, messageEnd: Bool)
        case ping(UnsafeRawBufferPointer)
        case pong(UnsafeRawBufferPointer)
        /// A valid Close frame: its status code (nil when the body was empty) and UTF-8 reason.
        case close(code: UInt16?, reason: UnsafeRawBufferPointer)
        /// The client broke the protocol: fail the connection with this code (§7.1.7).
        case violation(CloseCode, String)
    }

    /// The largest message accepted (the sum of its fragments' payloads); larger ones get 1009.
    public var maxMessageSize: UInt64
    /// permessage-deflate is in force: RSV1 may mark a message's first frame as compressed.
    public var allowsCompression = false
    /// The message in progress (or the last one) had RSV1 on its first frame: its payload is
    /// compressed, so UTF-8 is checked and the size limit applied after inflating, not here.
    public private(set) var messageCompressed = false

    /// The frame whose payload is being read, if any.
    @usableFromInline var frame: FrameHeader?
    @usableFromInline var frameRemaining: UInt64 = 0
    @usableFromInline var maskOffset = 0
    /// Opcode of the data message in progress (between its first frame and its FIN frame).
    @usableFromInline var messageOpcode: Opcode?
    @usableFromInline var messageLength: UInt64 = 0
    @usableFromInline var messageStartPending = false
    @usableFromInline var utf8 = UTF8Validator()
    /// Set after a Close frame or a violation: everything after it is ignored (§5.5.1).
    public private(set) var isFinished = false

    public init(maxMessageSize: UInt64 = 16 << 20) {
        self.maxMessageSize = maxMessageSize
    }

    /// Decodes the next event from `input`. The caller drops `consumed` bytes from its buffer after
    /// it has used the event (event payloads point into `input`), and calls again until `.needMore`.
    /// `input` must be able to hold a whole control frame (139 bytes) for one to be decoded.
    public mutating func next(_ input: UnsafeMutableRawBufferPointer) -> (consumed: Int, event: Event) {
        if isFinished { return (input.count, .needMore) }
        var consumed = 0
        if frame == nil {
            switch FrameHeader.parse(UnsafeRawBufferPointer(input)) {
            case .incomplete:
                return (0, .needMore)
            case .invalidLength:
                return fail(.protocolError, "64-bit payload length with the most significant bit set")
            case .header(let header, let size):
                if let problem = check(header) { return problem }
                if header.opcodeValue & 0x8 != 0 {
                    return controlFrame(header, headerSize: size, input)
                }
                startDataFrame(header)
                consumed = size
                if header.payloadLength == 0 {
                    return (consumed, finishEmptyFrame(header))
                }
            }
        }
        let available = input.count - consumed
        guard available > 0 else { return (consumed, .needMore) }
        let take = Int(min(UInt64(available), frameRemaining))
        let chunk = UnsafeMutableRawBufferPointer(rebasing: input[consumed..<(consumed + take)])
        let header = frame!
        Masking.apply(key: header.maskingKey, offset: maskOffset, to: chunk)
        maskOffset = (maskOffset + take) & 3
        frameRemaining -= UInt64(take)
        consumed += take
        let opcode = messageOpcode!
        let frameDone = frameRemaining == 0
        let messageEnd = frameDone && header.fin
        if opcode == .text && !messageCompressed {
            guard utf8.validate(UnsafeRawBufferPointer(chunk)) else {
                return fail(.invalidPayload, "invalid UTF-8 in a text message", consumed: consumed)
            }
            if messageEnd && !utf8.isComplete {
                return fail(.invalidPayload, "text message ends inside a UTF-8 sequence", consumed: consumed)
            }
        }
        let start = messageStartPending
        messageStartPending = false
        if frameDone {
            frame = nil
            if header.fin { messageOpcode = nil }
        }
        return (consumed, .data(chunk, opcode: opcode, messageStart: start, messageEnd: messageEnd))
    }

    /// The header rules of §5.2–§5.5 that need no payload.
    private mutating func check(_ h: FrameHeader) -> (consumed: Int, event: Event)? {
        guard let opcode = h.opcode else {
            return fail(.protocolError, "reserved opcode \(h.opcodeValue)")
        }
        if h.rsv & 0b011 != 0 { return fail(.protocolError, "RSV2 or RSV3 set without a negotiated extension") }
        if h.rsv & 0b100 != 0 {
            // RFC 7692 §6: RSV1 marks a compressed message, on its first frame only.
            if !allowsCompression { return fail(.protocolError, "RSV1 set without a negotiated extension") }
            if opcode.isControl { return fail(.protocolError, "RSV1 set on a control frame") }
            if opcode == .continuation { return fail(.protocolError, "RSV1 set on a continuation frame") }
        }
        if !h.masked { return fail(.protocolError, "client frame is not masked") }
        if opcode.isControl {
            if !h.fin { return fail(.protocolError, "fragmented control frame") }
            if h.payloadLength > 125 { return fail(.protocolError, "control frame payload over 125 bytes") }
            return nil
        }
        if opcode == .continuation {
            if messageOpcode == nil { return fail(.protocolError, "continuation frame without a message to continue") }
        } else if messageOpcode != nil {
            return fail(.protocolError, "new data frame inside a fragmented message")
        }
        let soFar = opcode == .continuation ? messageLength : 0
        let compressed = opcode == .continuation ? messageCompressed : h.rsv & 0b100 != 0
        let limit = compressed ? Self.compressedLimit(maxMessageSize) : maxMessageSize
        if h.payloadLength > limit || soFar + h.payloadLength > limit {
            return fail(.messageTooBig, "message exceeds \(maxMessageSize) bytes")
        }
        return nil
    }

    /// The most compressed bytes a message within `limit` once inflated may take on the wire.
    /// Inflating checks the real limit; this one only ends a message that never ends. A sender
    /// that flushes every fragment adds about 6 bytes to each, so a message cut into 1-byte
    /// fragments takes about 7 bytes per byte.
    static func compressedLimit(_ limit: UInt64) -> UInt64 {
        limit > UInt64.max / 16 ? limit : limit * 8 + 1024
    }

    private mutating func startDataFrame(_ h: FrameHeader) {
        if h.opcodeValue != Opcode.continuation.rawValue {
            messageOpcode = h.opcode
            messageCompressed = h.rsv & 0b100 != 0
            messageLength = 0
            messageStartPending = true
            utf8.reset()
        }
        messageLength += h.payloadLength
        frame = h
        frameRemaining = h.payloadLength
        maskOffset = 0
    }

    private mutating func finishEmptyFrame(_ h: FrameHeader) -> Event {
        let opcode = messageOpcode!
        frame = nil
        if h.fin {
            messageOpcode = nil
            if opcode == .text && !messageCompressed && !utf8.isComplete {
                return fail(.invalidPayload, "text message ends inside a UTF-8 sequence").event
            }
        }
        let start = messageStartPending
        messageStartPending = false
        return .data(UnsafeMutableRawBufferPointer(start: nil, count: 0), opcode: opcode, messageStart: start, messageEnd: h.fin)
    }

    private mutating func controlFrame(_ h: FrameHeader, headerSize: Int, _ input: UnsafeMutableRawBufferPointer) -> (consumed: Int, event: Event) {
        let total = headerSize + Int(h.payloadLength)
        guard input.count >= total else { return (0, .needMore) }
        let payload = UnsafeMutableRawBufferPointer(rebasing: input[headerSize..<total])
        Masking.apply(key: h.maskingKey, offset: 0, to: payload)
        let body = UnsafeRawBufferPointer(payload)
        switch h.opcode! {
        case .ping: return (total, .ping(body))
        case .pong: return (total, .pong(body))
        default: break
        }
        // Close (§5.5.1): empty, or a 2-byte code followed by a UTF-8 reason.
        if body.count == 0 {
            isFinished = true
            return (total, .close(code: nil, reason: body))
        }
        if body.count == 1 { return fail(.protocolError, "close frame with a 1-byte body", consumed: total) }
        let code = UInt16(body[0]) << 8 | UInt16(body[1])
        guard CloseCode.isValidOnWire(code) else {
            return fail(.protocolError, "invalid close code \(code)", consumed: total)
        }
        let reason = UnsafeRawBufferPointer(rebasing: body[2...])
        guard UTF8Validator.isValid(reason) else {
            return fail(.invalidPayload, "close reason is not valid UTF-8", consumed: total)
        }
        isFinished = true
        return (total, .close(code: code, reason: reason))
    }

    private mutating func fail(_ code: CloseCode, _ why: String, consumed: Int = 0) -> (consumed: Int, event: Event) {
        isFinished = true
        return (consumed, .violation(code, why))
    }
}
