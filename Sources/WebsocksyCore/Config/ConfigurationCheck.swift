import Glibc

/// `--check-config`: everything start-up validates, without binding the port, forking workers or
/// dropping privileges, so a configuration can be tried before a restart (or by `ExecStartPre=`).
///
/// The steps follow start-up's order (`main.swift`: the supervisor's listen address and user, the
/// framing plugins, then what `Server.init` loads — TLS, access log, web root, backend), so the
/// first error reported is the one start-up would report. What needs the real socket (a port in
/// use, a privileged port) cannot be known without binding and is not checked.
public enum ConfigurationCheck {
    public static func run(_ configuration: Configuration) throws(ConfigError) {
        do throws(ConfigError) {
            try checkListenAddress(configuration)
            try configuration.checkAdminListenWorkers()
            try checkUser(configuration.user)
            let plugins = PluginDirectory.resolve(configured: configuration.pluginDirectory)
            _ = try FramingPlugins.loadAll(from: plugins)
            _ = try TLSContext(configuration.tls)
            try checkAccessLog(configuration.accessLog)
            _ = try configuration.web.map { path throws(ConfigError) in try StaticFiles(directory: path) }
            _ = try Authenticator(configuration.auth)
            // Loaded, configured and validated as at start-up (plugin backends run their init and
            // configure), then released as at shutdown (their cleanup).
            let backend = try BackendFactory.make(configuration, pluginDirectory: plugins.path)
            backend.shutdown()
        } catch {
            throw configuration.locating(error)
        }
    }

    /// What `Listener` and `Supervisor` would refuse before binding: a host that does not resolve, a
    /// Unix socket path that cannot be one, several workers on a Unix socket.
    private static func checkListenAddress(_ configuration: Configuration) throws(ConfigError) {
        let listen = configuration.listen
        if listen.hasPrefix("unix:") {
            // The same refusal as `Supervisor.forkWorkers`.
            guard configuration.workers == 1 else {
                throw ConfigError("workers", "several workers need a TCP listen address (SO_REUSEPORT), not \(listen)")
            }
            let path = String(listen.dropFirst(5))
            guard !path.isEmpty, path.utf8.count < 108 else { throw ConfigError("listen", "unix socket path must be 1–107 bytes") }
            var st = stat()
            if lstat(path, &st) == 0 {
                guard (st.st_mode & S_IFMT) == S_IFSOCK else { throw ConfigError("listen", "\(path) exists and is not a socket") }
            } else if !PluginDirectory.isDirectory(parentDirectory(path)) {
                throw ConfigError("listen", "cannot listen on unix:\(path): \(parentDirectory(path)) is not a directory")
            }
            return
        }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(listen, configuration.port, &hints, &list)
        guard rc == 0 else {
            throw ConfigError("listen", "cannot resolve \(listen) port \(configuration.port): \(String(cString: gai_strerror(rc)))")
        }
        freeaddrinfo(list)
    }

    /// As `ProcessSetup.dropPrivileges`: an unknown user stops a start as root. Started otherwise,
    /// the gateway only warns that `user` has nothing to do, and so does this check.
    private static func checkUser(_ user: String?) throws(ConfigError) {
        guard let user, getuid() == 0 || geteuid() == 0 else { return }
        guard getpwnam(user) != nil else { throw ConfigError("user", "no such user '\(user)'") }
    }

    /// Opening the access log would create it, so instead: the file must be writable, or its
    /// directory must let it be created. Checked as the user running the check — at start-up the
    /// file is opened before privileges are dropped, except by workers, which open it as `user`.
    private static func checkAccessLog(_ path: String?) throws(ConfigError) {
        guard let path, path != "-" else { return }
        var st = stat()
        if stat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) != S_IFDIR else { throw ConfigError("access-log", "cannot open \(path): it is a directory") }
            guard access(path, W_OK) == 0 else {
                throw ConfigError("access-log", "cannot open \(path): \(String(cString: strerror(errno)))")
            }
            return
        }
        guard errno == ENOENT else { throw ConfigError("access-log", "cannot open \(path): \(String(cString: strerror(errno)))") }
        let directory = parentDirectory(path)
        guard access(directory, W_OK | X_OK) == 0 else {
            throw ConfigError("access-log", "cannot create \(path): \(directory): \(String(cString: strerror(errno)))")
        }
    }

    /// The directory a path names its file in: `.` for a bare name, `/` for a file at the root.
    static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}

extension Configuration {
    /// Points an error found after parsing at the file line or flag that set the setting behind it,
    /// so that it reads `FILE:LINE: ...` like a parse error. Start-up and `--check-config` name the
    /// setting (`web`, `tls-key`, `workers`) or the file a setting names (the certificate, a backend
    /// plugin); the original text stays after the new location. Other errors, and errors about
    /// settings left at their defaults (or plugins found through WEBSOCKSY_PLUGINS), are unchanged.
    public func locating(_ error: ConfigError) -> ConfigError {
        var origin: SettingOrigin?
        if coreOrigins[error.location] != nil {
            origin = coreOrigins[error.location]?.last
        } else if let certificate = tls.certificate, error.location == certificate {
            origin = coreOrigins["tls-cert"]?.last
        } else if let keys = auth.keys, error.location == keys {
            origin = coreOrigins["auth-keys"]?.last
        } else if let secret = auth.secret, error.location == secret {
            origin = coreOrigins["auth-secret"]?.last
        } else {
            // A backend plugin that cannot be loaded is named by its file, `DIR/backend_NAME.so`.
            let selected = [(name: backend, origin: backendOrigin)] + replacedBackends.map { (name: $0.name, origin: $0.origin) }
            origin = selected.first(where: { error.location.hasSuffix("/backend_\($0.name).so") })?.origin ?? nil
        }
        guard let origin else { return error }
        return ConfigError(origin.description, "\(error.location): \(error.message)")
    }
}
