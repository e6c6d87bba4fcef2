/// The server side of an open WebSocket connection, without I/O: the frame rules of
/// `WebSocketReader` plus the control-frame and close-handshake rules of RFC 6455 §5.5 and §7.
/// It is handed the bytes the client sent and returns one action at a time for the caller to carry
/// out; the caller never decides a protocol question itself.
///
/// - A ping is answered with a pong carrying the same payload (§5.5.2), until a Close is sent.
/// - The first Close received is answered with a Close echoing its status code (§5.5.1), unless
///   one was sent already; either way the close handshake is then complete and nothing more is read.
/// - Nothing is sent after a Close (§5.5.1): `startClose` returns false the second time.
/// - Data received after our Close is still handed out: the client sent it before it saw ours, and
///   a peer that is still reading may want it.
/// - A protocol violation fails the connection with its close code (1002, 1007, 1009; §7.1.7).
/// - With permessage-deflate, compressed messages are inflated here (see `+Inflate`): the actions
///   carry what the client meant, and the size limit and UTF-8 apply to that.
public struct WebSocketSession {
    public enum Action {
        /// Nothing more can be decoded from the bytes given.
        case needMore
        /// Payload of a text or binary message (see `WebSocketReader.Event.data`).
        case deliver(UnsafeMutableRawBufferPointer, opcode: Opcode, messageStart: Bool, messageEnd: Bool)
        /// Send this control frame to the client now (a pong).
        case reply(Opcode, UnsafeRawBufferPointer)
        /// Nothing to do (a pong, or a ping after our Close).
        case none
        /// The client's Close arrived before ours: send a Close with `code`, then the connection ends.
        case closeReceived(code: UInt16?, reply: CloseCode)
        /// The client answered our Close: the close handshake is complete and the connection ends.
        case closeCompleted(code: UInt16?)
        /// The client broke the protocol: log `reason`, send a Close with `code` when `sendClose`
        /// (none may follow one already sent), and end.
        case fail(CloseCode, reason: String, sendClose: Bool)
    }

    var reader: WebSocketReader
    /// permessage-deflate, when the handshake agreed on it (its state lives there, so a session
    /// without it carries one pointer more).
    public let compression: PerMessageDeflate?
    /// A Close frame has been sent: no frame may follow it.
    public private(set) var closeSent = false
    /// The client's Close frame arrived: it sends nothing more.
    public private(set) var closeReceived = false
    /// The client's Close arrived or it broke the protocol: nothing more is read.
    public private(set) var isFinished = false

    public init(maxMessageSize: UInt64, compression: PerMessageDeflate? = nil) {
        reader = WebSocketReader(maxMessageSize: maxMessageSize)
        reader.allowsCompression = compression != nil
        self.compression = compression
    }

    /// Whether data frames and pongs may still be sent.
    public var canSend: Bool { !closeSent }

    /// Decodes the next action from `input`. Payloads point into `input`: the caller acts on the
    /// action, then drops `consumed` bytes, and calls again until `.needMore`.
    public mutating func next(_ input: UnsafeMutableRawBufferPointer) -> (consumed: Int, action: Action) {
        guard !isFinished else { return (input.count, .needMore) }
        if compression?.inflating != nil { return inflateStep(input) }
        let (consumed, event) = reader.next(input)
        switch event {
        case .needMore:
            return (consumed, .needMore)
        case .data(let payload, let opcode, let start, let end):
            if reader.messageCompressed {
                return startInflating(payload, in: input, consumed: consumed, opcode: opcode, messageStart: start, messageEnd: end)
            }
            return (consumed, .deliver(payload, opcode: opcode, messageStart: start, messageEnd: end))
        case .ping(let payload):
            return (consumed, closeSent ? .none : .reply(.pong, payload))
        case .pong:
            return (consumed, .none)
        case .close(let code, _):
            isFinished = true
            closeReceived = true
            if closeSent { return (consumed, .closeCompleted(code: code)) }
            closeSent = true
            return (consumed, .closeReceived(code: code, reply: code.map { CloseCode($0) } ?? .normalClosure))
        case .violation(let code, let why):
            return (consumed, failure(code, why))
        }
    }

    /// The client broke the protocol: nothing more is read, and a Close goes out unless one has.
    mutating func failure(_ code: CloseCode, _ why: String) -> Action {
        isFinished = true
        let mustSend = !closeSent
        closeSent = true
        return .fail(code, reason: why, sendClose: mustSend)
    }

    /// Starts a close from our side; true when the caller must send the Close frame now.
    public mutating func startClose() -> Bool {
        guard !closeSent else { return false }
        closeSent = true
        return true
    }

    /// The connection ends without a close handshake (the client vanished, a timeout).
    public mutating func abandon() {
        isFinished = true
        closeSent = true
        compression?.abandonMessage()
    }
}
