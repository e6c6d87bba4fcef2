import CLinux
import Glibc

/// The gateway: owns the reactor, the listener, the backend and every connection, runs the
/// periodic sweep and the graceful shutdown.
public final class Server {
    let reactor: Reactor
    private(set) var backend: Backend
    private(set) var limits: Limits
    /// Allowed `Origin` values (lower-case); empty admits any.
    private(set) var origins: [String]
    /// The web root for plain HTTP requests, if configured.
    private(set) var web: StaticFiles?
    let accessLog: AccessLog?
    private(set) var trustedProxies: [String]
    private var configuration: Configuration
    private let pluginDirectory: String
    /// Reads the configuration again (SIGHUP).
    private let reloadSource: (() throws(ConfigError) -> Configuration)?
    private var lastRefusalLog: Int64 = 0
    let resolver: Resolver
    let tls: TLSContext
    private var listener: Listener?
    private var connections = MemberList<Connection>()
    /// Peers whose client side has ended and that are still flushing to the peer.
    private var detachedPeers = MemberList<PeerSocket>()
    private var signals: SignalSource?
    /// Monotonic time of the current loop turn (ms).
    private(set) var now: Int64 = MonotonicClock.nowMilliseconds()
    private var shutdownDeadline: Int64?
    private static let sweepIntervalMilliseconds: Int64 = 250

    public var listeningAddress: String { listener?.boundDescription ?? "" }

    public init(configuration: Configuration, pluginDirectory: String,
                reloadSource: (() throws(ConfigError) -> Configuration)? = nil) throws(ConfigError) {
        self.configuration = configuration
        self.pluginDirectory = pluginDirectory
        self.reloadSource = reloadSource
        origins = configuration.origins
        trustedProxies = configuration.trustedProxies
        do {
            reactor = try Reactor()
            resolver = try Resolver(reactor: reactor)
        } catch {
            throw ConfigError("start-up", error.description)
        }
        tls = try TLSContext(configuration.tls)
        accessLog = try configuration.accessLog.map { path throws(ConfigError) in try AccessLog(path: path) }
        web = try configuration.web.map { path throws(ConfigError) in try StaticFiles(directory: path) }
        backend = try BackendFactory.make(configuration, pluginDirectory: pluginDirectory)
        limits = Limits(configuration)
        let listener = try Listener(host: configuration.listen, port: configuration.port, unixMode: configuration.unixMode,
                                    reusePort: configuration.workers != 1,
                                    inherited: configuration.inheritedListener) { [unowned self] fd, address in
            self.accepted(fd, address)
        }
        self.listener = listener
        do {
            try listener.start(reactor)
            signals = try SignalSource(signals: [SIGINT, SIGTERM, SIGHUP, SIGUSR1], reactor: reactor) { [unowned self] signo in
                self.signalReceived(signo)
            }
        } catch {
            throw ConfigError("start-up", error.description)
        }
    }

    /// Runs until a graceful shutdown has finished.
    public func run() {
        var nextSweep = now + Self.sweepIntervalMilliseconds
        while true {
            let wait = max(0, nextSweep - now)
            reactor.poll(timeoutMilliseconds: Int32(wait))
            now = MonotonicClock.nowMilliseconds()
            if now >= nextSweep {
                sweep()
                nextSweep = now + Self.sweepIntervalMilliseconds
            }
            if let deadline = shutdownDeadline, (connections.isEmpty && detachedPeers.isEmpty) || now >= deadline {
                break
            }
        }
        for connection in connections.snapshot { connection.destroy() }
        for peer in detachedPeers.snapshot { peer.close() }
        backend.shutdown()
        listener?.stop(reactor)
        Log.info("stopped")
    }

