import CLinux
import Glibc

/// A growable byte buffer in malloc'd memory, moved between the loop and the writer thread.
struct RecordingBuffer {
    var base: UnsafeMutableRawPointer?
    var count = 0
    var capacity = 0

    mutating func reserve(_ extra: Int) {
        let needed = count + extra
        guard needed > capacity else { return }
        let grown = max(needed, capacity * 2, 16 << 10)
        guard let moved = realloc(base, grown) else { fatalError("out of memory for a session recording") }
        base = moved
        capacity = grown
    }

    mutating func free() {
        Glibc.free(base)
        self = RecordingBuffer()
    }
}

/// The one thread that writes every recording to disk, so that the event loop never waits for
/// one. Recordings with bytes to write wait in a list; the loop appends to a recording's queue
/// under `mutex` and signals `condition` when it puts the recording on the list. The writer takes
/// the whole queue at once (swapping buffers), writes it without the lock, and closes a recording
/// once its session has ended and everything queued is on disk.
///
/// Glibc and pthreads only: nothing here may block the loop beyond copying one record under the
/// mutex, which the writer holds only to swap buffers.
final class RecordingWriter: @unchecked Sendable {
    nonisolated(unsafe) private static var instance: RecordingWriter?

    /// The writer, started with the first recording (after any fork into workers).
    static var shared: RecordingWriter {
        if let instance { return instance }
        let writer = RecordingWriter()
        instance = writer
        writer.start()
        // Whatever is queued reaches the disk before the process exits (graceful shutdown ends
        // every connection first, which closes their recordings).
        atexit { RecordingWriter.instance?.stop() }
        return writer
    }

    let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    /// Signalled when the thread has written everything and ends (for `stop`).
    private let finishedCondition: UnsafeMutablePointer<pthread_cond_t>
    private var finished = false
    /// Recordings with something to do, in order (guarded by `mutex`).
    private var list: [Recording] = []
    private var head = 0
    private var stopping = false
    /// Unit tests hold the thread back to fill a queue (guarded by `mutex`).
    private var paused = false
    private var running = false

    private init() {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        finishedCondition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        pthread_cond_init(finishedCondition, nil)
    }

    private func start() {
        // Every signal blocked in the writer (the mask is inherited at creation): the loop takes
        // its signals through a signalfd, and SIGXFSZ (a file over RLIMIT_FSIZE) must turn into
        // EFBIG, a failed recording, rather than end the process.
        var all = sigset_t(), previous = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_SETMASK, &all, &previous)
        let context = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { context in
            let writer = Unmanaged<RecordingWriter>.fromOpaque(context!).takeRetainedValue()
            writer.run()
            return nil
        }, context)
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        if rc != 0 {
            Unmanaged<RecordingWriter>.fromOpaque(context).release()
            Log.error("cannot start the recording writer thread: \(String(cString: strerror(rc))); sessions are not recorded")
            pthread_mutex_lock(mutex)
            stopping = true
            pthread_mutex_unlock(mutex)
        } else {
            pthread_detach(thread)
            running = true
        }
    }

    /// Whether recordings can be written at all (the thread started).
    var isRunning: Bool { running }

    /// Puts `recording` on the list unless it is there; the caller holds `mutex`.
    @inline(__always)
    func enlistLocked(_ recording: Recording) {
        guard !recording.enlisted else { return }
        recording.enlisted = true
        list.append(recording)
        pthread_cond_signal(condition)
    }

    /// Tests only: holds the thread back (true) or lets it go on (false).
    func setPaused(_ pause: Bool) {
        pthread_mutex_lock(mutex)
        paused = pause
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Lets the thread write what is queued, then end; waits for it at most 10 seconds (a disk
    /// that hangs must not keep a stopping gateway forever).
    func stop() {
        guard running else { return }
        running = false
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        deadline.tv_sec += 10
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_signal(condition)
        while !finished {
            if pthread_cond_timedwait(finishedCondition, mutex, &deadline) == ETIMEDOUT { break }
        }
        let done = finished
        pthread_mutex_unlock(mutex)
        if !done { Log.warning("recordings were still being written at exit; the last records may be missing") }
    }

    private func run() {
        pthread_mutex_lock(mutex)
        while true {
            while (head == list.count || paused) && !stopping { pthread_cond_wait(condition, mutex) }
            guard head < list.count else { break }
            let recording = list[head]
            head += 1
            if head == list.count {
                list.removeAll(keepingCapacity: true)
                head = 0
            }
            recording.enlisted = false
            var batch = recording.pending
            recording.pending = recording.spare
            recording.spare = RecordingBuffer()
            recording.inFlight = batch.count
            let skip = recording.failed
            pthread_mutex_unlock(mutex)

            let failure = skip || batch.count == 0 ? nil : recording.writeOut(batch)

            pthread_mutex_lock(mutex)
            if let failure {
                recording.failed = true
                recording.pending.count = 0
                pthread_mutex_unlock(mutex)
                Log.warning("recording \(recording.path): \(failure); the session goes on unrecorded")
                pthread_mutex_lock(mutex)
            }
            recording.inFlight = 0
            batch.count = 0
            // Keep a modest buffer for the next batch; give back what a burst grew.
            if recording.spare.base == nil && batch.capacity <= 256 << 10 {
                recording.spare = batch
            } else {
                batch.free()
            }
            if recording.closing && !recording.enlisted && recording.pending.count == 0 {
                let truncated = recording.truncatedAtClose || recording.failed
                recording.pending.free()
                recording.spare.free()
                pthread_mutex_unlock(mutex)
                recording.finish(truncated: truncated)
                pthread_mutex_lock(mutex)
            }
        }
        finished = true
        pthread_cond_signal(finishedCondition)
        pthread_mutex_unlock(mutex)
    }
}
