import Glibc

/// Bytes for one stream socket: written at once while nothing waits (a frame header and its
/// payload in one sendmsg), queued otherwise, and held while corked so that a batch of small
/// writes leaves in one syscall. It only writes; what a failure means is its endpoint's business.
struct Outbox: ~Copyable {
    private var queue: ByteBuffer
    /// While set, writes up to `coalescedWriteLimit` bytes are queued, not written.
    var isCorked = false
    /// The last plain write or flush found the socket full (through TLS: the session has unsent records).
    private(set) var isBlocked = false

    /// Writes up to this size are coalesced while corked; larger ones go out at once.
    static let coalescedWriteLimit = 512

    init(pool: BlockPool?) {
        queue = ByteBuffer(pool: pool)
    }

    var count: Int { queue.count }
    var isEmpty: Bool { queue.isEmpty }
    var allocatedBytes: Int { queue.allocatedBytes }

    /// While corked, queues a small write to go out with the rest of the batch; true when it did.
    @inline(__always)
    mutating func coalesce(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, flags: Int32) -> Bool {
        guard isCorked && flags == 0 && first.count + second.count <= Self.coalescedWriteLimit else { return false }
        append(first, second)
        return true
    }

    mutating func append(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) {
        queue.append(first)
        queue.append(second)
    }

    /// Writes `first` then `second` (either may be empty) to a plain socket with one sendmsg, after
    /// anything already queued, and queues what the socket does not take now; returns the socket's
    /// failure, if it failed. `flags` adds e.g. MSG_MORE.
    @inline(__always)
    mutating func write(_ fd: Int32, _ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, flags: Int32) -> IOFailure? {
        var written = 0
        if queue.isEmpty {
            var vectors = (
                iovec(iov_base: UnsafeMutableRawPointer(mutating: first.baseAddress), iov_len: first.count),
                iovec(iov_base: UnsafeMutableRawPointer(mutating: second.baseAddress), iov_len: second.count))
            let result = withUnsafeMutablePointer(to: &vectors) {
                $0.withMemoryRebound(to: iovec.self, capacity: 2) { iov in
                    var message = msghdr()
                    message.msg_iov = iov
                    message.msg_iovlen = second.count > 0 ? 2 : 1
                    return Syscall.io("sendmsg", zeroIsEOF: false) { sendmsg(fd, &message, flags | Int32(MSG_NOSIGNAL)) }
                }
            }
            switch result {
            case .bytes(let n): written = n
            case .wouldBlock, .eof: break
            case .failed(let error): return error
            }
            isBlocked = written < first.count + second.count
        }
        if written < first.count {
            queue.append(UnsafeRawBufferPointer(rebasing: first[written...]))
            queue.append(second)
        } else if written - first.count < second.count {
            queue.append(UnsafeRawBufferPointer(rebasing: second[(written - first.count)...]))
        }
        return nil
    }

    /// Through TLS: while nothing is queued or unsent, `first` then `second` are sealed where they
    /// are (measured: copying each 64 KiB frame into the queue first was 16 % of a wss stream's
    /// time) and sent, a batch at a time, until the socket takes no more; the rest is queued.
    /// Behind queued bytes (coalesced while corked) they are queued and the queue is flushed.
    mutating func write(_ tls: TLSSession, _ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> IOFailure? {
        var taken = 0
        let total = first.count + second.count
        sealing: while queue.isEmpty && tls.unsentCount == 0 && taken < total {
            let (a, b) = Self.remainder(first, second, after: taken)
            switch tls.seal(a, b) {
            case .bytes(let n): taken += n
            case .wouldBlock, .eof: break sealing
            case .failed(let error): return error
            }
        }
        let (a, b) = Self.remainder(first, second, after: taken)
        append(a, b)
        return queue.isEmpty || tls.unsentCount > 0 ? nil : flush(tls)
    }

    private static func remainder(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, after n: Int) -> (UnsafeRawBufferPointer, UnsafeRawBufferPointer) {
        n < first.count
            ? (UnsafeRawBufferPointer(rebasing: first[n...]), second)
            : (UnsafeRawBufferPointer(start: nil, count: 0), UnsafeRawBufferPointer(rebasing: second[(n - first.count)...]))
    }

    /// Writes queued bytes until the socket takes no more; returns the socket's failure, if any.
    mutating func flush(_ fd: Int32, _ tls: TLSSession?) -> IOFailure? {
        if let tls { return flush(tls) }
        while !queue.isEmpty {
            let pending = UnsafeRawBufferPointer(queue.readable)
            switch Syscall.io("send", zeroIsEOF: false, { Glibc.send(fd, pending.baseAddress, pending.count, Int32(MSG_NOSIGNAL)) }) {
            case .bytes(let n): queue.consume(n)
            case .wouldBlock, .eof:
                isBlocked = true
                return nil
            case .failed(let error): return error
            }
        }
        isBlocked = false
        queue.releaseBlockIfEmpty()
        return nil
    }

    /// Through TLS: the records the socket did not take last time leave first; then the queue is
    /// sealed a batch at a time, each batch in one send. Sealed bytes leave the queue (the session
    /// keeps what the socket does not take), so they are never sealed twice.
    private mutating func flush(_ tls: TLSSession) -> IOFailure? {
        while true {
            switch tls.sendUnsent() {
            case .wouldBlock: return nil
            case .failed(let error): return error
            case .bytes, .eof: break
            }
            guard !queue.isEmpty else {
                queue.releaseBlockIfEmpty()
                return nil
            }
            switch tls.seal(UnsafeRawBufferPointer(queue.readable)) {
            case .bytes(let n): queue.consume(n)
            case .wouldBlock, .eof: return nil
            case .failed(let error): return error
            }
        }
    }

    /// Free space at the end of the queue to fill in place (a file body read for TLS), then `commit`.
    mutating func tail(minimum: Int) -> UnsafeMutableRawBufferPointer {
        queue.writableTail(minimum: minimum)
    }

    mutating func commit(_ n: Int) {
        queue.commit(n)
    }

    mutating func removeAll() {
        isBlocked = false
        queue.removeAll()
    }

    mutating func releaseIfEmpty() {
        queue.releaseIfEmpty()
    }
}
