import Glibc

/// One session's recording (`record = DIR`): its queue of encoded records, the size cap and the
/// account of what was dropped. The loop calls `add` per message chunk and `close` at the end;
/// `RecordingWriter`'s thread creates the file, writes the queue and closes it.
///
/// Never slows the session: a record that does not fit the queue (`queueLimit` bytes not yet on
/// disk) is dropped and counted, and a `dropped` record says how much before the next one that
/// fits; a write that fails (full disk, RLIMIT_FSIZE) ends the recording, not the session.
final class Recording: @unchecked Sendable {
    /// Bytes queued and not yet written above which records are dropped. A record is always taken
    /// into an empty queue, so one message (at most `max-message` or `peer-buffer`) is never
    /// dropped for its size alone. 4 MiB: one turn of the loop can hand on 1 MiB of client data
    /// and as much towards the client, and the writer thread must be allowed to miss a turn or two
    /// on a busy machine before anything is lost.
    static let queueLimit = 4 << 20
    static let droppedRecordSize = RecordingFormat.recordHeadSize + 16
    static let cappedRecordSize = RecordingFormat.recordHeadSize + 8
    /// Room kept under the cap for the records that may have to follow any record: a `dropped`
    /// and then a `capped` (or an `end`), so the file never passes `record-max`.
    static let tailReserve = droppedRecordSize + cappedRecordSize

    let path: String
    private let maxBytes: Int
    private let startMonotonic: UInt64
    private let writer: RecordingWriter

    // The loop's side.
    /// Bytes of the file so far: the header and every record queued.
    private var accepted = 0
    private var capped = false
    private var closed = false
    private var truncated = false
    private var droppedRecords: UInt64 = 0
    private var droppedBytes: UInt64 = 0

    // Shared, under `writer.mutex`.
    var pending = RecordingBuffer()
    var spare = RecordingBuffer()
    var inFlight = 0
    var enlisted = false
    var closing = false
    var truncatedAtClose = false
    var failed = false

    // The writer thread's.
    private var fd: Int32 = -1

    /// Starts recording into `path`: the header is queued at once; the writer creates the file.
    init(path: String, header: RecordingFormat.Header, maxBytes: Int, writer: RecordingWriter) {
        self.path = path
        self.maxBytes = maxBytes
        self.writer = writer
        startMonotonic = RecordingSettings.monotonicMicroseconds()
        let bytes = RecordingFormat.encodeHeader(header)
        pthread_mutex_lock(writer.mutex)
        bytes.withUnsafeBytes { appendLocked($0) }
        writer.enlistLocked(self)
        pthread_mutex_unlock(writer.mutex)
        accepted = bytes.count
    }

    deinit {
        pending.free()
        spare.free()
    }

    // MARK: The loop

    /// A chunk of a client message, as delivered to the peer.
    @inline(__always)
    func clientChunk(_ payload: UnsafeRawBufferPointer, opcode: Opcode, messageStart: Bool, messageEnd: Bool) {
        let flags = (messageStart ? opcode.rawValue : 0) | (messageEnd ? RecordingFormat.finBit : 0)
        add(RecordingFormat.RecordType.clientToPeer.rawValue, flags, payload)
    }

    /// A whole message sent to the client (text or binary).
    @inline(__always)
    func message(_ opcode: Opcode, _ payload: UnsafeRawBufferPointer) {
        add(RecordingFormat.RecordType.peerToClient.rawValue, opcode.rawValue | RecordingFormat.finBit, payload)
    }

