/// Everything the gateway needs to start, from the ini file, the flags, or both: the file first,
/// then the flags on top (websocksy-compatible when only one of them is used).
public struct Configuration: Sendable {
    public struct BackendOption: Equatable, Sendable {
        public var key: String
        public var value: String
        public var origin: SettingOrigin
    }

    public static let defaultPort = "8001"
    public static let defaultListen = "::"
    public static let defaultPing = 30
    public static let defaultMaxMessage: UInt64 = 16 << 20
    public static let defaultBackend = "defaultpeer"
    public static let defaultHandshakeTimeout = 10
    public static let defaultConnectTimeout = 10
    public static let defaultPeerBuffer: UInt64 = 1 << 20
    public static let defaultMaxConnections = 10000
    public static let defaultMaxHeaderBytes = 16384
    public static let defaultMaxHeaders = 100
    public static let defaultShutdownTimeout = 5
    public static let defaultBackendTimeout = 5
    public static let defaultUpgradeBurst = 20
    public static let defaultRecordMax: UInt64 = 64 << 20
    /// Longest timeout or interval accepted, in seconds (365 days): far beyond any sensible setting,
    /// and small enough that deadlines computed in milliseconds can never overflow.
    public static let maxSeconds = 365 * 86400
    /// Largest size accepted for max-message and buffer-memory (1024G).
    public static let maxSize: UInt64 = 1 << 40

    public var port = defaultPort
    public var listen = defaultListen
    /// Keepalive ping interval in seconds; 0 turns keepalive off.
    public var pingInterval = defaultPing
    public var maxMessage = defaultMaxMessage
    /// Seconds a client has to complete the opening handshake.
    public var handshakeTimeout = defaultHandshakeTimeout
    /// Seconds connecting to a peer may take before the client gets 502.
    public var connectTimeout = defaultConnectTimeout
    /// Seconds a plugin backend's query may take before the client gets 504.
    public var backendTimeout = defaultBackendTimeout
    /// Cap on peer bytes waiting for the framing function.
    public var peerBuffer = defaultPeerBuffer
    /// Process-wide budget for bytes buffered for message assembly and queues; 0 = auto (a quarter
    /// of physical memory, resolved in `Limits`).
    public var bufferMemory: UInt64 = 0
    /// Clients beyond this many get 503.
    public var maxConnections = defaultMaxConnections
    public var maxHeaderBytes = defaultMaxHeaderBytes
    public var maxHeaders = defaultMaxHeaders
    /// Seconds without a data message either way before a connection is closed; 0 = never.
    public var idleTimeout = 0
    /// Seconds between SIGTERM and the graceful stop, while /readyz says 503 and clients are still served.
    public var drainDelay = 0
    /// Seconds a graceful shutdown waits for connections to finish.
    public var shutdownTimeout = defaultShutdownTimeout
    /// Allowed `Origin` values; empty = any. "null" admits pages from file:// (which send "Origin: null").
    public var origins: [String] = []
    /// Drop to this user (and its groups) after binding and reading certificates, when root.
    public var user: String?
    /// Permissions of a Unix listening socket.
    public var unixMode: UInt32 = 0o660
    /// Worker processes sharing the port (SO_REUSEPORT); 0 = one per core.
    public var workers = 1
    /// Directory served to plain (non-WebSocket) GET and HEAD requests.
    public var web: String?
    /// A listening socket handed over by the service manager (socket activation); listen/port unused.
    public var inheritedListener: Int32?
    /// One line per connection to this file ("-" = stderr).
    public var accessLog: String?
    /// Proxies whose X-Forwarded-For / X-Real-IP give the access log's fwd= field.
    public var trustedProxies: [String] = []
    /// Sources (addresses, CIDR ranges) whose connections may start with a PROXY protocol header.
    public var proxyProtocolSources: [String] = []
    /// Where the admin listener (/metrics, /healthz, /readyz) listens: HOST:PORT; nil = none.
    public var adminListen: String?
    /// Open connections one client address may hold (0 = no limit); beyond, 429.
    public var maxConnectionsPerClient = 0
    /// WebSocket upgrades per second one client address may make on average (0 = no limit),
    /// with bursts of `upgradeBurst`; beyond, 429 with Retry-After.
    public var upgradeRate = 0
    public var upgradeBurst = defaultUpgradeBurst
    /// `record = DIR`: every session is recorded into a file in DIR (routes may override); nil = not recorded.
    public var recordDirectory: String?
    /// `record-max`: largest recording file per session; past it the recording ends with a "capped" record.
    public var recordMax = defaultRecordMax
    public var backend = defaultBackend
    /// Where `backend` was set, for errors about it.
    public var backendOrigin: SettingOrigin?
    /// Options for `backend`, in order. Selecting another backend drops them (as websocksy does).
    public var backendOptions: [BackendOption] = []
    /// Backends selected before the current one, with their options, in order.
    public var replacedBackends: [(name: String, origin: SettingOrigin?, options: [BackendOption])] = []
    /// `plugins =` / `--plugins`: where plugins are loaded from (see `PluginDirectory`).
    public var pluginDirectory: String?
    public var logLevel: LogLevel = .info
    /// The configuration file the settings were read from, if any. Set by `IniFile`; once it is
    /// set, a flag overrides what the file says instead of adding to it (see `setCore`).
    public internal(set) var configurationFile: String?
    /// Where each `[core]` key was last set, for `--print-config` and for errors found after
    /// parsing (`locating`). List keys (`origin`, `trusted-proxy`) keep one origin per value, in
    /// order; the others one. A key never set is absent: it has its default.
    public internal(set) var coreOrigins: [String: [SettingOrigin]] = [:]
    public var tls = TLSSettings()
    /// permessage-deflate (`compression` and the RFC 7692 parameter keys).
    public var deflate = DeflateSettings()
    /// Authentication at the upgrade (`auth-*`).
    public var auth = AuthSettings()
    /// `exec://` peers (`max-programs`, `exec-*`).
    public var programs = ProgramSettings()

