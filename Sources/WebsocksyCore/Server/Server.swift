import CLinux
import Glibc

/// The gateway: owns the reactor, the listener, the backend and every connection, runs the
/// periodic sweep and the graceful shutdown.
public final class Server {
    let reactor: Reactor
    /// The backend, asked off the loop when its queries may block.
    private(set) var queries: BackendQueries
    private(set) var limits: Limits
    /// Allowed `Origin` values (lower-case); empty admits any.
    private(set) var origins: [String]
    /// The web root for plain HTTP requests, if configured.
    private(set) var web: StaticFiles?
    let accessLog: AccessLog?
    private(set) var trustedProxies: [String]
    /// Load balancers whose connections may begin with a PROXY header (`proxy-protocol-from`).
    private var proxySources: AddressRangeList
    /// `max-connections-per-client`, `upgrade-rate`.
    let clientLimits: ClientLimits
    let metrics = Metrics()
    /// `/metrics`, `/healthz`, `/readyz` (`admin-listen`), and the requests it is answering.
    private var adminListener: Listener?
    private var admins = MemberList<AdminConnection>()
    private var configuration: Configuration
    private let pluginDirectory: String
    /// Reads the configuration again (SIGHUP).
    private let reloadSource: (() throws(ConfigError) -> Configuration)?
    private var lastRefusalLog: Int64 = 0
    let resolver: Resolver
    let tls: TLSContext
    /// Tokens and passwords checked at the upgrade (`auth-*`); nil when none are configured.
    private(set) var auth: Authenticator?
    /// `exec://` programs started for connections, until reaped.
    private(set) var programs: Programs!
    /// Peers shared by all clients of a route.
    private(set) var sharedPeers: SharedPeers!
    /// The thread htpasswd checks run on, made with the first `auth-basic`.
    private(set) var passwordChecks: PasswordChecks?
    private var listener: Listener?
    private var connections = MemberList<Connection>()
    /// Endpoints their owners have finished with, still flushing or lingering on their own.
    private var finishing = MemberList<Endpoint>()
    /// Connections that ended during this turn of the loop: kept until it is over, since the
    /// call that ended one may still be running on it.
    private var retired: [Connection] = []
    /// The blocks connection buffers borrow while bytes are in them.
    let blocks = BlockPool()
    /// permessage-deflate's shared buffers and streams, with the configured settings.
    private(set) var compression: CompressionPool
    /// The buffer budget for assembled messages.
    private(set) var budget: MemoryBudget!
    /// Connections at the last return of freed memory to the system, and the most since.
    private var peakConnections = 0
    /// When the buffer blocks no interval needed next give their pages back.
    private var nextBlockTrim: Int64 = 0
    private var signals: SignalSource?
    /// Monotonic time of the current loop turn (ms).
    private(set) var now: Int64 = MonotonicClock.nowMilliseconds()
    private var shutdownDeadline: Int64?
    /// SIGTERM with `drain-delay`: not ready, still serving, until then.
    private var drainUntil: Int64?
    private var drainSignal: Int32 = SIGTERM
    /// A reloaded configuration waiting for the running backend to finish its query (SIGHUP).
    private var pendingReload: Configuration?
    private static let sweepIntervalMilliseconds: Int64 = 250
    static let maxAdminConnections = 64
    /// Connections that closed without a request, summarized by the sweep at most once a minute.
    var quietClosures = QuietClosures()

    public var listeningAddress: String { listener?.boundDescription ?? "" }
    /// The listening port as text (`SERVER_PORT` of exec:// programs).
    var listeningPort: String { listeningAddress.split(separator: ":").last.map(String.init) ?? "" }

    public init(configuration: Configuration, pluginDirectory: String,
                reloadSource: (() throws(ConfigError) -> Configuration)? = nil) throws(ConfigError) {
        self.configuration = configuration
        self.pluginDirectory = pluginDirectory
        self.reloadSource = reloadSource
        origins = configuration.origins
        trustedProxies = configuration.trustedProxies
        proxySources = Self.ranges(configuration.proxyProtocolSources)
        clientLimits = ClientLimits(maxConnections: configuration.maxConnectionsPerClient,
                                    rate: configuration.upgradeRate, burst: configuration.upgradeBurst)
        do {
            reactor = try Reactor()
            resolver = try Resolver(reactor: reactor)
        } catch {
            throw ConfigError("start-up", error.description)
        }
        tls = try TLSContext(configuration.tls)
        accessLog = try configuration.accessLog.map { path throws(ConfigError) in try AccessLog(path: path) }
        web = try configuration.web.map { path throws(ConfigError) in try StaticFiles(directory: path) }
        do {
            queries = try BackendQueries(backend: BackendFactory.make(configuration, pluginDirectory: pluginDirectory), reactor: reactor)
            queries.observeLatency = { [metrics] in metrics.backendQuery.observe(microseconds: $0) }
        } catch let error as ConfigError {
            throw error
        } catch {
            throw ConfigError("start-up", "\(error)")
        }
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
        try useAuth(configuration.auth)
        programs = Programs(reactor: reactor, settings: configuration.programs)
        sharedPeers = SharedPeers(server: self)
        openSharedPeersAtStart()
        if let admin = configuration.adminListen {
            let (host, port) = Self.hostAndPort(admin)
            adminListener = try Listener(host: host, port: port, unixMode: 0o600) { [unowned self] fd, _ in
                self.adminAccepted(fd)
            }
        }
        do {
            try listener.start(reactor)
            if let adminListener {
                try adminListener.start(reactor)
                Log.info("admin listener (/metrics, /healthz, /readyz) on \(adminListener.boundDescription)")
            }
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
            if let until = drainUntil, now >= until { stop(drainSignal) }
            if let deadline = shutdownDeadline, (connections.isEmpty && finishing.isEmpty) || now >= deadline {
                break
            }
        }
        for connection in connections.snapshot { connection.destroy() }
        for endpoint in finishing.snapshot { endpoint.close() }
        queries.stopAtExit()
        passwordChecks?.stopAtExit()
        sharedPeers.stopAll()
        programs.stopAll()
        listener?.stop(reactor)
        for admin in admins.snapshot { admin.expire() }
        adminListener?.stop(reactor)
        Log.info("stopped")
    }

