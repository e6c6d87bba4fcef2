import CWebsocksy

/// One connection's use of a framing function: the function, its configuration string and the
/// per-connection `framing_data` pointer, released through the function when the connection ends.
final class PeerFramer {
    enum Step {
        case needMore
        /// The first `length` bytes form a message of this opcode; nil means discard them.
        case frame(length: Int, opcode: Opcode?)
        case failed(String)
    }

    private let function: ws_framing
    /// Kept alive while `configPointer` is in use.
    private let config: FramingConfig
    private let configPointer: UnsafeMutablePointer<CChar>
    private var state: UnsafeMutableRawPointer?

    /// Plugins written for websocksy read the configuration without a NULL check, so "no
    /// configuration" is passed as an empty string.
    private static let empty = FramingConfig("")

    init(function: ws_framing, config: FramingConfig?) {
        self.function = function
        self.config = config ?? Self.empty
        self.configPointer = self.config.pointer
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
        guard n > 0 else { return .failed("the framing function reported an error (\(n))") }
        guard n <= data.count else { return .failed("the framing function claimed \(n) of \(data.count) bytes") }
        switch opcode {
        case ws_frame_text: return .frame(length: Int(n), opcode: .text)
        case ws_frame_binary: return .frame(length: Int(n), opcode: .binary)
        case ws_frame_discard: return .frame(length: Int(n), opcode: nil)
        default: return .failed("the framing function chose opcode \(opcode.rawValue); only text, binary and discard are allowed")
        }
    }
}
