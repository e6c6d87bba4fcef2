import Glibc

/// The write side of a named pipe (`fifo-out://`, `fifo://…?out=`): each client message is written
/// as it is. Opened read-write, so that opening never blocks or fails for want of a reader and a
/// reader may come and go. What the pipe does not take waits here, up to `limit` bytes; a message
/// that would go past it is dropped (and counted by the caller), never queued without bound.
final class FifoWriter {
    let path: String
    private let fd: Int32
    private var pending: [UInt8] = []
    let limit: Int

    init(path: String, limit: Int) throws(SystemError) {
        self.path = path
        self.limit = limit
        fd = try openFIFO(path, mode: O_RDWR)
    }

    deinit { close(fd) }

    var queuedBytes: Int { pending.count }

    /// Writes `message` (after what is pending); false when it was dropped for want of room.
    func write(_ message: UnsafeRawBufferPointer) -> Bool {
        flush()
        if pending.isEmpty {
            let n = Glibc.write(fd, message.baseAddress, message.count)
            let written = max(0, n)
            if written == message.count { return true }
            if n < 0 && errno != EAGAIN && errno != EINTR { return false }
            guard message.count - written <= limit else { return false }
            pending += message[written...]
            return true
        }
        guard pending.count + message.count <= limit else { return false }
        pending += message
        return true
    }

    /// Writes what is pending as far as the pipe takes it (also from the periodic sweep).
    func flush() {
        while !pending.isEmpty {
            let n = pending.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { return }
            pending.removeFirst(n)
        }
    }
}

/// Opens a FIFO at `path` without blocking, creating it (mode 0660) when there is nothing there;
/// a path that exists and is not a FIFO is an error.
func openFIFO(_ path: String, mode: Int32) throws(SystemError) -> Int32 {
    if mkfifo(path, 0o660) != 0 && errno != EEXIST { throw SystemError("mkfifo \(path)") }
    var info = stat()
    guard stat(path, &info) == 0 else { throw SystemError("stat \(path)") }
    guard info.st_mode & S_IFMT == S_IFIFO else { throw SystemError("\(path) is not a FIFO", errno: EINVAL) }
    let fd = open(path, mode | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else { throw SystemError("open \(path)") }
    return fd
}
