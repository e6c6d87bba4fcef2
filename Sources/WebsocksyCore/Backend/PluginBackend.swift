import CLinux
import CWebsocksy
import Glibc

/// A backend loaded from `backend_NAME.so` (websocksy plugin API 1): `init` and `query` are required,
/// `configure` and `cleanup` optional.
public final class PluginBackend: Backend {
    let path: String
    private let handle: UnsafeMutableRawPointer
    private let configureFunction: ws_backend_configure?
    private let queryFunction: ws_backend_query
    private let cleanupFunction: ws_backend_cleanup?
    /// Option strings handed to `configure`; a plugin may keep the pointers, so they live as long as it.
    private var optionStrings: [UnsafeMutablePointer<CChar>] = []
    private var warnedNoScheme = false
    private var cleanedUp = false

    public init(name: String, directory: String) throws(ConfigError) {
        path = "\(directory)/backend_\(name).so"
        guard let handle = dlopen(path, clinux_rtld_now_local()) else {
            throw ConfigError(path, "cannot load backend: \(lastDLError())")
        }
        func symbol(_ name: String) -> UnsafeMutableRawPointer? { dlsym(handle, name) }
        guard let initSymbol = symbol("init") else {
            throw ConfigError(path, "backend has no 'init' symbol: \(lastDLError())")
        }
        guard let querySymbol = symbol("query") else {
            throw ConfigError(path, "backend has no 'query' symbol: \(lastDLError())")
        }
        self.handle = handle
        queryFunction = unsafeBitCast(querySymbol, to: ws_backend_query.self)
        configureFunction = symbol("configure").map { unsafeBitCast($0, to: ws_backend_configure.self) }
        cleanupFunction = symbol("cleanup").map { unsafeBitCast($0, to: ws_backend_cleanup.self) }
        let version = unsafeBitCast(initSymbol, to: ws_backend_init.self)()
        guard version == UInt64(WEBSOCKSY_API_VERSION) else {
            throw ConfigError(path, "backend init returned API version \(version), this websocksy speaks \(WEBSOCKSY_API_VERSION)")
        }
    }

    public func configure(key: String, value: String) throws(BackendError) {
        guard let configureFunction else { throw BackendError("backend takes no options (no 'configure' symbol), got '\(key)'") }
        let k = strdup(key)!, v = strdup(value)!
        optionStrings += [k, v]
        let rc = configureFunction(k, v)
        guard rc == 0 else { throw BackendError("option '\(key)' rejected (configure returned \(rc))") }
    }

    public func validate() throws(BackendError) {}

    /// A plugin's `query` is opaque: it may block, so it never runs on the loop.
    public var queriesMayBlock: Bool { true }

    public func query(_ request: HandshakeRequest) -> BackendAnswer {
        // The plugin may modify what it is given (websocksy's file backend trims the endpoint in
        // place), so it gets its own malloc'd copies, freed after the call.
        let endpoint = strdup(request.target)
        var protocols: [UnsafeMutablePointer<CChar>?] = request.protocols.map { strdup($0) }
        var headers = request.headers.all.map { ws_http_header(tag: strdup($0.name), value: strdup($0.value)) }
        defer {
            free(endpoint)
            protocols.forEach { free($0) }
            headers.forEach { free($0.tag); free($0.value) }
        }
        // The `websocket*` the plugin gets: opaque to it, the options `core_peer_option` sets.
        let options = PeerOptions(clientIP: request.clientIP, claims: request.claims)
        let info = withExtendedLifetime(options) {
            protocols.withUnsafeMutableBufferPointer { p in
                headers.withUnsafeMutableBufferPointer { h in
                    queryFunction(endpoint, p.count, p.baseAddress, h.count, h.baseAddress,
                                  OpaquePointer(Unmanaged.passUnretained(options).toOpaque()))
                }
            }
        }
        defer {
            free(info.host)
            free(info.port)
        }
        let config = info.framing_config.map { FramingConfig(adopting: $0) }
        guard let hostPointer = info.host else {
            if let status = options.status { return .refuse(.init(status, "backend refused \(LogText.capped(request.target))")) }
            return .refuse(.init(.notFound, "no peer for \(LogText.capped(request.target))"))
        }
        let host = String(cString: hostPointer)
        let port = info.port.map { String(cString: $0) }
        let address: PeerAddress
        do throws(PeerAddressError) {
            address = try Self.address(transport: info.transport, host: host, port: port, warnedNoScheme: &warnedNoScheme)
        } catch {
            Log.info("backend \(path) returned an unusable peer: \(error)")
            return .refuse(.init(.badGateway, "peer address from the backend is unusable: \(error)"))
        }
        let subprotocol = info.protocol < request.protocols.count ? request.protocols[info.protocol] : nil
        var choice = PeerChoice(address: address, subprotocol: subprotocol,
                                framing: info.framing ?? FramingRegistry.lookup("auto"), framingConfig: config,
                                compression: options.compression, record: options.record)
        choice.sendsProxyHeader = options.sendsProxyHeader ?? false
        if case .some(var sharing) = options.sharing {
            if let policy = options.slowClient { sharing?.slowClient = policy }
            choice.sharing = sharing
        } else if let policy = options.slowClient, address.isInherentlyShared {
            var sharing = SharingSettings()
            sharing.slowClient = policy
            choice.sharing = sharing
        }
        return .peer(choice)
    }

    /// The peer address a `ws_peer_info` names: `detect` parses the scheme from `host`.
    static func address(transport: peer_transport, host: String, port: String?, warnedNoScheme: inout Bool) throws(PeerAddressError) -> PeerAddress {
        switch transport {
        case peer_transport_detect:
            var assumed = false
            let address = try PeerAddress.parse(host, defaultPort: port, assumedTCP: &assumed)
            if assumed && !warnedNoScheme {
                warnedNoScheme = true
                Log.warning("backend returned '\(host)' without a scheme; taking it as TCP")
            }
            return address
        case peer_tcp_client, peer_udp_client:
            let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
            let literal = bare.contains(":") ? "[\(bare)]" : bare
            let scheme = transport == peer_tcp_client ? "tcp" : "udp"
            return try PeerAddress.parse("\(scheme)://\(literal)", defaultPort: port)
        case peer_unix_stream:
            return try PeerAddress.parse("unix://\(host)")
        case peer_unix_dgram:
            return try PeerAddress.parse("unix-dgram://\(host)")
        case peer_fifo_rx:
            return try PeerAddress.parse("fifo://\(host)")
        case peer_fifo_tx:
            return try PeerAddress.parse("fifo-out://\(host)")
        default:
            throw PeerAddressError("unknown transport \(transport.rawValue)")
        }
    }

    public func shutdown() {
        guard !cleanedUp else { return }
        cleanedUp = true
        cleanupFunction?()
    }
}
