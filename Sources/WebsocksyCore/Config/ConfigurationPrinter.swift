/// `--print-config`: the effective configuration written back as a configuration file.
///
/// Every `[core]` key is shown with its value, then the backend's options, each after a comment line
/// naming where it came from (`FILE:LINE`, `flag -p`, or `default`). The origins go on their own
/// lines because the ini reader only knows whole-line comments (a value may contain `;` or `#`).
/// Keys without a value (optional settings left unset) appear only as comments, so the text read
/// back as a configuration file gives the same configuration. Paths are printed as given; there
/// are no secrets among the settings (a TLS key is named by its file, never included).
extension Configuration {
    /// The `[core]` keys in the order `--print-config` shows them: the order of `--help`'s key list,
    /// with `backend` last, next to its section. Every key `setCore` accepts is here (a unit test
    /// checks the list against `--help` and that every value printed reads back).
    public static let coreKeys = [
        "port", "listen", "ping", "max-message", "handshake-timeout", "connect-timeout", "backend-timeout", "peer-buffer",
        "buffer-memory", "plugins", "max-connections", "max-header-bytes", "max-headers", "idle-timeout",
        "shutdown-timeout", "origin", "user", "unix-mode", "workers", "web", "access-log", "trusted-proxy",
        "proxy-protocol-from", "admin-listen", "drain-delay", "max-connections-per-client", "upgrade-rate", "upgrade-burst",
        "auth-keys", "auth-secret", "auth-token", "auth-issuer", "auth-audience", "auth-leeway", "auth-require-exp",
        "auth-basic", "auth-realm", "max-programs", "exec-grace", "exec-env", "exec-dir", "record", "record-max",
        "tls-cert", "tls-key", "tls-only", "tls-priority", "tls-ca", "tls-verify-client", "tls-tickets",
        "tls-ticket-key", "peer-tls-ca",
        "peer-tls-verify", "compression", "compression-level", "server-max-window-bits", "client-max-window-bits",
        "server-no-context-takeover", "client-no-context-takeover", "backend",
    ]

    /// The value(s) of a `[core]` key as a configuration file spells them, in a form `setCore` reads
    /// back to the same setting; empty when the key has no value (unset, or an empty list).
    func coreValues(_ key: String) -> [String] {
        func yesNo(_ flag: Bool) -> String { flag ? "yes" : "no" }
        switch key {
        case "port": return [port]
        case "listen": return [listen]
        case "ping": return [String(pingInterval)]
        case "max-message": return [ByteSize.format(maxMessage)]
        case "handshake-timeout": return [String(handshakeTimeout)]
        case "connect-timeout": return [String(connectTimeout)]
        case "backend-timeout": return [String(backendTimeout)]
        case "peer-buffer": return [ByteSize.format(peerBuffer)]
        case "buffer-memory": return [bufferMemory == 0 ? "auto" : ByteSize.format(bufferMemory)]
        case "plugins": return pluginDirectory.map { [$0] } ?? []
        case "max-connections": return [String(maxConnections)]
        case "max-header-bytes": return [ByteSize.format(UInt64(maxHeaderBytes))]
        case "max-headers": return [String(maxHeaders)]
        case "idle-timeout": return [String(idleTimeout)]
        case "shutdown-timeout": return [String(shutdownTimeout)]
        case "origin": return origins
        case "user": return user.map { [$0] } ?? []
        case "unix-mode":
            let digits = String(unixMode, radix: 8)
            return ["0" + String(repeating: "0", count: max(0, 3 - digits.count)) + digits]
        case "workers": return [workers == 0 ? "auto" : String(workers)]
        case "web": return web.map { [$0] } ?? []
        case "access-log": return accessLog.map { [$0] } ?? []
        case "trusted-proxy": return trustedProxies
        case "proxy-protocol-from": return proxyProtocolSources
        case "admin-listen": return adminListen.map { [$0] } ?? []
        case "drain-delay": return [String(drainDelay)]
        case "max-connections-per-client": return [String(maxConnectionsPerClient)]
        case "upgrade-rate": return [String(upgradeRate)]
        case "upgrade-burst": return [String(upgradeBurst)]
        case "max-programs": return [String(programs.maxPrograms)]
        case "exec-grace": return [String(programs.graceSeconds)]
        case "exec-env": return programs.environmentNames.isEmpty ? [] : [programs.environmentNames.joined(separator: ", ")]
        case "exec-dir": return programs.directory.map { [$0] } ?? []
        case "auth-keys": return auth.keys.map { [$0] } ?? []
        case "auth-secret": return auth.secret.map { [$0] } ?? []
        case "auth-token": return [auth.tokenSources.map(\.description).joined(separator: ", ")]
        case "auth-issuer": return auth.policy.issuer.map { [$0] } ?? []
        case "auth-audience": return auth.policy.audiences.isEmpty ? [] : [auth.policy.audiences.joined(separator: ", ")]
        case "auth-leeway": return [String(auth.policy.leeway)]
        case "auth-require-exp": return [yesNo(auth.policy.requireExpiry)]
        case "auth-basic": return auth.passwords.map { [$0] } ?? []
        case "auth-realm": return [auth.realm]
        case "record": return recordDirectory.map { [$0] } ?? []
        case "record-max": return [ByteSize.format(recordMax)]
        case "tls-cert": return tls.certificate.map { [$0] } ?? []
        case "tls-key": return tls.key.map { [$0] } ?? []
        case "tls-only": return [yesNo(tls.only)]
        case "tls-priority": return [tls.priority]
        case "tls-ca": return tls.ca.map { [$0] } ?? []
        case "tls-verify-client": return [yesNo(tls.verifyClient)]
        case "tls-tickets": return [yesNo(tls.tickets)]
        case "tls-ticket-key": return tls.ticketKey.map { [$0] } ?? []
        case "peer-tls-ca": return tls.peerCA.map { [$0] } ?? []
        case "peer-tls-verify": return [yesNo(tls.peerVerify)]
        case "compression":
            return [!deflate.enabled ? "off" : deflate.minimumSize == 0 ? "on" : ByteSize.format(UInt64(deflate.minimumSize))]
        case "compression-level": return [String(deflate.level)]
        case "server-max-window-bits": return [String(deflate.serverMaxWindowBits)]
        case "client-max-window-bits": return [String(deflate.clientMaxWindowBits)]
        case "server-no-context-takeover": return [yesNo(!deflate.serverContextTakeover)]
        case "client-no-context-takeover": return [yesNo(!deflate.clientContextTakeover)]
        case "backend": return [backend]
        default: return []
        }
    }

