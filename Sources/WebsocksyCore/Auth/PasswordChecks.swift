import CLinux
import Glibc

/// Runs htpasswd checks on a thread of their own — bcrypt costs tens of milliseconds by design —
/// and hands each result back to the loop through an eventfd, as `BackendQueries` does.
final class PasswordChecks: EventHandler {
    struct Check {
        let file: PasswordFile
        let user: String
        let password: String
    }

    private let thread: WorkerThread<Check, Bool>
    private let eventFD: Int32
    private var waiting: [UInt64: (client: String, completion: (Bool) -> Void)] = [:]
    /// Checks waiting per client address: one client guessing passwords must not fill the queue
    /// and keep everyone else waiting past the timeout.
    private var perClient: [String: Int] = [:]
    private var nextID: UInt64 = 1
    /// Checks queued at most: beyond, an upgrade is refused at once (503) instead of waiting
    /// behind a queue that a password-guessing client keeps long.
    static let maxWaiting = 256
    static let maxWaitingPerClient = 2

    enum Refusal: Error {
        case busy
        case clientBusy
    }

    init(reactor: Reactor) throws(SystemError) {
        let fd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard fd >= 0 else { throw SystemError("eventfd") }
        eventFD = fd
        thread = WorkerThread(name: "password check", eventFD: fd) { $0.file.check(user: $0.user, password: $0.password) }
        _ = try reactor.register(fd, events: EpollEvents.readable, handler: self)
    }

    /// Queues a check for `client` (its address); the id to cancel it, or why it was not queued.
    func check(_ check: Check, client: String, completion: @escaping (Bool) -> Void) -> Result<UInt64, Refusal> {
        guard waiting.count < Self.maxWaiting else { return .failure(.busy) }
        guard perClient[client, default: 0] < Self.maxWaitingPerClient else { return .failure(.clientBusy) }
        let id = nextID
        nextID += 1
        waiting[id] = (client, completion)
        perClient[client, default: 0] += 1
        thread.submit(.init(id: id, job: check))
        return .success(id)
    }

    func cancel(_ id: UInt64) {
        guard take(id) != nil else { return }
        thread.cancel(id)
    }

    private func take(_ id: UInt64) -> (client: String, completion: (Bool) -> Void)? {
        guard let entry = waiting.removeValue(forKey: id) else { return nil }
        if let count = perClient[entry.client], count > 1 { perClient[entry.client] = count - 1 } else { perClient[entry.client] = nil }
        return entry
    }

    func handleEvent(_ events: UInt32) {
        var counter: UInt64 = 0
        _ = read(eventFD, &counter, 8)
        for (id, matched, _) in thread.takeAnswers() {
            take(id)?.completion(matched)
        }
    }

    /// At exit: a check still running is left to the exit.
    func stopAtExit() {
        _ = thread.requestStop()
    }
}