    func add(_ type: UInt8, _ flags: UInt8, _ payload: UnsafeRawBufferPointer) {
        guard !capped && !closed else { return }
        let size = RecordingFormat.recordHeadSize + payload.count
        let dropRecord = droppedRecords > 0 ? Self.droppedRecordSize : 0
        let now = RecordingSettings.monotonicMicroseconds() &- startMonotonic
        if accepted + dropRecord + size + Self.tailReserve > maxBytes {
            // Past the cap: what was dropped, then one `capped`, and nothing more.
            capped = true
            truncated = true
            pthread_mutex_lock(writer.mutex)
            if !failed {
                appendDroppedLocked(now)
                var cap = UInt64(maxBytes).littleEndian
                withUnsafeBytes(of: &cap) { appendRecordLocked(now, RecordingFormat.RecordType.capped.rawValue, 0, $0) }
                writer.enlistLocked(self)
            }
            pthread_mutex_unlock(writer.mutex)
            return
        }
        pthread_mutex_lock(writer.mutex)
        if failed {
            pthread_mutex_unlock(writer.mutex)
            truncated = true
            return
        }
        let queued = pending.count + inFlight
        if queued > 0 && queued + dropRecord + size > Self.queueLimit {
            pthread_mutex_unlock(writer.mutex)
            truncated = true
            droppedRecords += 1
            droppedBytes += UInt64(payload.count)
            return
        }
        appendDroppedLocked(now)
        appendRecordLocked(now, type, flags, payload)
        writer.enlistLocked(self)
        pthread_mutex_unlock(writer.mutex)
        accepted += dropRecord + size
    }

    /// The session ended: what was dropped last and an `end` record (unless capped) go in, and the
    /// writer closes the file once the queue is written.
    func close() {
        guard !closed else { return }
        closed = true
        let now = RecordingSettings.monotonicMicroseconds() &- startMonotonic
        pthread_mutex_lock(writer.mutex)
        if !capped && !failed {
            appendDroppedLocked(now)
            appendRecordLocked(now, RecordingFormat.RecordType.end.rawValue, 0, UnsafeRawBufferPointer(start: nil, count: 0))
        }
        closing = true
        truncatedAtClose = truncated
        writer.enlistLocked(self)
        pthread_mutex_unlock(writer.mutex)
    }

    /// Queues a `dropped` record when records were dropped since the last one written.
    private func appendDroppedLocked(_ now: UInt64) {
        guard droppedRecords > 0 else { return }
        var counts = (droppedRecords.littleEndian, droppedBytes.littleEndian)
        withUnsafeBytes(of: &counts) { appendRecordLocked(now, RecordingFormat.RecordType.dropped.rawValue, 0, $0) }
        droppedRecords = 0
        droppedBytes = 0
    }

    private func appendRecordLocked(_ time: UInt64, _ type: UInt8, _ flags: UInt8, _ payload: UnsafeRawBufferPointer) {
        pending.reserve(RecordingFormat.recordHeadSize + payload.count)
        RecordingFormat.writeRecordHead(pending.base! + pending.count, time: time, type: type, flags: flags, length: UInt32(payload.count))
        pending.count += RecordingFormat.recordHeadSize
        appendLocked(payload)
    }

    private func appendLocked(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        pending.reserve(bytes.count)
        (pending.base! + pending.count).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        pending.count += bytes.count
    }

    // MARK: The writer thread

    /// Writes one batch, creating the file first (0600 whatever the umask, never an existing
    /// file); the problem when it cannot.
    func writeOut(_ batch: RecordingBuffer) -> String? {
        if fd < 0 {
            fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { return "cannot create the file: \(String(cString: strerror(errno)))" }
            // The umask can only have taken bits away; make it exactly owner read-write.
            fchmod(fd, 0o600)
        }
        var done = 0
        while done < batch.count {
            let n = write(fd, batch.base! + done, batch.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                return "write failed: \(String(cString: strerror(errno)))"
            }
            done += n
        }
        return nil
    }

    /// Marks the header truncated when anything went missing, and closes the file.
    func finish(truncated: Bool) {
        guard fd >= 0 else { return }
        if truncated {
            var flags = RecordingFormat.flagTruncated.littleEndian
            _ = pwrite(fd, &flags, 2, off_t(RecordingFormat.flagsOffset))
        }
        Glibc.close(fd)
        fd = -1
    }
}
