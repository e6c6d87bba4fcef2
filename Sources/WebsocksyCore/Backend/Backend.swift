import CWebsocksy

/// A peer discovery backend: maps an upgrade request to the peer it is bridged to.
public protocol Backend: AnyObject {
    /// One option, in configuration order. Throws a message; the caller adds where it came from.
    func configure(key: String, value: String) throws(BackendError)
    /// Called once all options are applied, to reject an unusable configuration at start-up.
    func validate() throws(BackendError)
    /// Picks the peer for one validated request, or refuses it with an HTTP status.
    func query(_ request: HandshakeRequest) -> BackendAnswer
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

    public init(address: PeerAddress, subprotocol: String?, framing: ws_framing?, framingConfig: FramingConfig?) {
        self.address = address
        self.subprotocol = subprotocol
        self.framing = framing
        self.framingConfig = framingConfig
    }
}

/// Creates the backend a configuration names, applies its options in order and validates it.
public enum BackendFactory {
    public static func make(_ config: Configuration) throws(ConfigError) -> Backend {
        let backend: Backend
        switch config.backend {
        case "defaultpeer": backend = DefaultPeerBackend()
        default:
            throw ConfigError(config.backendOrigin?.description ?? "configuration",
                              "unknown backend '\(config.backend)' (built in: defaultpeer)")
        }
        for option in config.backendOptions {
            do throws(BackendError) {
                try backend.configure(key: option.key, value: option.value)
            } catch {
                throw ConfigError(option.origin.description, "backend \(config.backend): \(error)")
            }
        }
        do throws(BackendError) {
            try backend.validate()
        } catch {
            throw ConfigError("backend \(config.backend)", error.description)
        }
        return backend
    }
}