    /// What an unset key means, for the comment that stands in for it.
    private func unsetMeaning(_ key: String) -> String {
        switch key {
        case "plugins":
            let choice = PluginDirectory.resolve(configured: nil)
            return choice.explicit ? "plugins load from \(choice.path) (WEBSOCKSY_PLUGINS)" : "plugins load from \(choice.path)"
        case "origin": return "any Origin is admitted"
        case "user": return "no privileges are dropped"
        case "web": return "plain HTTP requests get a 426 page"
        case "access-log": return "no access log"
        case "trusted-proxy": return "no proxy is trusted"
        case "exec-env": return "programs get none of the gateway's environment"
        case "exec-dir": return "programs run in their own directory"
        case "auth-keys": return "no public keys for tokens"
        case "auth-secret": return "no HMAC secret for tokens"
        case "auth-issuer": return "any issuer"
        case "auth-audience": return "any audience"
        case "auth-basic": return "no password check"
        case "record": return "sessions are not recorded (unless a route says record=DIR)"
        case "tls-cert": return "no TLS"
        case "tls-key": return "the key is read from the certificate file"
        case "tls-ca": return "no client certificates"
        case "peer-tls-ca": return "tls:// peers are checked against the system trust store"
        default: return "no value"
        }
    }

    /// Whether `key = value` reads back as exactly this key and value. The ini reader trims blanks
    /// (space, tab) around both, cuts the line at the first `=`, ends it at a line break, and takes
    /// a line starting with `[` as a section header and one starting with `;` or `#` as a comment.
    /// Only a `-c` flag can produce something it cannot hold.
    static func fitsIniLine(key: String, value: String) -> Bool {
        func blankAtEdge(_ s: String) -> Bool {
            guard let first = s.first, let last = s.last else { return false }
            return first == " " || first == "\t" || last == " " || last == "\t"
        }
        func breaksLine(_ s: String) -> Bool { s.contains { $0 == "\n" || $0 == "\r" } }
        guard let first = key.first, !"[;#".contains(first), !key.contains("=") else { return false }
        return !blankAtEdge(key) && !blankAtEdge(value) && !breaksLine(key) && !breaksLine(value)
    }

    /// The effective configuration as a configuration file; `arguments` are the command line it came
    /// from (without the program name), quoted in the header.
    public func iniText(arguments: [String]) -> String {
        var lines = [
            "; websocksy \(Version.string): effective configuration of",
            ";   websocksy \(arguments.filter { $0 != "--print-config" }.joined(separator: " "))",
            "; Each setting follows a comment naming where it came from: FILE:LINE, a flag, or default.",
            "; Keys without a value are shown as comments only.",
        ]
        if logLevel != .info {
            lines.append("; log level \(logLevel.tag) from -v (a flag only, not a configuration file setting)")
        }
        func emit(_ key: String, _ value: String, _ origin: String) {
            lines.append("; \(origin)")
            if Self.fitsIniLine(key: key, value: value) {
                lines.append("\(key) = \(value)")
            } else {
                lines.append("; \(key) = '\(value)' cannot be written in a configuration file (blanks at an end, "
                             + "a line break, or a key starting with [ ; or #); give it with -c")
            }
        }

        lines += ["", "[core]"]
        for key in Self.coreKeys {
            let values = coreValues(key)
            let origins = coreOrigins[key] ?? []
            if values.isEmpty {
                lines.append("; \(key): not set (default): \(unsetMeaning(key))")
                continue
            }
            for (n, value) in values.enumerated() {
                emit(key, value, n < origins.count ? origins[n].label : "default")
            }
        }

        lines += ["", "[backend]"]
        for replaced in replacedBackends {
            lines.append("; backend \(replaced.name) (\(replaced.origin?.label ?? "default")) was replaced by a later one; "
                         + "its \(replaced.options.count) option(s) are checked at start-up, not used")
        }
        if backendOptions.isEmpty {
            lines.append("; backend \(backend) has no options")
        } else if backend == Self.defaultBackend {
            lines.append("; Options of backend \(backend), in the order it gets them; of a repeated key, the last wins.")
        } else {
            lines.append("; Options of backend \(backend), in the order it gets them; a repeated key means what the plugin makes of it.")
        }
        for (n, option) in backendOptions.enumerated() {
            var origin = option.origin.label
            // defaultpeer keeps the last value of a key: say so where an earlier one is dead.
            if backend == Self.defaultBackend, backendOptions[(n + 1)...].contains(where: { $0.key == option.key }) {
                origin += " (replaced by a later \(option.key))"
            }
            emit(option.key, option.value, origin)
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
