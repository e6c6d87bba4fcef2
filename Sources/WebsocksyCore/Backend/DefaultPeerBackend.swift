import CWebsocksy

/// The built-in backend: the same configured peer for every connection (websocksy's default), or
/// several services on one port chosen by request path (`service`, wsgw's model), with the
/// configured peer (if any) for every other path.
public final class DefaultPeerBackend: Backend {
    /// `service` options with their framing, ready for queries.
    private var services: [(service: Service, textConfig: FramingConfig)] = []
    private var host: String?
    private var port: String?
    /// nil: serve only clients that offer no subprotocol; "*": the first offered; else that name.
    private var subprotocol: String?
    private var framingName = "auto"
    private var framingConfigText: String?
    private var address: PeerAddress?
    private var framing: ws_framing?
    private var framingConfig: FramingConfig?
    /// `proxy-protocol = v2`: every peer (the host's and the services') is told the client's address.
    private var sendsProxyHeader = false
    /// `share`, `slow-client`, `slow-client-limit`: one peer for all clients.
    private var sharing: SharingSettings?
    private var slowClient = SharingSettings()

    public init() {}

    public func configure(key: String, value: String) throws(BackendError) {
        switch key {
        case "host": host = value
        case "port": port = value
        case "protocol": subprotocol = value.isEmpty ? nil : value
        case "framing": framingName = value
        case "framing-config": framingConfigText = value
        case "service":
            let service = try Service(value)
            guard !services.contains(where: { $0.service.path == service.path }) else {
                throw BackendError("service path \(service.path) is given twice")
            }
            services.append((service, FramingConfig(service.lineEndName)))
        case "proxy-protocol":
            guard let choice = PeerOptions.proxyProtocol(value) else { throw BackendError("proxy-protocol must be v2 or off, not '\(value)'") }
            sendsProxyHeader = choice
        case "share":
            guard let mode = SharingSettings.mode(value) else { throw BackendError("share must be off, broadcast or readonly, not '\(value)'") }
            sharing = mode.map { var s = slowClient; s.mode = $0; return s }
        case "slow-client":
            guard let policy = SharingSettings.SlowClient(rawValue: value) else { throw BackendError("slow-client must be drop, close or hold, not '\(value)'") }
            slowClient.slowClient = policy
            sharing?.slowClient = policy
        case "share-open":
            guard value == "start" || value == "first" else { throw BackendError("share-open must be first or start, not '\(value)'") }
            slowClient.openAtStart = value == "start"
            sharing?.openAtStart = value == "start"
        case "slow-client-limit":
            guard let bytes = ByteSize.parse(value), bytes >= 4096, bytes <= 1 << 30 else {
                throw BackendError("slow-client-limit must be a size from 4k to 1G, not '\(value)'")
            }
            slowClient.slowClientLimit = Int(bytes)
            sharing?.slowClientLimit = Int(bytes)
        default: throw BackendError("unknown option '\(key)' (known: host, port, protocol, framing, framing-config, service, proxy-protocol, share, share-open, slow-client, slow-client-limit)")
        }
    }

    public func validate() throws(BackendError) {
        guard let host else {
            guard !services.isEmpty else {
                throw BackendError("no peer configured: set host (e.g. -c host=tcp://localhost:5900) or service (e.g. -c service=/chat,tcp://localhost:6667,text)")
            }
            return
        }
        var assumedTCP = false
        do throws(PeerAddressError) {
            address = try PeerAddress.parse(host, defaultPort: port, assumedTCP: &assumedTCP)
        } catch {
            throw BackendError(error.description)
        }
        if assumedTCP { Log.warning("peer '\(host)' has no scheme; using \(address!)") }
        try Service.checkServiceName(address!)
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

    /// The configured peer, when it is shared and `share-open = start`.
    public var peersToOpenAtStart: [PeerChoice] {
        guard let address, slowClient.openAtStart, sharing != nil || address.isInherentlyShared else { return [] }
        var choice = PeerChoice(address: address, subprotocol: nil, framing: framing, framingConfig: framingConfig)
        choice.sharing = sharing ?? slowClient
        return [choice]
    }

    public func query(_ request: HandshakeRequest) -> BackendAnswer {
        let answer = choose(request)
        guard sendsProxyHeader || sharing != nil || slowClient != SharingSettings(), case .peer(var choice) = answer else { return answer }
        choice.sendsProxyHeader = sendsProxyHeader
        // FIFOs and standard input are shared anyway: they take the slow-client settings too.
        choice.sharing = sharing ?? (choice.address.isInherentlyShared ? slowClient : nil)
        return .peer(choice)
    }

    private func choose(_ request: HandshakeRequest) -> BackendAnswer {
        let service = services.isEmpty ? nil : route(request.target)
        guard service != nil || address != nil else {
            return .refuse(.init(.notFound, "no service at \(LogText.capped(Service.normalized(Self.path(request.target))))"))
        }
        let selected: String?
        switch SubprotocolSelection.select(configured: subprotocol, offered: request.protocols) {
        case .none: selected = nil
        case .selected(let name): selected = name
        case .refused(let why): return .refuse(.init(.badRequest, why))
        }
        guard let (service, textConfig, query) = service else {
            return .peer(PeerChoice(address: address!, subprotocol: selected, framing: framing, framingConfig: framingConfig))
        }
        guard service.isText(query: query) else {
            return .peer(PeerChoice(address: service.address, subprotocol: selected, framing: BuiltinFraming.binary, framingConfig: nil))
        }
        return .peer(PeerChoice(address: service.address, subprotocol: selected, framing: BuiltinFraming.newline,
                                framingConfig: textConfig, lineEnd: service.lineEnd))
    }

    /// The service for a request target, with its framing and the target's query string.
    private func route(_ target: String) -> (Service, FramingConfig, Substring?)? {
        let path = Service.normalized(Self.path(target))
        guard let found = services.first(where: { $0.service.path == path }) else { return nil }
        let query = target.firstIndex(of: "?").map { target[target.index(after: $0)...] }
        return (found.service, found.textConfig, query)
    }

    private static func path(_ target: String) -> String {
        String(target.prefix { $0 != "?" })
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
