import CLinux
import Glibc

/// Connects a socket to a peer without blocking: resolves the host on the resolver thread, tries
/// each address in turn, and hands the connected descriptor (with its reactor registration) to the
/// delegate, which builds the endpoint that uses it. TLS is the endpoint's business, not this.
final class PeerConnector: EventHandler {
    enum Outcome {
        /// The descriptor and its reactor registration (the events it was registered for).
        case connected(fd: Int32, registration: (token: Reactor.Token, events: UInt32))
        case failed(String)
        /// Every address the name resolved to is outside the allow-list.
        case forbidden(String)
    }

    unowned let server: Server
    let address: PeerAddress
    /// Resolved addresses this connection may use (`PeerChoice.addressCheck`); nil: any.
    private let addressCheck: (([UInt8]) -> Bool)?
    /// Called once, from the event loop, unless the connect completed inside `start()`.
    private var completion: ((Outcome) -> Void)?
    private var candidates: [SocketAddress] = []
    private var lastError = ""
    private var fd: Int32 = -1
    private var token: Reactor.Token?
    private var isFinished = false
    /// A Unix stream peer whose listen backlog was full (EAGAIN): tried again at `retryAt`.
    private var retryTarget: SocketAddress?
    private var retryAt: Int64 = 0

    init(server: Server, address: PeerAddress, addressCheck: (([UInt8]) -> Bool)? = nil) {
        self.server = server
        self.address = address
        self.addressCheck = addressCheck
    }

    /// Starts connecting. Returns the outcome when it is known at once (loopback connects and
    /// numeric addresses usually are); otherwise nil, and `completion` gets it later.
    func start(completion: @escaping (Outcome) -> Void) -> Outcome? {
        let type = address.isDatagram ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)
        switch address {
        case .tcp(let host, let port), .tls(let host, let port), .udp(let host, let port):
            if let numeric = SocketAddress.numeric(host: host, port: port, socketType: type) {
                candidates = numeric
            } else {
                self.completion = completion
                server.resolver.resolve(host: host, port: port, socketType: type) { [weak self] result in
                    guard let self, !self.isFinished else { return }
                    switch result {
                    case .success(let list):
                        self.candidates = list
                        if let refusal = self.keepAllowedCandidates() { return self.report(refusal) }
                        if let outcome = self.connectNext() { self.report(outcome) }
                    case .failure(let error):
                        self.report(.failed("cannot resolve \(host): \(error)"))
                    }
                }
                return nil
            }
        case .unixStream(let path), .unixDatagram(let path):
            candidates = [SocketAddress.unix(path, socketType: type)]
        case .echo, .program, .fifo, .fifoOut, .standardInput:
            return .failed("\(address) has no socket to connect")
        }
        if let refusal = keepAllowedCandidates() {
            isFinished = true
            return refusal
        }
        let outcome = connectNext()
        if outcome == nil { self.completion = completion } else { isFinished = true }
        return outcome
    }

    /// Drops the candidates `addressCheck` refuses; `.forbidden` when none is left.
    private func keepAllowedCandidates() -> Outcome? {
        guard let addressCheck else { return nil }
        candidates = candidates.filter { AddressRange.ipBytes($0.storage).map(addressCheck) ?? false }
        return candidates.isEmpty ? .forbidden("\(address) resolves only to addresses outside the allow-list") : nil
    }

    static let retryIntervalMilliseconds: Int64 = 100

    /// Tries a busy Unix peer again once its retry time has come (called from the periodic sweep).
    func retryIfDue(now: Int64) {
        guard !isFinished, let target = retryTarget, now >= retryAt else { return }
        retryTarget = nil
        candidates.insert(target, at: 0)
        if let outcome = connectNext() { report(outcome) }
    }

    /// Stops: the descriptor (if any) is closed and nothing is reported.
    func cancel() {
        isFinished = true
        completion = nil
        closeSocket()
    }

    private func report(_ outcome: Outcome) {
        guard !isFinished else { return }
        isFinished = true
        let completion = self.completion
        self.completion = nil
        completion?(outcome)
    }

    /// Tries the next candidate; the outcome when it is known now, nil while a connect is pending.
    private func connectNext() -> Outcome? {
        closeSocket()
        while !candidates.isEmpty {
            var target = candidates.removeFirst()
            let s = socket(target.family, target.socketType | Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
            guard s >= 0 else {
                lastError = "\(SystemError("socket"))"
                continue
            }
            fd = s
            if (target.family == AF_INET || target.family == AF_INET6) && !address.isDatagram {
                SocketOptions.setNoDelay(s)
            }
            if target.family == AF_UNIX && address.isDatagram {
                // Autobind to an abstract address of our own, so the peer has somewhere to answer.
                var own = sockaddr_un()
                own.sun_family = sa_family_t(AF_UNIX)
                _ = withUnsafePointer(to: &own) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sa_family_t>.size)) }
                }
            }
            let rc = withUnsafePointer(to: &target.storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s, $0, target.length) }
            }
            let code = rc == 0 ? 0 : errno
            // On loopback a connect in progress has usually completed by now: checking once without
            // waiting saves an event-loop round trip on every upgrade.
            if code == 0 || (code == EINPROGRESS && isConnected(s)) {
                guard let token = register(EpollEvents.readable) else { continue }
                fd = -1
                self.token = nil
                return .connected(fd: s, registration: (token, EpollEvents.readable))
            }
            if code == EINPROGRESS {
                if register(EpollEvents.writable) != nil { return nil }
                continue
            }
            if code == EAGAIN && target.family == AF_UNIX {
                // A busy Unix listener refuses at once instead of queueing the SYN as TCP does:
                // wait for room, within connect-timeout, rather than answer 502.
                closeSocket()
                retryTarget = target
                retryAt = server.now + Self.retryIntervalMilliseconds
                return nil
            }
            lastError = "connect to \(address): \(String(cString: strerror(code)))"
            closeSocket()
        }
        return .failed(lastError.isEmpty ? "no address to connect to" : lastError)
    }

    private func register(_ events: UInt32) -> Reactor.Token? {
        do {
            token = try server.reactor.register(fd, events: events, handler: self)
            return token
        } catch {
            lastError = error.description
            closeSocket()
            return nil
        }
    }

    /// The pending connect finished (writable) or failed (error).
    func handleEvent(_ events: UInt32) {
        guard !isFinished, fd >= 0, let token else { return }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        if error == 0 {
            let connected = fd
            fd = -1
            self.token = nil
            report(.connected(fd: connected, registration: (token, EpollEvents.writable)))
            return
        }
        lastError = "connect to \(address): \(String(cString: strerror(error)))"
        if let outcome = connectNext() { report(outcome) }
    }

    /// Whether a non-blocking connect has completed (getpeername fails with ENOTCONN until then).
    private func isConnected(_ fd: Int32) -> Bool {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) == 0 }
        }
    }

    private func closeSocket() {
        if let token { server.reactor.unregister(token) }
        token = nil
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}
