import Glibc
import CWebsocksy

/// A peer discovery backend: maps an upgrade request to the peer it is bridged to.
public protocol Backend: AnyObject {
    /// One option, in configuration order. Throws a message; the caller adds where it came from.
    func configure(key: String, value: String) throws(BackendError)
    /// Called once all options are applied, to reject an unusable configuration at start-up.
    func validate() throws(BackendError)
    /// Picks the peer for one validated request, or refuses it with an HTTP status.
    func query(_ request: HandshakeRequest) -> BackendAnswer
    /// Releases what the backend holds (a plugin's `cleanup`); called once, before it is dropped.
    func shutdown()
    /// Shared peers to open when the gateway starts (`share-open = start`), before any client.
    var peersToOpenAtStart: [PeerChoice] { get }
    /// `query` may wait (on a database, a file system): it then runs on a thread of its own,
    /// one call at a time (`WorkerThread`). The built-in backend answers at once, on the loop.
    var queriesMayBlock: Bool { get }
}

extension Backend {
    public func shutdown() {}
    public var queriesMayBlock: Bool { false }
    public var peersToOpenAtStart: [PeerChoice] { [] }
}

public struct BackendError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public enum BackendAnswer {
    case peer(PeerChoice)
    case refuse(HandshakeRejection)
}

/// The backend's choice for one connection.
public struct PeerChoice {
    public var address: PeerAddress
    /// The offered subprotocol to confirm in `Sec-WebSocket-Protocol`, if any.
    public var subprotocol: String?
    /// Cuts the peer's bytes into messages (C signature, built-in or plugin).
    public var framing: ws_framing?
    public var framingConfig: FramingConfig?
    /// permessage-deflate for this connection; nil follows the `compression` key.
    public var compression: CompressionChoice?
    /// Session recording for this connection (`record=DIR|off`); nil follows the `record` key.
    public var record: RecordChoice?
    /// Send the peer a PROXY protocol v2 header naming the client before anything else (stream peers).
    public var sendsProxyHeader = false
    /// Text mode (wsgw's): the peer speaks lines ending with these bytes; client messages get the
    /// line end added, peer lines (cut by `newline` framing) lose it. Stream peers only.
    public var lineEnd: [UInt8]?
    /// Resolved addresses (4 or 16 bytes) the connection may use; nil: any. The `token` backend's
    /// allow-list for a host name that is not listed by name.
    var addressCheck: (([UInt8]) -> Bool)?
    /// One peer for every client of this route (`share`); nil: one per client (FIFOs and standard
    /// input are shared whatever this says).
    public var sharing: SharingSettings?

    public init(address: PeerAddress, subprotocol: String?, framing: ws_framing?, framingConfig: FramingConfig?,
                compression: CompressionChoice? = nil, record: RecordChoice? = nil, lineEnd: [UInt8]? = nil) {
        self.address = address
        self.subprotocol = subprotocol
        self.framing = framing
        self.framingConfig = framingConfig
        self.compression = compression
        self.record = record
        self.lineEnd = lineEnd
    }
}

/// Per-connection options a plugin backend sets from `query` through `core_peer_option`, and what
/// it may ask about the connection (`core_client_address`).
final class PeerOptions {
    /// The client's IP address as a C string, for `core_client_address`; freed with the options.
    let clientIP: UnsafeMutablePointer<CChar>?

    /// The verified token's claims, for `core_claim`; each handed out as a C string kept until
    /// the options are freed.
    private let claims: [String: JSONValue]
    private var claimStrings: [String: UnsafeMutablePointer<CChar>] = [:]

    init(clientIP: String? = nil, claims: [String: JSONValue] = [:]) {
        self.clientIP = clientIP.map { strdup($0) }
        self.claims = claims
    }

    deinit {
        free(clientIP)
        claimStrings.values.forEach { free($0) }
    }

    func claim(_ name: String) -> UnsafeMutablePointer<CChar>? {
        if let made = claimStrings[name] { return made }
        guard let text = claims[name]?.scalarText, !text.utf8.contains(0) else { return nil }
        let made = strdup(text)
        claimStrings[name] = made
        return made
    }

    var compression: CompressionChoice?
    var record: RecordChoice?
    var sendsProxyHeader: Bool?
    var sharing: SharingSettings??
    var slowClient: SharingSettings.SlowClient?
    /// The refusal a backend that names no peer wants instead of 404 (Redis unreachable: 503).
    var status: HTTPStatus?

