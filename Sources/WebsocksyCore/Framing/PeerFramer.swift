import CWebsocksy

/// One connection's use of a framing function: the function, its configuration string and the
/// per-connection `framing_data` pointer, released through the function when the connection ends.
///
/// It also holds the line between what a framing function says and what reaches the client: a
/// message marked text that is not UTF-8 goes out as binary (RFC 6455 §8.1 forbids such text, and
/// browsers fail the connection on it), and bytes left unframed when the peer closes are delivered
/// or dropped by a fixed rule (`remainderAtClose`).
final class PeerFramer {
    enum Step: Equatable {
        case needMore
        /// The first `length` bytes form a message of this opcode; nil means discard them.
        case frame(length: Int, opcode: Opcode?)
        case failed(String)
    }

    private let function: ws_framing
    /// What the function guarantees when it is a built-in; nil for a plugin, whose text is checked.
    private let builtin: BuiltinFraming.Kind?
    /// Kept alive while `configPointer` is in use.
    private let config: FramingConfig
    private let configPointer: UnsafeMutablePointer<CChar>
    private var state: UnsafeMutableRawPointer?
    /// The client, for log lines.
    private let client: String
    /// Invalid text is logged once per connection, not once per message.
    private var loggedInvalidText = false

    /// Plugins written for websocksy read the configuration without a NULL check, so "no
    /// configuration" is passed as an empty string.
    private static let empty = FramingConfig("")

    /// `datagram`: the peer is UDP or unix-dgram, where each read is one datagram.
    init(function: ws_framing, config: FramingConfig?, datagram: Bool = false, client: String = "-") {
        self.function = BuiltinFraming.forPeer(function, datagram: datagram)
        self.builtin = BuiltinFraming.kind(of: self.function)
        self.config = config ?? Self.empty
        self.configPointer = self.config.pointer
        self.client = client
    }

    deinit {
        if state != nil {
            var opcode = ws_frame_binary
            _ = function(nil, 0, 0, &opcode, &state, configPointer)
        }
    }

    func next(_ data: UnsafeMutableRawBufferPointer, lastRead: Int) -> Step {
        var opcode = ws_frame_binary
        let n = function(data.baseAddress!.assumingMemoryBound(to: UInt8.self), data.count, lastRead, &opcode, &state, configPointer)
        if n == 0 { return .needMore }
        guard n > 0 else { return .failed("framing \(framingName) reported an error (\(n))") }
        guard n <= data.count else { return .failed("the framing function claimed \(n) of \(data.count) bytes") }
        let length = Int(n)
        switch opcode {
        case ws_frame_text: return .frame(length: length, opcode: checkedText(UnsafeRawBufferPointer(rebasing: data[0..<length])))
        case ws_frame_binary: return .frame(length: length, opcode: .binary)
        case ws_frame_discard: return .frame(length: length, opcode: nil)
        default: return .failed("the framing function chose opcode \(opcode.rawValue); only text, binary and discard are allowed")
        }
    }

    /// The opcode for bytes the peer sent that were never framed when it closed; nil drops them.
    /// A plugin is the authority on what a message is, so a partial record is dropped (as websocksy
    /// does). The built-ins deliver it as one last message, typed as they type messages: a final
    /// line without its line end, or the 1–3 bytes of a character `auto` held back.
    func remainderAtClose(_ data: UnsafeRawBufferPointer) -> Opcode? {
        switch builtin {
        case .textWhenValid: return UTF8Validator.isValid(data) ? .text : .binary
        case .binary: return .binary
        case nil:
            Log.debug("\(client): the peer closed; dropping \(data.count) bytes framing \(framingName) never framed")
            return nil
        }
    }

    /// `.text` when the message may go out as text. The built-ins mark only valid UTF-8 as text;
    /// a plugin's text is checked, and sent as binary when it is not UTF-8.
    private func checkedText(_ message: UnsafeRawBufferPointer) -> Opcode {
        guard builtin == nil, !UTF8Validator.isValid(message) else { return .text }
        if !loggedInvalidText {
            loggedInvalidText = true
            Log.info("\(client): framing \(framingName) marked a message that is not UTF-8 as text; sending it (and any like it) as binary")
        }
        return .binary
    }

    private var framingName: String {
        FramingRegistry.name(of: function).map { "'\($0)'" } ?? "(an unregistered function)"
    }
}
