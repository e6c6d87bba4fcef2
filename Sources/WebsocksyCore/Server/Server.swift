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
    /// Endpoints their owners have finished with, still flushing or lingering on their own.
    private var finishing = MemberList<Endpoint>()
    /// Connections that ended during this turn of the loop: kept until it is over, since the
    /// call that ended one may still be running on it.
    private var retired: [Connection] = []
    /// permessage-deflate's shared buffers and streams, with the configured settings.
    private(set) var compression: CompressionPool
    /// The buffer budget for assembled messages.
    private(set) var budget: MemoryBudget!
    /// Connections at the last return of freed memory to the system, and the most since.
    private var peakConnections = 0
    private var signals: SignalSource?
    /// Monotonic time of the current loop turn (ms).
    private(set) var now: Int64 = MonotonicClock.nowMilliseconds()
    private var shutdownDeadline: Int64?
    private static let sweepIntervalMilliseconds: Int64 = 250
    /// Connections that closed without a request, summarized by the sweep at most once a minute.
    var quietClosures = QuietClosures()

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
        compression = CompressionPool(settings: configuration.deflate)
        let listener = try Listener(host: configuration.listen, port: configuration.port, unixMode: configuration.unixMode,
                                    reusePort: configuration.workers != 1,
                                    inherited: configuration.inheritedListener) { [unowned self] fd, address in
            self.accepted(fd, address)
        }
        self.listener = listener
        budget = MemoryBudget(limit: limits.bufferMemoryBytes) { [unowned self] in
            self.connections.members.compactMap { $0.bridge }.filter { $0.heldBytes > 0 }
        }
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
            retired.removeAll(keepingCapacity: true)
            if now >= nextSweep {
                sweep()
                nextSweep = now + Self.sweepIntervalMilliseconds
            }
            if let deadline = shutdownDeadline, (connections.isEmpty && finishing.isEmpty) || now >= deadline {
                break
            }
        }
        for connection in connections.snapshot { connection.destroy() }
        for endpoint in finishing.snapshot { endpoint.close() }
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
        // Open connections keep the pool they negotiated with.
        if fresh.deflate != configuration.deflate { compression = CompressionPool(settings: fresh.deflate) }
        budget.limit = limits.bufferMemoryBytes
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
        // Endpoints finishing on their own hold descriptors too: descriptors are sized for
        // `max-connections`, so under pressure the one closest to its deadline makes room.
        if connections.count + finishing.count >= limits.maxConnections,
           let oldest = finishing.members.min(by: { $0.deadline < $1.deadline }) {
            Log.debug("at max-connections: closing an endpoint that was still finishing")
            oldest.close()
        }
        SocketOptions.setNoDelay(fd)
        let client: StreamEndpoint
        do {
            client = try StreamEndpoint(server: self, fd: fd, owner: nil)
        } catch {
            Log.error("\(error)")
            close(fd)
            return
        }
        let connection = Connection(server: self, client: client, clientAddress: SocketOptions.describe(&address))
        connections.append(connection)
        peakConnections = max(peakConnections, connections.count)
        Log.trace("\(connection.clientAddress): accepted")
        // The request has usually arrived with the connection (TCP_DEFER_ACCEPT waits for it):
        // read it now instead of on the next turn of the loop.
        client.handleEvent(EpollEvents.readable)
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
        retired.append(connection)
    }

    /// Keeps an endpoint that is finishing on its own in view of the sweep until it closes.
    func adoptFinishing(_ endpoint: Endpoint) {
        guard !endpoint.isClosed else { return }
        finishing.append(endpoint)
    }

    func finishingEndpointClosed(_ endpoint: Endpoint) {
        finishing.remove(endpoint)
    }

    /// Deadlines, keepalive, and the summary of connections that closed without a request. A linear
    /// pass: at a few hundred nanoseconds per connection, even tens of thousands cost well under a
    /// millisecond, four times a second.
    private func sweep() {
        for connection in connections.snapshot { connection.sweep(now: now) }
        for endpoint in finishing.snapshot where endpoint.deadline != 0 && now >= endpoint.deadline {
            Log.debug("an endpoint did not finish in time")
            endpoint.close()
        }
        returnFreedMemory()
        if let summary = quietClosures.summary(now: now) { Log.info(summary) }
    }

    /// After a peak, glibc keeps the freed heap (and the arenas of the resolver thread) mapped:
    /// once the connections have fallen to half the peak, hand it back to the system.
    private func returnFreedMemory() {
        let open = connections.count + finishing.count
        guard peakConnections >= 64, open <= peakConnections / 2 else { return }
        malloc_trim(0)
        peakConnections = open
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
        for connection in connections.snapshot { connection.shutdown() }
    }
}
