import CLinux
import Glibc

/// A thread for work that may block — a plugin backend's `query` waiting on a database, a bcrypt
/// password check — so that it stalls nothing but the connections waiting for it. Jobs run one at
/// a time, in order (API-1 plugins assume a single caller), and answers go back to the loop
/// through a queue and an eventfd (`BackendQueries`, `PasswordChecks`).
///
/// Only `queue`, `answers` and `stopping` are shared, under `mutex`; what `work` uses is used by
/// this thread alone until `join`.
final class WorkerThread<Job, Answer>: @unchecked Sendable {
    struct Query {
        let id: UInt64
        let job: Job
    }

    private let work: (Job) -> Answer
    /// For the log line when the thread cannot start.
    private let name: String
    private let eventFD: Int32
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var queue: [Query] = []
    private var answers: [(id: UInt64, answer: Answer, microseconds: Int)] = []
    private var stopping = false
    /// A query is running on the thread (guarded by `mutex`).
    private var busy = false
    /// The thread has returned (guarded by `mutex`): joining it does not wait.
    private var exited = false
    private var thread: pthread_t?

    init(name: String, eventFD: Int32, work: @escaping (Job) -> Answer) {
        self.name = name
        self.work = work
        self.eventFD = eventFD
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func submit(_ query: Query) {
        pthread_mutex_lock(mutex)
        queue.append(query)
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
        // Started with the first query: after any fork into workers, and never for a process
        // (--check-config, a replaced backend) that asks nothing.
        if thread == nil { start() }
    }

    /// Drops a job that has not started; one already running finishes and its answer is ignored.
    func cancel(_ id: UInt64) {
        pthread_mutex_lock(mutex)
        if let index = queue.firstIndex(where: { $0.id == id }) { queue.remove(at: index) }
        pthread_mutex_unlock(mutex)
    }

    /// The answers so far, with how long each query took.
    func takeAnswers() -> [(id: UInt64, answer: Answer, microseconds: Int)] {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard !answers.isEmpty else { return [] }
        let taken = answers
        answers.removeAll()
        return taken
    }

    /// Asks the thread to end once the query it is running (if any) returns, without waiting for
    /// it, and hands back the queries that had not started. The eventfd fires when it has ended.
    func requestStop() -> [Query] {
        pthread_mutex_lock(mutex)
        stopping = true
        let unstarted = queue
        queue.removeAll()
        if thread == nil { exited = true }
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
        return unstarted
    }

    /// After `requestStop`: the thread has ended (or never started), so the backend is free.
    var hasEnded: Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return exited
    }

    /// A query is running now (the backend is not free).
    var isBusy: Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return busy
    }

    /// Reaps the thread once `hasEnded` (it does not wait then).
    func join() {
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }

    private func start() {
        // Every signal blocked in this thread (inherited at creation): the loop takes its signals
        // through a signalfd, which only works while no thread accepts them.
        var all = sigset_t(), previous = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_SETMASK, &all, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        // The C entry point cannot name a generic type: it runs a non-generic box holding `run`.
        let context = Unmanaged.passRetained(ThreadBody { self.run() }).toOpaque()
        var created = pthread_t()
        let rc = pthread_create(&created, nil, { context in
            Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<ThreadBody>.fromOpaque(context).release()
            // Without a thread the jobs run where they are asked: slower, still correct.
            Log.error("cannot start the \(name) thread (\(String(cString: strerror(rc)))); working on the loop")
            runQueuedInline()
            return
        }
        thread = created
    }

    private func run() {
        while let query = next() {
            let started = MonotonicClock.nowMicroseconds()
            let answer = work(query.job)
            let took = Int(MonotonicClock.nowMicroseconds() - started)
            pthread_mutex_lock(mutex)
            answers.append((query.id, answer, took))
            busy = false
            pthread_mutex_unlock(mutex)
            wakeLoop()
        }
        pthread_mutex_lock(mutex)
        exited = true
        pthread_mutex_unlock(mutex)
        wakeLoop()
    }

    private func wakeLoop() {
        var one: UInt64 = 1
        _ = write(eventFD, &one, 8)
    }

    /// The next query to run (marked busy); nil once stopping.
    private func next() -> Query? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while queue.isEmpty && !stopping { pthread_cond_wait(condition, mutex) }
        guard !stopping else { return nil }
        busy = true
        return queue.removeFirst()
    }

    private func runQueuedInline() {
        pthread_mutex_lock(mutex)
        let all = queue
        queue.removeAll()
        pthread_mutex_unlock(mutex)
        for query in all { answers.append((query.id, work(query.job), 0)) }
        wakeLoop()
    }
}

/// What a new thread runs (see `WorkerThread.start`).
private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