    /// `share-open = start`: the backend's shared peers open before any client (again after a reload).
    private func openSharedPeersAtStart() {
        for choice in queries.backend.peersToOpenAtStart {
            sharedPeers.peer(for: choice, settings: choice.sharing ?? SharingSettings()).openAtStart()
        }
    }

    private func useAuth(_ settings: AuthSettings) throws(ConfigError) {
        auth = settings.isEnabled ? try Authenticator(settings) : nil
        if settings.passwords != nil && passwordChecks == nil {
            do {
                passwordChecks = try PasswordChecks(reactor: reactor)
            } catch {
                throw ConfigError("start-up", error.description)
            }
        }
    }

    /// SIGHUP: read the configuration again and use it for new connections. Established ones keep
    /// their peers. A configuration that fails to load changes nothing.
    private func reload() {
        tls.reload()
        auth?.reloadFiles()
        guard let reloadSource else { return }
        let fresh: Configuration
        do {
            fresh = try reloadSource()
        } catch {
            let kept = pendingReload == nil ? "keeping the running one" : "the reload already waiting for the backend goes ahead"
            Log.error("configuration reload failed, \(kept): \(error)")
            return
        }
        if fresh.listen != configuration.listen || fresh.port != configuration.port {
            Log.warning("listen and port changes take effect after a restart")
        }
        // One backend at a time: a plugin reloaded from the same file shares its globals. The old
        // one finishes the query it is running — the loop goes on meanwhile, new queries wait —
        // and then the configuration is applied. A SIGHUP in between only updates what is applied.
        let retiring = pendingReload != nil
        pendingReload = fresh
        guard !retiring else { return }
        queries.retire { [unowned self] unanswered in
            let fresh = self.pendingReload!
            self.pendingReload = nil
            self.apply(fresh)
            self.openSharedPeersAtStart()
            self.queries.observeLatency = { [metrics] in metrics.backendQuery.observe(microseconds: $0) }
            for query in unanswered { self.queries.carryOver(query) }
        }
    }

    /// A reloaded configuration, once the previous backend has let go. A backend that fails to
    /// start changes nothing: the previous configuration's is started again.
    private func apply(_ fresh: Configuration) {
        do {
            queries = try BackendQueries(backend: BackendFactory.make(fresh, pluginDirectory: pluginDirectory), reactor: reactor)
        } catch {
            Log.error("configuration reload failed, keeping the running one: \(error)")
            do {
                queries = try BackendQueries(backend: BackendFactory.make(configuration, pluginDirectory: pluginDirectory), reactor: reactor)
            } catch {
                Log.error("the previous backend could not be restored either: \(error)")
                // Nothing to route with: an unconfigured default backend refuses every upgrade (404).
                queries = try! BackendQueries(backend: DefaultPeerBackend(), reactor: reactor)
            }
            return
        }
        do {
            web = try fresh.web.map { path throws(ConfigError) in try StaticFiles(directory: path) }
        } catch {
            Log.error("web root not changed: \(error)")
        }
        if fresh.auth != configuration.auth {
            do throws(ConfigError) {
                try useAuth(fresh.auth)
            } catch {
                Log.error("authentication settings not changed: \(error)")
            }
        }
        programs.settings = fresh.programs
        limits = Limits(fresh)
        // Open connections keep the pool they negotiated with.
        if fresh.deflate != configuration.deflate { compression = CompressionPool(settings: fresh.deflate) }
        budget.limit = limits.bufferMemoryBytes
        origins = fresh.origins
        trustedProxies = fresh.trustedProxies
        proxySources = Self.ranges(fresh.proxyProtocolSources)
        clientLimits.maxConnections = fresh.maxConnectionsPerClient
        clientLimits.rate = fresh.upgradeRate
        clientLimits.burst = fresh.upgradeBurst
        configuration = fresh
        Log.info("configuration reloaded")
    }

