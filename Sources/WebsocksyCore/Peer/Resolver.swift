import CLinux
import Glibc

/// Resolves host names without blocking the loop: glibc's `getaddrinfo_a` does the lookup on its own
/// thread and bumps an eventfd the reactor watches; completions are delivered on the loop's thread.
final class Resolver: EventHandler {
    typealias Completion = (Result<[SocketAddress], PeerAddressError>) -> Void

    private let eventFD: Int32
    private var pending: [(request: OpaquePointer, completion: Completion)] = []

    init(reactor: Reactor) throws(SystemError) {
        let fd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard fd >= 0 else { throw SystemError("eventfd") }
        eventFD = fd
        _ = try reactor.register(fd, events: EpollEvents.readable, handler: self)
    }

    func resolve(host: String, port: String, socketType: Int32, completion: @escaping Completion) {
        guard let request = clinux_resolve_start(host, port, socketType, eventFD) else {
            completion(.failure(PeerAddressError("cannot start resolving \(host)")))
            return
        }
        pending.append((request, completion))
    }

    func handleEvent(_ events: UInt32) {
        var counter: UInt64 = 0
        _ = read(eventFD, &counter, 8)
        var finished: [(OpaquePointer, Completion)] = []
        pending.removeAll { entry in
            guard clinux_resolve_status(entry.request) != clinux_eai_inprogress() else { return false }
            finished.append(entry)
            return true
        }
        for (request, completion) in finished {
            let status = clinux_resolve_status(request)
            if status == 0 {
                completion(.success(SocketAddress.list(clinux_resolve_result(request))))
            } else {
                completion(.failure(PeerAddressError(String(cString: clinux_gai_strerror(status)))))
            }
            clinux_resolve_free(request)
        }
    }
}
