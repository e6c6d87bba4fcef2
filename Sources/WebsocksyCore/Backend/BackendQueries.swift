import CLinux
import Glibc

/// Asks the backend for each upgrade's peer without letting it stall the loop: the built-in
/// backend answers at once; a plugin, whose `query` may wait on a database or a file system,
/// answers from its `WorkerThread`, and the answer comes back through an eventfd.
final class BackendQueries: EventHandler {
    typealias Completion = (BackendAnswer) -> Void
    struct Unanswered {
        let id: UInt64
        let request: HandshakeRequest
        let completion: Completion
    }

    let backend: Backend
    private let reactor: Reactor
    private let thread: WorkerThread<HandshakeRequest, BackendAnswer>?
    private let eventFD: Int32
    private var token: Reactor.Token?
    /// Queries asked and not answered yet, by id; a cancelled one is simply not here any more.
    private var waiting: [UInt64: Completion] = [:]
    /// Ids are unique across backends: a query carried over to the next backend on a reload
    /// keeps its id, which its connection holds for `cancel`.
    nonisolated(unsafe) private static var nextID: UInt64 = 1
    /// Called with each answered query's duration (the metrics' histogram).
    var observeLatency: ((Int) -> Void)?
    /// Set while this backend is being replaced (`retire`): called once its thread has ended,
    /// with the queries it will not answer.
    private var retired: (([Unanswered]) -> Void)?
    /// Queries asked while retiring, for the next backend.
    private var held: [Unanswered] = []

    init(backend: Backend, reactor: Reactor) throws(SystemError) {
        self.backend = backend
        self.reactor = reactor
        guard backend.queriesMayBlock else {
            thread = nil
            eventFD = -1
            return
        }
        let fd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard fd >= 0 else { throw SystemError("eventfd") }
        eventFD = fd
        thread = WorkerThread(name: "backend query", eventFD: fd) { [backend] request in backend.query(request) }
        token = try reactor.register(fd, events: EpollEvents.readable, handler: self)
    }

    /// Asks for the peer of `request`. Returns nil when the answer was given at once (the
    /// completion has run); otherwise an id for `cancel`, and the completion runs on a later turn.
    func query(_ request: HandshakeRequest, completion: @escaping Completion) -> UInt64? {
        guard let thread else {
            let started = MonotonicClock.nowMicroseconds()
            let answer = backend.query(request)
            observeLatency?(Int(MonotonicClock.nowMicroseconds() - started))
            completion(answer)
            return nil
        }
        let id = Self.nextID
        Self.nextID += 1
        if retired != nil {
            held.append(.init(id: id, request: request, completion: completion))
            return id
        }
        waiting[id] = completion
        thread.submit(.init(id: id, job: request))
        return id
    }

    /// Takes over a query the previous backend had not started (`stop`).
    func carryOver(_ query: Unanswered) {
        guard let thread else {
            _ = self.query(query.request, completion: query.completion)
            return
        }
        waiting[query.id] = query.completion
        thread.submit(.init(id: query.id, job: query.request))
    }

    /// The connection no longer wants the answer (it timed out or went away).
    func cancel(_ id: UInt64) {
        held.removeAll { $0.id == id }
        guard waiting.removeValue(forKey: id) != nil else { return }
        thread?.cancel(id)
    }

    func handleEvent(_ events: UInt32) {
        var counter: UInt64 = 0
        _ = read(eventFD, &counter, 8)
        deliverAnswers()
        if retired != nil, thread?.hasEnded == true { finishRetiring() }
    }

    private func deliverAnswers() {
        guard let thread else { return }
        for (id, answer, microseconds) in thread.takeAnswers() {
            observeLatency?(microseconds)
            // A late answer for a connection that gave up is dropped here (its strings went with it).
            waiting.removeValue(forKey: id)?(answer)
        }
    }

    /// Stops asking this backend (a reload replaces it) without waiting: the query running goes
    /// on and is answered; once the thread has ended — the backend is then free, and a plugin
    /// reloaded from the same file shares its globals — the backend is shut down and `then` gets
    /// the queries not answered (those not started, those asked meanwhile) for the next backend.
    func retire(then: @escaping ([Unanswered]) -> Void) {
        guard let thread else {
            backend.shutdown()
            return then([])
        }
        retired = then
        for query in thread.requestStop() {
            if let completion = waiting.removeValue(forKey: query.id) {
                held.append(.init(id: query.id, request: query.job, completion: completion))
            }
        }
        if thread.hasEnded { finishRetiring() }
    }

    private func finishRetiring() {
        thread?.join()
        deliverAnswers()
        if let token { reactor.unregister(token) }
        token = nil
        close(eventFD)
        backend.shutdown()
        let then = retired, unanswered = held
        retired = nil
        held = []
        then?(unanswered)
    }

    /// The process is exiting: a backend that is free is shut down (its `cleanup` runs); one
    /// whose query is still running is left to the exit — waiting would hold the exit hostage.
    func stopAtExit() {
        if let thread {
            _ = thread.requestStop()
            guard !thread.isBusy else {
                return Log.info("a backend query is still running; exiting without the backend's cleanup")
            }
            // Idle: the thread ends at once.
            while !thread.hasEnded { usleep(1000) }
            thread.join()
        }
        backend.shutdown()
    }
}
