/// Where a connection's data goes, parsed from a backend's answer.
public enum PeerAddress: Equatable, Sendable, CustomStringConvertible {
    /// The built-in echo peer: every message goes back to the client with its opcode unchanged.
    case echo

    public static func parse(_ text: String, defaultPort: String? = nil) throws(PeerAddressError) -> PeerAddress {
        guard let schemeEnd = text.firstRange(of: "://") else {
            throw PeerAddressError("peer address '\(text)' has no scheme (supported: echo://)")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        switch scheme {
        case "echo": return .echo
        default: throw PeerAddressError("unsupported peer scheme '\(scheme)://' in '\(text)' (supported: echo://)")
        }
    }

    public var description: String {
        switch self {
        case .echo: "echo://"
        }
    }
}

public struct PeerAddressError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}
