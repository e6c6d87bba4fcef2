/// The built-in backend: the same configured peer for every connection (websocksy's default).
public final class DefaultPeerBackend: Backend {
    private var host: String?
    private var port: String?
    /// nil: serve only clients that offer no subprotocol; "*": the first offered; else that name.
    private var subprotocol: String?
    private var address: PeerAddress?

    public init() {}

    public func configure(key: String, value: String) throws(BackendError) {
        switch key {
        case "host": host = value
        case "port": port = value
        case "protocol": subprotocol = value.isEmpty ? nil : value
        default: throw BackendError("unknown option '\(key)' (known: host, port, protocol)")
        }
    }

    public func validate() throws(BackendError) {
        guard let host else { throw BackendError("no peer configured: set host (e.g. -c host=echo://)") }
        do throws(PeerAddressError) {
            address = try PeerAddress.parse(host, defaultPort: port)
        } catch {
            throw BackendError(error.description)
        }
    }

    public func query(_ request: HandshakeRequest) -> BackendAnswer {
        guard let address else { return .refuse(.init(.notFound, "no peer configured")) }
        switch SubprotocolSelection.select(configured: subprotocol, offered: request.protocols) {
        case .none: return .peer(PeerChoice(address: address, subprotocol: nil))
        case .selected(let name): return .peer(PeerChoice(address: address, subprotocol: name))
        case .refused(let why): return .refuse(.init(.badRequest, why))
        }
    }
}

/// websocksy's subprotocol rule for one configured value against the client's offer (RFC 6455 §4.2.2:
/// the server selects at most one of the offered values).
public enum SubprotocolSelection: Equatable {
    case none
    case selected(String)
    case refused(String)

    public static func select(configured: String?, offered: [String]) -> SubprotocolSelection {
        guard let configured else {
            return offered.isEmpty ? .none : .refused("no subprotocol is served here, but the client requires one of: \(offered.joined(separator: ", "))")
        }
        if configured == "*" {
            return offered.first.map { .selected($0) } ?? .none
        }
        if let match = offered.first(where: { $0.asciiCaseInsensitiveEquals(configured) }) {
            return .selected(match)
        }
        return offered.isEmpty ? .none : .refused("subprotocol \(configured) is required, the client offered: \(offered.joined(separator: ", "))")
    }
}