    /// TLS for the listener (`tls-*`) and for `tls://` peers (`peer-tls-*`).
    public struct TLSSettings: Sendable {
        public var certificate: String?
        public var key: String?
        public var only = false
        public var priority = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
        public var ca: String?
        public var verifyClient = false
        /// Session tickets for resumption (`tls-tickets`), sealed with the key in `ticketKey`'s
        /// file, or a random one per process.
        public var tickets = true
        public var ticketKey: String?
        public var peerCA: String?
        public var peerVerify = true

        /// Tickets are issued: on, with a certificate, and not with client certificates — GnuTLS
        /// checks those in full handshakes only, and a resumed session would skip the check (with
        /// a CA changed since, or a ticket from an instance that does not ask for one).
        var issuesTickets: Bool { certificate != nil && tickets && !verifyClient }
        var usesRandomTicketKey: Bool { issuesTickets && ticketKey == nil }
    }

    public init() {}

    /// Applies one `[core]` key. Both the ini file and the long flags go through here.
    ///
    /// Flags come after the file, so a flag simply replaces a single-valued key. Two keys need more:
    /// a list key (`origin`, `trusted-proxy`) given by a flag replaces the file's list rather than
    /// extending it — otherwise a flag could never narrow what the file allows — and `backend` given
    /// by a flag replaces the file's backend without loading it (`selectBackend`).
    mutating func setCore(_ key: String, _ value: String, at origin: SettingOrigin) throws(ConfigError) {
        switch key {
        case "port":
            guard let p = Int(value), (0...65535).contains(p) else { throw ConfigError(origin.description, "port must be 0–65535, not '\(value)'") }
            port = String(p)
        case "listen":
            guard !value.isEmpty else { throw ConfigError(origin.description, "listen needs a host or address") }
            listen = value
        case "ping": pingInterval = try seconds(key, value, origin, minimum: 0)
        case "handshake-timeout": handshakeTimeout = try seconds(key, value, origin, minimum: 1)
        case "connect-timeout": connectTimeout = try seconds(key, value, origin, minimum: 1)
        case "backend-timeout": backendTimeout = try seconds(key, value, origin, minimum: 1)
        case "peer-buffer": peerBuffer = try size(key, value, origin, minimum: 4096, maximum: 1 << 30)
        case "buffer-memory":
            bufferMemory = try value == "auto" ? 0 : size(key, value, origin, minimum: 1 << 20, maximum: Self.maxSize, auto: true)
        case "plugins":
            guard !value.isEmpty else { throw ConfigError(origin.description, "plugins needs a directory") }
            pluginDirectory = value
        case "tls-cert": tls.certificate = try nonEmpty(key, value, origin)
        case "tls-key": tls.key = try nonEmpty(key, value, origin)
        case "tls-only": tls.only = try boolean(key, value, origin)
        case "tls-priority": tls.priority = try nonEmpty(key, value, origin)
        case "tls-ca": tls.ca = try nonEmpty(key, value, origin)
        case "tls-verify-client": tls.verifyClient = try boolean(key, value, origin)
        case "tls-tickets": tls.tickets = try boolean(key, value, origin)
        case "tls-ticket-key": tls.ticketKey = try nonEmpty(key, value, origin)
        case "peer-tls-ca": tls.peerCA = try nonEmpty(key, value, origin)
        case "peer-tls-verify": tls.peerVerify = try boolean(key, value, origin)
        case "max-connections": maxConnections = try count(key, value, origin, minimum: 1, maximum: 10_000_000)
        case "max-header-bytes": maxHeaderBytes = Int(try size(key, value, origin, minimum: 1024, maximum: 1 << 20))
        case "max-headers": maxHeaders = try count(key, value, origin, minimum: 8, maximum: 10_000)
        case "idle-timeout": idleTimeout = try seconds(key, value, origin, minimum: 0)
        case "shutdown-timeout": shutdownTimeout = try seconds(key, value, origin, minimum: 0)
        case "origin":
            let trimmed = value.hasSuffix("/") ? String(value.dropLast()) : value
            guard !trimmed.isEmpty, trimmed == "null" || trimmed.contains("://") else {
                throw ConfigError(origin.description, "origin must be scheme://host[:port] or null, not '\(value)'")
            }
            if flagReplacesFileList(key, origin) { origins.removeAll() }
            origins.append(trimmed.lowercased())
        case "user": user = try nonEmpty(key, value, origin)
        case "unix-mode":
            guard let mode = UInt32(value, radix: 8), mode <= 0o777 else {
                throw ConfigError(origin.description, "unix-mode must be octal permissions like 0660, not '\(value)'")
            }
            unixMode = mode
        case "web": web = try nonEmpty(key, value, origin)
        case "access-log": accessLog = try nonEmpty(key, value, origin)
        case "trusted-proxy":
            let proxy = try nonEmpty(key, value, origin)
            if flagReplacesFileList(key, origin) { trustedProxies.removeAll() }
            trustedProxies.append(proxy)
        case "proxy-protocol-from":
            guard AddressRange.parse(value) != nil else {
                throw ConfigError(origin.description, "proxy-protocol-from must be an address or a CIDR range like 10.0.0.0/8, not '\(value)'")
            }
            if flagReplacesFileList(key, origin) { proxyProtocolSources.removeAll() }
            proxyProtocolSources.append(value)
        case "admin-listen":
            guard let colon = value.lastIndex(of: ":"), Int(value[value.index(after: colon)...]).map({ (0...65535).contains($0) }) == true,
                  colon != value.startIndex else {
                throw ConfigError(origin.description, "admin-listen must be HOST:PORT (e.g. 127.0.0.1:9090, [::1]:9090), not '\(value)'")
            }
            adminListen = value
        case "drain-delay": drainDelay = try seconds(key, value, origin, minimum: 0)
        case "max-programs": programs.maxPrograms = try count(key, value, origin, minimum: 1, maximum: 100_000)
        case "exec-grace": programs.graceSeconds = try seconds(key, value, origin, minimum: 0)
        case "exec-dir": programs.directory = try nonEmpty(key, value, origin)
        case "exec-env":
            let names = value.split(separator: ",").map { String($0.trimmingHTTPWhitespace) }.filter { !$0.isEmpty }
            guard names.allSatisfy({ $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") } }) else {
                throw ConfigError(origin.description, "exec-env takes variable names separated by commas, not '\(value)'")
            }
            programs.environmentNames = names
        case "auth-keys": auth.keys = try nonEmpty(key, value, origin)
        case "auth-secret": auth.secret = try nonEmpty(key, value, origin)
        case "auth-basic": auth.passwords = try nonEmpty(key, value, origin)
        case "auth-token":
            var sources: [TokenSource] = []
            for item in value.split(separator: ",") {
                guard let source = TokenSource.parse(String(item)) else {
                    throw ConfigError(origin.description, "auth-token takes query:NAME, cookie:NAME, bearer and protocol:PREFIX, not '\(item.trimmingHTTPWhitespace)'")
                }
                sources.append(source)
            }
            guard !sources.isEmpty else { throw ConfigError(origin.description, "auth-token needs at least one place to look") }
            auth.tokenSources = sources
        case "auth-issuer": auth.policy.issuer = try nonEmpty(key, value, origin)
        case "auth-audience":
            auth.policy.audiences = value.split(separator: ",").map { String($0.trimmingHTTPWhitespace) }.filter { !$0.isEmpty }
            guard !auth.policy.audiences.isEmpty else { throw ConfigError(origin.description, "auth-audience needs at least one value") }
        case "auth-leeway": auth.policy.leeway = try seconds(key, value, origin, minimum: 0)
        case "auth-require-exp": auth.policy.requireExpiry = try boolean(key, value, origin)
        case "auth-realm":
            guard !value.isEmpty, value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }) else {
                throw ConfigError(origin.description, "auth-realm must be printable ASCII without quotes or backslashes")
            }
            auth.realm = value
        case "max-connections-per-client": maxConnectionsPerClient = try count(key, value, origin, minimum: 0, maximum: 10_000_000)
        case "upgrade-rate": upgradeRate = try count(key, value, origin, minimum: 0, maximum: 1_000_000)
        case "upgrade-burst": upgradeBurst = try count(key, value, origin, minimum: 1, maximum: 1_000_000)
        case "record": recordDirectory = try value == "off" ? nil : nonEmpty(key, value, origin)
        case "record-max": recordMax = try size(key, value, origin, minimum: 64 << 10, maximum: Self.maxSize)
        case "workers":
            if value == "auto" {
                workers = 0
            } else {
                guard let n = Int(value), (1...256).contains(n) else {
                    throw ConfigError(origin.description, "workers must be 1–256 or auto, not '\(value)'")
                }
                workers = n
            }
        case "compression":
            guard let choice = CompressionChoice.parse(value) else {
                throw ConfigError(origin.description, "compression must be off, on or a minimum message size (e.g. 256), not '\(value)'")
            }
            deflate.enabled = choice.enabled
            deflate.minimumSize = choice.minimumSize
        case "compression-level": deflate.level = try count(key, value, origin, minimum: 1, maximum: 9)
        case "server-max-window-bits": deflate.serverMaxWindowBits = try count(key, value, origin, minimum: 9, maximum: 15)
        case "client-max-window-bits": deflate.clientMaxWindowBits = try count(key, value, origin, minimum: 8, maximum: 15)
        case "server-no-context-takeover": deflate.serverContextTakeover = try !boolean(key, value, origin)
        case "client-no-context-takeover": deflate.clientContextTakeover = try !boolean(key, value, origin)
        case "max-message": maxMessage = try size(key, value, origin, minimum: 125, maximum: Self.maxSize)
        case "backend":
            guard !value.isEmpty else { throw ConfigError(origin.description, "backend needs a name") }
            try selectBackend(value, at: origin)
        default:
            throw ConfigError(origin.description, "unknown [core] key '\(key)'")
        }
        recordOrigin(key, origin)
    }

    /// `origin` and `trusted-proxy`: each value adds to the list, except that the first flag for the
    /// key after a file starts the list afresh.
    static let listKeys: Set<String> = ["origin", "trusted-proxy", "proxy-protocol-from"]

    /// `admin-listen` with several workers: each would count only its own clients, and they cannot
    /// share the admin port. Refused before forking (and by --check-config).
    func checkAdminListenWorkers() throws(ConfigError) {
        guard adminListen != nil, workers != 1 else { return }
        throw ConfigError("admin-listen", "needs workers = 1 (each worker would count only its own clients); run one gateway per core behind the balancer instead")
    }

    /// Whether a flag setting a list key is about to replace values the file gave.
    private func flagReplacesFileList(_ key: String, _ origin: SettingOrigin) -> Bool {
        origin.flag != nil && (coreOrigins[key]?.contains { $0.flag == nil } ?? false)
    }

    private mutating func recordOrigin(_ key: String, _ origin: SettingOrigin) {
        if Self.listKeys.contains(key) && !flagReplacesFileList(key, origin) {
            coreOrigins[key, default: []].append(origin)
        } else {
            coreOrigins[key] = [origin]
        }
    }

    /// `backend = NAME` / `-b NAME`. Within the file, or among the flags alone, websocksy's rule holds:
    /// the backend selected before is replaced, but still loaded and configured with its options
    /// (`BackendFactory`), so their mistakes are reported. A `-b` flag after a file instead replaces
    /// the file's backend outright, with its `[backend]` options, and it is never loaded: the point
    /// of overriding it is often that it cannot or should not be loaded here.
    private mutating func selectBackend(_ name: String, at origin: SettingOrigin) throws(ConfigError) {
        let fileBackend = configurationFile != nil && backendOrigin?.flag == nil
        if origin.flag != nil && fileBackend {
            // `-c` options given before this `-b` were meant for the file's backend, which is now
            // never configured: dropping them silently would hide a mistake in the command line.
            if let given = backendOptions.first(where: { $0.origin.flag != nil }) {
                throw ConfigError(origin.description, "\(given.origin.flag ?? "-c") \(given.key)=\(given.value) was given for "
                                  + "backend \(backend) of \(configurationFile!), which -b \(name) replaces without loading it; "
                                  + "give -c after -b")
            }
            replacedBackends.removeAll()
        } else if backendOrigin != nil || !backendOptions.isEmpty {
            replacedBackends.append((backend, backendOrigin, backendOptions))
        }
        backend = name
        backendOrigin = origin
        backendOptions.removeAll()
    }

    private func nonEmpty(_ key: String, _ value: String, _ origin: SettingOrigin) throws(ConfigError) -> String {
        guard !value.isEmpty else { throw ConfigError(origin.description, "\(key) needs a value") }
        return value
    }

    private func count(_ key: String, _ value: String, _ origin: SettingOrigin, minimum: Int, maximum: Int) throws(ConfigError) -> Int {
        guard let n = Int(value), n >= minimum, n <= maximum else {
            throw ConfigError(origin.description, "\(key) must be a whole number from \(minimum) to \(maximum), not '\(value)'")
        }
        return n
    }

    private func seconds(_ key: String, _ value: String, _ origin: SettingOrigin, minimum: Int) throws(ConfigError) -> Int {
        guard let n = Int(value), n >= minimum, n <= Self.maxSeconds else {
            throw ConfigError(origin.description, "\(key) must be a number of seconds from \(minimum) to \(Self.maxSeconds) (365 days), not '\(value)'")
        }
        return n
    }

    /// `auto`: the key also takes the word `auto`, which the error then names.
    private func size(_ key: String, _ value: String, _ origin: SettingOrigin, minimum: UInt64, maximum: UInt64,
                      auto: Bool = false) throws(ConfigError) -> UInt64 {
        guard let n = ByteSize.parse(value), n >= minimum, n <= maximum else {
            throw ConfigError(origin.description, "\(key) must be a size from \(ByteSize.format(minimum)) to \(ByteSize.format(maximum))"
                              + "\(auto ? " or auto" : "") (e.g. 65536, 64k, 16M), not '\(value)'")
        }
        return n
    }

    private func boolean(_ key: String, _ value: String, _ origin: SettingOrigin) throws(ConfigError) -> Bool {
        switch value.lowercased() {
        case "yes", "true", "on", "1": return true
        case "no", "false", "off", "0": return false
        default: throw ConfigError(origin.description, "\(key) must be yes or no, not '\(value)'")
        }
    }

    /// Adds one option for the backend selected so far. Options are only collected here; the backend
    /// gets them in this order (the file's `[backend]` lines, then each `-c`) when it is configured,
    /// so for a repeated key the backend decides: defaultpeer keeps the last value, a plugin gets
    /// every one (backend_file, for one, replaces `path` and adds each `expression`).
    mutating func addBackendOption(_ key: String, _ value: String, at origin: SettingOrigin) {
        backendOptions.append(BackendOption(key: key, value: value, origin: origin))
    }
}

/// Sizes written as a number with an optional k/M/G suffix (powers of 1024).
enum ByteSize {
    static func parse(_ text: String) -> UInt64? {
        var digits = Substring(text)
        var multiplier: UInt64 = 1
        switch digits.last {
        case "k", "K": multiplier = 1 << 10; digits = digits.dropLast()
        case "m", "M": multiplier = 1 << 20; digits = digits.dropLast()
        case "g", "G": multiplier = 1 << 30; digits = digits.dropLast()
        default: break
        }
        guard let n = UInt64(digits) else { return nil }
        let (product, overflow) = n.multipliedReportingOverflow(by: multiplier)
        return overflow || product > (1 << 62) ? nil : product
    }

    /// `n` with the largest suffix that divides it exactly: 4096 → "4k", 1 << 30 → "1G", 125 → "125".
    static func format(_ n: UInt64) -> String {
        for (shift, suffix) in [(30, "G"), (20, "M"), (10, "k")] where n > 0 && n % (1 << shift) == 0 {
            return "\(n >> shift)\(suffix)"
        }
        return String(n)
    }
}
