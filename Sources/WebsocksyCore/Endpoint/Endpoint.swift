import Glibc

/// What stream and datagram endpoints share: one owned descriptor (closed exactly once, in
/// `closeDescriptor`), its registration in the reactor and the epoll interest that registration
/// holds. The interest is only ever changed through `setInterest`, so what the endpoint waits for
/// and what epoll reports cannot disagree.
///
/// An endpoint its owner has finished with stays in the server's list of finishing endpoints
/// (flushing, lingering) until it closes or its `deadline` passes.
class Endpoint: EventHandler, ListMember {
    /// The server outlives everything it serves; `unowned(unsafe)` skips a reference-count check per access on the hot path.
    unowned(unsafe) let server: Server
    let fd: Int32
    private(set) var token: Reactor.Token?
    private var interest: UInt32
    /// When a finishing endpoint gives up (monotonic ms; 0 = never).
    var deadline: Int64 = 0
    /// Position in the server's list of finishing endpoints.
    var listIndex = -1
    private(set) var isClosed = false

    /// Takes over `fd` and a registration made for it (by a connector: `registration` is its
    /// token and the events it asked for), or registers it now; then waits for `interest`.
    init(server: Server, fd: Int32, registration: (token: Reactor.Token, events: UInt32)?, interest: UInt32) throws(SystemError) {
        self.server = server
        self.fd = fd
        self.interest = interest
        if let registration {
            token = registration.token
            self.interest = registration.events
            server.reactor.replaceHandler(registration.token, with: self)
            setInterest(interest)
        } else {
            token = try server.reactor.register(fd, events: interest, handler: self)
        }
    }

    func handleEvent(_ events: UInt32) {}

    /// Keeps the epoll registration equal to `wanted` (one epoll_ctl only when it changes).
    final func setInterest(_ wanted: UInt32) {
        guard wanted != interest, let token, !isClosed else { return }
        interest = wanted
        server.reactor.modify(fd, token: token, events: wanted)
    }

    final func wakeSoon() {
        if let token, !isClosed { server.reactor.wakeSoon(token) }
    }

    /// Unregisters and closes the descriptor; true the first time only.
    final func closeDescriptor() -> Bool {
        guard !isClosed else { return false }
        isClosed = true
        if let token { server.reactor.unregister(token) }
        token = nil
        Glibc.close(fd)
        server.finishingEndpointClosed(self)
        return true
    }

    /// Closes now and frees what the endpoint holds, without telling its owner.
    func close() {
        _ = closeDescriptor()
    }

    /// The pending error of a socket (SO_ERROR), for events that arrive while nothing reads it.
    final func pendingError() -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        return error
    }
}