    private func accepted(_ fd: Int32, _ address: sockaddr_storage) {
        var address = address
        metrics.accepted += 1
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
        if listener?.acceptsWithNoDelay == false { SocketOptions.setNoDelay(fd) }
        let client: StreamEndpoint
        do {
            client = try StreamEndpoint(server: self, fd: fd, owner: nil)
        } catch {
            Log.error("\(error)")
            close(fd)
            return
        }
        let numeric = ProxyProtocol.address(of: address)
        let connection = Connection(server: self, client: client, clientAddress: SocketOptions.describe(&address), client4or6: numeric)
        connections.append(connection)
        peakConnections = max(peakConnections, connections.count)
        Log.trace("\(connection.clientAddress): accepted")
        if let numeric, !proxySources.isEmpty, proxySources.contains(numeric.ip) {
            // The balancer's header names the client; the limits apply to that address.
            client.readProxyHeader { [unowned connection] in connection.proxyHeaderRead($0) }
        } else if !admitClient(connection) {
            return connection.refuseTooMany()
        }
        // The request has usually arrived with the connection (TCP_DEFER_ACCEPT waits for it):
        // read it now instead of on the next turn of the loop.
        client.handleEvent(EpollEvents.readable)
    }

    // MARK: Admin listener

    /// New clients are welcome (`/readyz`): until a graceful stop begins.
    var isReady: Bool { shutdownDeadline == nil && drainUntil == nil }

    /// A graceful stop has begun: requests still arriving get 503.
    var isStopping: Bool { shutdownDeadline != nil }

    private func adminAccepted(_ fd: Int32) {
        // A scraper and a balancer's checks need a handful; more is someone holding descriptors.
        guard admins.count < Self.maxAdminConnections else {
            close(fd)
            return
        }
        do {
            let admin = try AdminConnection(server: self, fd: fd)
            admins.append(admin)
            admin.endpoint.handleEvent(EpollEvents.readable)
        } catch {
            Log.error("\(error)")
            close(fd)
        }
    }

    func adminConnectionEnded(_ admin: AdminConnection) {
        admins.remove(admin)
    }

    /// `/metrics`: the counters, with gauges read from the connections now.
    func metricsText() -> String {
        var now = Metrics.Snapshot()
        now.connections = connections.count
        now.finishing = finishing.count
        now.ready = isReady
        now.budgetBytes = budget.used
        now.trackedClients = clientLimits.trackedAddresses
        for connection in connections.members {
            now.queuedBytes += connection.client.queuedBytes
            guard let bridge = connection.bridge else { continue }
            now.webSockets += 1
            now.queuedBytes += bridge.peerQueuedBytes
            now.openTraffic.add(connection.record)
        }
        return metrics.render(now)
    }

    /// "127.0.0.1:9090" → ("127.0.0.1", "9090"); "[::1]:9090" → ("::1", "9090").
    static func hostAndPort(_ text: String) -> (String, String) {
        let colon = text.lastIndex(of: ":")!
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, String(text[text.index(after: colon)...]))
    }

    /// Counts the connection against its address's `max-connections-per-client`; false when over.
    func admitClient(_ connection: Connection) -> Bool {
        guard clientLimits.maxConnections > 0, let key = ClientLimits.Key(connection.client4or6?.ip) else { return true }
        guard clientLimits.admitConnection(key, now: now) else { return false }
        connection.limitKey = key
        return true
    }

    /// Configuration strings checked at parse time (`proxy-protocol-from`).
    private static func ranges(_ texts: [String]) -> AddressRangeList {
        AddressRangeList(texts.compactMap { AddressRange.parse($0) })
    }

    /// Answers a client the server will not take and closes it without creating a connection.
    private func refuseAtOnce(_ fd: Int32, _ rejection: HandshakeRejection) {
        metrics.refused(rejection.status.rawValue)
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
        if now >= nextBlockTrim {
            blocks.trim()
            nextBlockTrim = now + 1000
        }
        clientLimits.sweep(now: now)
        programs.sweep(now: now)
        sharedPeers.sweep(now: now)
        for admin in admins.snapshot where now >= admin.deadline { admin.expire() }
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
        if shutdownDeadline != nil || drainUntil != nil {
            Log.info("second signal: exiting now")
            for connection in connections.snapshot { connection.destroy() }
            exit(0)
        }
        guard limits.drainDelayMilliseconds > 0 else { return stop(signo) }
        // /readyz turns 503 now; the gateway goes on serving until balancers have seen it.
        Log.info("signal \(signo): draining for \(limits.drainDelayMilliseconds / 1000) s, then stopping")
        drainUntil = now + limits.drainDelayMilliseconds
        drainSignal = signo
    }

    /// The graceful stop: no new connections; WebSockets get Close 1001; upgrades in progress get 503.
    private func stop(_ signo: Int32) {
        drainUntil = nil
        Log.info("signal \(signo): closing \(connections.count) connection(s) and stopping")
        shutdownDeadline = now + limits.shutdownTimeoutMilliseconds
        // Connections the kernel has queued are taken first: one whose request is in gets 503
        // (`processHandshake` while stopping) instead of a reset when the socket closes.
        listener?.acceptQueued()
        listener?.stop(reactor)
        listener = nil
        for connection in connections.snapshot { connection.shutdown() }
    }
}
