import CLinux
import Glibc

/// The listening socket: binds the configured address (`::` is dual-stack, `unix:PATH` a Unix
/// socket for deployments behind a local proxy) and accepts clients until
/// the kernel has no more, handing each to the server. A spare descriptor is kept so that running out
/// of descriptors (EMFILE) can still drain the accept queue instead of spinning on a ready listener.
final class Listener: EventHandler {
    let fd: Int32
    let boundDescription: String
    private var token: Reactor.Token?
    private var spareFD: Int32
    private var lastExhaustionLog: Int64 = 0
    private let onAccept: (Int32, sockaddr_storage) -> Void
    /// The socket file to remove on stop, for Unix sockets.
    private var unixPath: String?
    /// TCP_NODELAY is set on the listening socket, and Linux copies it to every accepted one: a
    /// setsockopt per connection saved. Otherwise (a Unix socket) accepted ones need nothing.
    private(set) var acceptsWithNoDelay = false

    init(host: String, port: String, unixMode: UInt32, reusePort: Bool = false, inherited: Int32? = nil,
         onAccept: @escaping (Int32, sockaddr_storage) -> Void) throws(ConfigError) {
        self.onAccept = onAccept
        spareFD = open("/dev/null", O_RDONLY | O_CLOEXEC)
        if let inherited {
            fd = inherited
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            _ = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(inherited, $0, &length) }
            }
            boundDescription = Int32(storage.ss_family) == AF_UNIX ? "an inherited unix socket" : SocketOptions.describe(&storage)
            acceptsWithNoDelay = SocketOptions.setNoDelay(fd)
            return
        }
        if host.hasPrefix("unix:") {
            let path = String(host.dropFirst(5))
            (fd, boundDescription) = try Self.listenUnix(path, mode: unixMode)
            unixPath = path
            return
        }
        (fd, boundDescription) = try Self.bindTCP(host: host, port: port, reusePort: reusePort, listening: true)
        acceptsWithNoDelay = SocketOptions.setNoDelay(fd)
    }

    /// Binds the first address of `host` that works (`::` dual-stack) and, when `listening`, listens.
    /// Without listening a SO_REUSEPORT socket only holds the port: the kernel routes no connection
    /// to it, which is how the supervisor keeps one port for all its workers.
    static func bindTCP(host: String, port: String, reusePort: Bool, listening: Bool) throws(ConfigError) -> (Int32, String) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, port, &hints, &list)
        guard rc == 0, let first = list else {
            throw ConfigError("listen", "cannot resolve \(host) port \(port): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        var bound: Int32 = -1
        while let ai = candidate {
            candidate = ai.pointee.ai_next
            let s = socket(ai.pointee.ai_family, ai.pointee.ai_socktype | Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), ai.pointee.ai_protocol)
            guard s >= 0 else { lastError = SystemError("socket").description; continue }
            SocketOptions.setInt(s, SOL_SOCKET, SO_REUSEADDR, 1)
            if reusePort { SocketOptions.setInt(s, SOL_SOCKET, SO_REUSEPORT, 1) }
            if ai.pointee.ai_family == AF_INET6 {
                SocketOptions.setInt(s, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 0)
            }
            // Hand connections over once their first bytes are there (up to 1 s), so the request
            // can be read right after accept.
            SocketOptions.setInt(s, Int32(IPPROTO_TCP), TCP_DEFER_ACCEPT, 1)
            if bind(s, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0, !listening || Glibc.listen(s, 4096) == 0 {
                bound = s
                break
            }
            lastError = SystemError("bind/listen").description
            close(s)
        }
        guard bound >= 0 else { throw ConfigError("listen", "cannot listen on \(host) port \(port): \(lastError)") }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(bound, $0, &length) }
        }
        return (bound, SocketOptions.describe(&storage))
    }

    /// A Unix stream socket at `path` with permissions `mode`. A stale socket file left by an earlier
    /// run is replaced; any other file there is an error.
    private static func listenUnix(_ path: String, mode: UInt32) throws(ConfigError) -> (Int32, String) {
        var st = stat()
        if lstat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFSOCK else {
                throw ConfigError("listen", "\(path) exists and is not a socket")
            }
            unlink(path)
        }
        let address = SocketAddress.unix(path, socketType: Int32(SOCK_STREAM.rawValue))
        guard !path.isEmpty, path.utf8.count < 108 else { throw ConfigError("listen", "unix socket path must be 1–107 bytes") }
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw ConfigError("listen", SystemError("socket").description) }
        var storage = address.storage
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, address.length) }
        }
        guard bound == 0, chmod(path, mode_t(mode)) == 0, Glibc.listen(s, 4096) == 0 else {
            let error = SystemError("bind/listen")
            close(s)
            throw ConfigError("listen", "cannot listen on unix:\(path): \(error)")
        }
        return (s, "unix:\(path)")
    }

    func start(_ reactor: Reactor) throws(SystemError) {
        token = try reactor.register(fd, events: EpollEvents.readable, handler: self)
    }

    func stop(_ reactor: Reactor) {
        guard spareFD >= 0 || token != nil else { return }
        if let token { reactor.unregister(token) }
        token = nil
        close(fd)
        if let unixPath { unlink(unixPath) }
        unixPath = nil
        if spareFD >= 0 { close(spareFD) }
        spareFD = -1
    }

    func handleEvent(_ events: UInt32) {
        acceptAvailable(upTo: 64)
    }

    /// Before the socket closes at a graceful stop: everything the kernel has queued (its backlog).
    func acceptQueued() {
        acceptAvailable(upTo: 65536)
    }

    /// Bounded per wake-up so a connection flood cannot starve established connections.
    private func acceptAvailable(upTo limit: Int) {
        for _ in 0..<limit {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let client = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    clinux_accept4(fd, $0, &length, Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue))
                }
            }
            if client >= 0 {
                onAccept(client, storage)
                continue
            }
            switch errno {
            case EAGAIN, EWOULDBLOCK: return
            case EINTR, ECONNABORTED, EPROTO: continue
            case EMFILE, ENFILE: shedOneConnection(); return
            default:
                Log.error("\(SystemError("accept4"))")
                return
            }
        }
    }

    /// Out of descriptors: free the spare, accept the waiting client and close it at once, take the
    /// spare back. The client sees a closed connection instead of hanging in the queue.
    private func shedOneConnection() {
        let now = MonotonicClock.nowMilliseconds()
        if now - lastExhaustionLog >= 1000 {
            lastExhaustionLog = now
            Log.error("out of file descriptors: refusing new connections")
        }
        guard spareFD >= 0 else { return }
        close(spareFD)
        let c = clinux_accept4(fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
        if c >= 0 { close(c) }
        spareFD = open("/dev/null", O_RDONLY | O_CLOEXEC)
    }
}
