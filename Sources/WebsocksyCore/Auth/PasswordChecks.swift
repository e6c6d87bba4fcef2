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
    private var waiting: [UInt64: (Bool) -> Void] = [:]
    private var nextID: UInt64 = 1
    /// Checks queued at most: beyond, an upgrade is refused at once (503) instead of waiting
    /// behind a queue that a password-guessing client keeps long.
    static let maxWaiting = 256

    init(reactor: Reactor) throws(SystemError) {
        let fd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard fd >= 0 else { throw SystemError("eventfd") }
        eventFD = fd
        thread = WorkerThread(name: "password check", eventFD: fd) { $0.file.check(user: $0.user, password: $0.password) }
        _ = try reactor.register(fd, events: EpollEvents.readable, handler: self)
    }

    /// Queues a check; nil when too many are waiting already.
    func check(_ check: Check, completion: @escaping (Bool) -> Void) -> UInt64? {
        guard waiting.count < Self.maxWaiting else { return nil }
        let id = nextID
        nextID += 1
        waiting[id] = completion
        thread.submit(.init(id: id, job: check))
        return id
    }

    func cancel(_ id: UInt64) {
        guard waiting.removeValue(forKey: id) != nil else { return }
        thread.cancel(id)
    }

    func handleEvent(_ events: UInt32) {
        var counter: UInt64 = 0
        _ = read(eventFD, &counter, 8)
        for (id, matched, _) in thread.takeAnswers() {
            waiting.removeValue(forKey: id)?(matched)
        }
    }

    /// At exit: a check still running is left to the exit.
    func stopAtExit() {
        _ = thread.requestStop()
    }
}