    /// Applies one option; the problem when the key or value is not understood.
    func set(_ key: String, _ value: String) -> String? {
        switch key {
        case "compression":
            guard let choice = CompressionChoice.parse(value) else {
                return "compression must be off, on or a minimum message size, not '\(LogText.capped(value))'"
            }
            compression = choice
            return nil
        case "record":
            guard let choice = RecordChoice.parse(value) else { return "record must be off or a directory, not ''" }
            record = choice
            return nil
        case "proxy-protocol":
            guard let choice = Self.proxyProtocol(value) else { return "proxy-protocol must be v2 or off, not '\(LogText.capped(value))'" }
            sendsProxyHeader = choice
            return nil
        case "share":
            guard let mode = SharingSettings.mode(value) else { return "share must be off, broadcast or readonly, not '\(LogText.capped(value))'" }
            var settings = SharingSettings()
            if let mode { settings.mode = mode }
            sharing = .some(mode == nil ? nil : settings)
            return nil
        case "slow-client":
            guard let policy = SharingSettings.SlowClient(rawValue: value) else { return "slow-client must be drop, close or hold, not '\(LogText.capped(value))'" }
            slowClient = policy
            return nil
        case "status":
            guard let code = Int(value), let status = HTTPStatus(rawValue: code), code >= 400 else {
                return "status must be one of 400, 401, 403, 404, 429, 500, 502, 503, 504, not '\(LogText.capped(value))'"
            }
            self.status = status
            return nil
        default:
            return "unknown option '\(LogText.capped(key))' (known: compression, record, proxy-protocol, status, share, slow-client)"
        }
    }

    /// `proxy-protocol = v2|off` (route option and defaultpeer option alike).
    static func proxyProtocol(_ value: String) -> Bool? {
        switch value {
        case "v2": true
        case "off": false
        default: nil
        }
    }
}

/// Creates the backend a configuration names, applies its options in order and validates it.
/// Backends selected earlier and replaced by a later `-b` are loaded, configured and cleaned up in
/// turn first, as websocksy does: their options are still checked.
public enum BackendFactory {
    public static func make(_ config: Configuration, pluginDirectory: String = PluginDirectory.resolve(configured: nil).path) throws(ConfigError) -> Backend {
        // The `[core]` recording settings go with the backend: installed (the directory checked)
        // where start-up, --check-config and each reload make one from the configuration they use.
        try RecordingSettings.install(config)
        for replaced in config.replacedBackends {
            let backend = try load(replaced.name, origin: replaced.origin, pluginDirectory: pluginDirectory)
            defer { backend.shutdown() }
            try configure(backend, replaced.name, replaced.options)
        }
        if config.backend == TokenBackend.name && !config.auth.requiresToken {
            throw ConfigError(config.backendOrigin?.description ?? "backend", "backend token routes by verified token claims: set auth-keys or auth-secret")
        }
        let backend = try load(config.backend, origin: config.backendOrigin, pluginDirectory: pluginDirectory)
        do throws(ConfigError) {
            try configure(backend, config.backend, config.backendOptions)
            do throws(BackendError) {
                try backend.validate()
            } catch {
                throw ConfigError("backend \(config.backend)", error.description)
            }
        } catch {
            // Loaded is initialised: its cleanup runs before anything else is loaded in its place.
            backend.shutdown()
            throw error
        }
        return backend
    }

    private static func load(_ name: String, origin: SettingOrigin?, pluginDirectory: String) throws(ConfigError) -> Backend {
        if name == Configuration.defaultBackend { return DefaultPeerBackend() }
        if name == TokenBackend.name { return TokenBackend() }
        guard !name.contains("/") else {
            throw ConfigError(origin?.description ?? "configuration", "backend name '\(name)' must not contain '/'")
        }
        return try PluginBackend(name: name, directory: pluginDirectory)
    }

    private static func configure(_ backend: Backend, _ name: String, _ options: [Configuration.BackendOption]) throws(ConfigError) {
        for option in options {
            do throws(BackendError) {
                try backend.configure(key: option.key, value: option.value)
            } catch {
                throw ConfigError(option.origin.description, "backend \(name): \(error)")
            }
        }
    }
}
