import CWebsocksy

/// The built-in backend: the same configured peer for every connection (websocksy's default).
public final class DefaultPeerBackend: Backend {
    private var host: String?
    private var port: String?
    /// nil: serve only clients that offer no subprotocol; "*": the first offered; else that name.
    private var subprotocol: String?
    private var framingName = "auto"
    private var framingConfigText: String?
    private var address: PeerAddress?
    private var framing: ws_framing?
    private var framingConfig: FramingConfig?

    public init() {}

    public func configure(key: String, value: String) throws(BackendError) {
        switch key {
        case "host": host = value
        case "port": port = value
        case "protocol": subprotocol = value.isEmpty ? nil : value
        case "framing": framingName = value
        case "framing-config": framingConfigText = value
        default: throw BackendError("unknown option '\(key)' (known: host, port, protocol, framing, framing-config)")
        }
    }

    public func validate() throws(BackendError) {
        guard let host else { throw BackendError("no peer configured: set host (e.g. -c host=tcp://localhost:5900)") }
        var assumedTCP = false
        do throws(PeerAddressError) {
            address = try PeerAddress.parse(host, defaultPort: port, assumedTCP: &assumedTCP)
        } catch {
            throw BackendError(error.description)
        }
        if assumedTCP { Log.warning("peer '\(host)' has no scheme; using \(address!)") }
        guard let function = FramingRegistry.lookup(framingName) else {
            throw BackendError("unknown framing '\(framingName)' (known: \(FramingRegistry.names.joined(separator: ", ")))")
        }
        do throws(FramingConfigError) {
            try FramingRegistry.validate(name: framingName, config: framingConfigText)
        } catch {
            throw BackendError(error.description)
        }
        framing = function
        framingConfig = framingConfigText.map { FramingConfig($0) }
    }

    public func query(_ request: HandshakeRequest) -> BackendAnswer {
        guard let address else { return .refuse(.init(.notFound, "no peer configured")) }
        let selected: String?
        switch SubprotocolSelection.select(configured: subprotocol, offered: request.protocols) {
        case .none: selected = nil
        case .selected(let name): selected = name
        case .refused(let why): return .refuse(.init(.badRequest, why))
        }
        return .peer(PeerChoice(address: address, subprotocol: selected, framing: framing, framingConfig: framingConfig))
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
            return offered.isEmpty ? .none : .refused("no subprotocol is served here, but the client requires one of: \(LogText.capped(offered.joined(separator: ", ")))")
        }
        if configured == "*" {
            return offered.first.map { .selected($0) } ?? .none
        }
        if let match = offered.first(where: { $0.asciiCaseInsensitiveEquals(configured) }) {
            return .selected(match)
        }
        return offered.isEmpty ? .none : .refused("subprotocol \(configured) is required, the client offered: \(LogText.capped(offered.joined(separator: ", ")))")
    }
}