    /// SIGHUP: read the configuration again and use it for new connections. Established ones keep
    /// their peers. A configuration that fails to load changes nothing.
    private func reload() {
        tls.reload()
        guard let reloadSource else { return }
        let fresh: Configuration
        do {
            fresh = try reloadSource()
        } catch {
            Log.error("configuration reload failed, keeping the running one: \(error)")
            return
        }
        if fresh.listen != configuration.listen || fresh.port != configuration.port {
            Log.warning("listen and port changes take effect after a restart")
        }
        // One backend at a time: a plugin reloaded from the same file shares its globals.
        backend.shutdown()
        do {
            backend = try BackendFactory.make(fresh, pluginDirectory: pluginDirectory)
        } catch {
            Log.error("configuration reload failed, keeping the running one: \(error)")
            do {
                backend = try BackendFactory.make(configuration, pluginDirectory: pluginDirectory)
            } catch {
                Log.error("the previous backend could not be restored either: \(error)")
            }
            return
        }
        do {
            web = try fresh.web.map { path throws(ConfigError) in try StaticFiles(directory: path) }
        } catch {
            Log.error("web root not changed: \(error)")
        }
        limits = Limits(fresh)
        origins = fresh.origins
        trustedProxies = fresh.trustedProxies
        configuration = fresh
        Log.info("configuration reloaded")
    }

    private func accepted(_ fd: Int32, _ address: sockaddr_storage) {
        var address = address
        if connections.count >= limits.maxConnections {
            refuseAtOnce(fd, .init(.serviceUnavailable, "too many connections (max-connections = \(limits.maxConnections))"))
            return
        }
        SocketOptions.setNoDelay(fd)
        let connection = Connection(server: self, fd: fd, clientAddress: SocketOptions.describe(&address), now: now)
        do {
            connection.token = try reactor.register(fd, events: EpollEvents.readable, handler: connection)
        } catch {
            Log.error("\(error)")
            close(fd)
            return
        }
        connections.append(connection)
        Log.trace("\(connection.clientAddress): accepted")
        // The request has usually arrived with the connection (TCP_DEFER_ACCEPT waits for it):
        // read it now instead of on the next turn of the loop.
        connection.handleEvent(EpollEvents.readable)
    }

    /// Answers a client the server will not take and closes it without creating a connection.
    private func refuseAtOnce(_ fd: Int32, _ rejection: HandshakeRejection) {
        let response = HandshakeResponse.reject(rejection)
        _ = response.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        if now - lastRefusalLog >= 1000 {
            lastRefusalLog = now
            Log.warning("refusing new clients with \(rejection.status.rawValue): \(rejection.reason)")
        }
    }

    func connectionClosed(_ connection: Connection) {
        connections.remove(connection)
    }

    /// Keeps a peer that is finishing on its own in view of the sweep until it closes.
    func adoptDetached(_ peer: PeerSocket) {
        guard peer.state != .closed else { return }
        detachedPeers.append(peer)
    }

    func peerClosed(_ peer: PeerSocket) {
        detachedPeers.remove(peer)
    }

    /// Deadlines and keepalive. A linear pass: at a few hundred nanoseconds per connection, even tens
    /// of thousands cost well under a millisecond, four times a second.
    private func sweep() {
        for connection in connections.snapshot { connection.sweep(now: now) }
        for peer in detachedPeers.snapshot where peer.deadline != 0 && now >= peer.deadline {
            Log.debug("peer \(peer.address) did not finish in time")
            peer.close()
        }
    }

    private func signalReceived(_ signo: Int32) {
        if signo == SIGHUP {
            reload()
            return
        }
        if signo == SIGUSR1 {
            accessLog?.reopen()
            return
        }
        if shutdownDeadline != nil {
            Log.info("second signal: exiting now")
            for connection in connections.snapshot { connection.destroy() }
            exit(0)
        }
        Log.info("signal \(signo): closing \(connections.count) connection(s) and stopping")
        shutdownDeadline = now + limits.shutdownTimeoutMilliseconds
        listener?.stop(reactor)
        listener = nil
        for connection in connections.snapshot {
            switch connection.state {
            case .tlsHandshake, .handshake: connection.destroy()
            case .open: connection.initiateClose(.goingAway, reason: "server shutting down")
            default: break
            }
        }
    }
}
