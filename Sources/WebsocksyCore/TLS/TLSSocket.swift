import CGnuTLS
import Glibc

/// The ciphertext side of one TLS session: GnuTLS reads and writes its records through this
/// object (its pull and push functions) instead of calling recv and sendmsg on the socket itself.
///
/// Why (measured on a wss stream, `strace -c`): left to itself GnuTLS reads each record with two
/// recv calls — its 5-byte header, then its body — and sends each record it seals with a sendmsg
/// of its own, a 10-byte one for the tail of a frame included: about 3.4 syscalls per 16 KiB
/// record, and most of the gateway's time was in the kernel. Here one recv reads several records
/// ahead, and the records sealed from a batch of bytes leave in one send.
///
/// Two buffers are shared by every session of the process (each worker runs one single-threaded
/// loop), so an idle session holds none of them:
/// - `input`: ciphertext read ahead from one session's socket. It stays that session's while no
///   other session needs the buffer (a busy stream never copies it); the next session to read
///   first moves the leftover into the owner's own `unread`.
/// - `output`: the records GnuTLS sealed during one call into it. `transmit` sends them before
///   that call returns and keeps in `unsent` only what the socket did not take.
final class TLSSocket {
    let fd: Int32
    /// Set once the GnuTLS session exists (for `gnutls_transport_set_errno`).
    var session: gnutls_session_t?

    nonisolated(unsafe) private static var input = ByteBuffer()
    nonisolated(unsafe) private static var output = ByteBuffer()
    /// The socket whose ciphertext `input` holds (not retained: a socket clears it before it is freed).
    nonisolated(unsafe) private static unowned(unsafe) var inputOwner: TLSSocket?

    /// Bytes one recv reads at most: seven full records and a part (a 64 KiB frame is four).
    static let readAhead = 128 << 10

    /// Ciphertext read ahead that GnuTLS has not taken, moved out of `input` for another socket.
    private var unread = ByteBuffer()
    /// Sealed records the socket has not taken; nothing sealed later leaves before them.
    private var unsent = ByteBuffer()

    /// Within one operation (a read, a handshake step): a recv returned less than asked, so the
    /// socket had no more, and epoll will report what comes next. Further pulls say EAGAIN without
    /// a syscall (measured: 3 of the 7 recv calls per TLS upgrade only returned EAGAIN).
    private var recvWasShort = false
    /// During one call into GnuTLS: the pull reported EAGAIN; how many bytes it gave GnuTLS.
    private(set) var pullBlocked = false
    private var pulled = 0

    init(fd: Int32) {
        self.fd = fd
    }

    deinit {
        if Self.inputOwner === self {
            Self.input.removeAll()
            Self.inputOwner = nil
        }
    }

    /// Installs this object as the session's transport.
    func attach(to session: gnutls_session_t) {
        self.session = session
        gnutls_transport_set_ptr(session, Unmanaged.passUnretained(self).toOpaque())
        gnutls_transport_set_pull_function(session, tlsPull)
        gnutls_transport_set_vec_push_function(session, tlsVecPush)
        gnutls_transport_set_pull_timeout_function(session, tlsPullTimeout)
    }

    // MARK: Bookkeeping around calls into GnuTLS

    /// Before a read or a handshake step: the socket may have received more since the last one.
    func startOperation() {
        recvWasShort = false
    }

    func startCall() {
        pullBlocked = false
        pulled = 0
    }

    /// Ciphertext read from the socket that GnuTLS has not taken: epoll cannot announce it.
    var bufferedCount: Int {
        unread.count + (Self.inputOwner === self ? Self.input.count : 0)
    }

    /// GnuTLS returned EAGAIN though the socket was not found empty: it stops after a record that
    /// is not application data (part of a handshake message, a session ticket, a key update) even
    /// when the next record is there. Before the read-ahead the socket still held that record and
    /// epoll said so; now it is in our buffer, where only calling again finds it. The call repeats
    /// while each takes some of the buffered bytes.
    var stoppedWithInput: Bool {
        !pullBlocked && pulled > 0 && bufferedCount > 0
    }

    // MARK: Reading (GnuTLS's pull)

    /// Gives GnuTLS up to `count` bytes of ciphertext: kept bytes first, then the shared read-ahead,
    /// refilled with one recv when empty. -1 with the errno set through GnuTLS, 0 at EOF.
    func pull(into destination: UnsafeMutableRawPointer, _ count: Int) -> Int {
        if !unread.isEmpty { return take(from: &unread, into: destination, count) }
        if Self.inputOwner !== self {
            if let owner = Self.inputOwner, !Self.input.isEmpty {
                owner.unread.append(UnsafeRawBufferPointer(Self.input.readable))
            }
            Self.input.removeAll()
            Self.inputOwner = self
        }
        if Self.input.isEmpty {
            if recvWasShort { return blocked(EAGAIN) }
            let tail = Self.input.writableTail(minimum: Self.readAhead)
            let n = recv(fd, tail.baseAddress, tail.count, 0)
            if n < 0 { return blocked(errno) }
            if n == 0 { return 0 }
            recvWasShort = n < tail.count
            Self.input.commit(n)
        }
        return take(from: &Self.input, into: destination, count)
    }

    private func blocked(_ code: Int32) -> Int {
        if code == EAGAIN || code == EWOULDBLOCK { pullBlocked = true }
        if let session { gnutls_transport_set_errno(session, code) }
        return -1
    }

    private func take(from buffer: inout ByteBuffer, into destination: UnsafeMutableRawPointer, _ count: Int) -> Int {
        let n = min(count, buffer.count)
        destination.copyMemory(from: buffer.readable.baseAddress!, byteCount: n)
        buffer.consume(n)
        pulled += n
        return n
    }

    /// GnuTLS's pull-timeout contract (only used when a timeout is set, which these non-blocking
    /// sessions do not): >0 readable, 0 timed out; UInt32.max is GNUTLS_INDEFINITE_TIMEOUT.
    func waitReadable(milliseconds: UInt32) -> Int32 {
        if bufferedCount > 0 { return 1 }
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, milliseconds == UInt32.max ? -1 : Int32(clamping: milliseconds))
    }

    // MARK: Writing (GnuTLS's push)

    /// Takes what GnuTLS pushes; it never waits (so GnuTLS never returns EAGAIN for a write).
    static func collect(_ bytes: UnsafeRawBufferPointer) {
        output.append(bytes)
    }

    /// Drops what the failed call sealed.
    static func discardSealed() {
        output.removeAll()
    }

    /// Sealed bytes waiting for the socket.
    var unsentCount: Int { unsent.count }

    /// After each call into GnuTLS: sends what it sealed (behind any backlog, which it joins) and
    /// keeps the rest. `blocked`: some of it waits for the socket; `failed`: the socket failed.
    func transmit() -> (failed: Bool, blocked: Bool) {
        guard !Self.output.isEmpty else { return (false, !unsent.isEmpty) }
        defer { Self.output.removeAll() }
        let sealed = UnsafeRawBufferPointer(Self.output.readable)
        guard unsent.isEmpty else {
            unsent.append(sealed)
            return (false, true)
        }
        switch Syscall.io("send", zeroIsEOF: false, { Glibc.send(fd, sealed.baseAddress, sealed.count, Int32(MSG_NOSIGNAL)) }) {
        case .bytes(let n):
            if n < sealed.count { unsent.append(UnsafeRawBufferPointer(rebasing: sealed[n...])) }
        case .wouldBlock, .eof:
            unsent.append(sealed)
        case .failed:
            return (true, false)
        }
        return (false, !unsent.isEmpty)
    }

    /// Sends the records kept by `transmit`: true once none is left, false while the socket takes
    /// no more; nil when the socket failed.
    func sendUnsent() -> Bool? {
        while !unsent.isEmpty {
            let pending = unsent.readable
            switch Syscall.io("send", zeroIsEOF: false, { Glibc.send(fd, pending.baseAddress, pending.count, Int32(MSG_NOSIGNAL)) }) {
            case .bytes(let n): unsent.consume(n)
            case .wouldBlock, .eof: return false
            case .failed: return nil
            }
        }
        return true
    }

    /// Gives back the buffers of an idle session.
    func releaseIdleBuffers() {
        unread.releaseIfEmpty()
        unsent.releaseIfEmpty()
    }
}

// MARK: Callbacks

/// GnuTLS's transport pointer is the TLSSocket (unretained: its session owns it and outlives GnuTLS's use).
private func socket(_ pointer: gnutls_transport_ptr_t?) -> TLSSocket {
    Unmanaged<TLSSocket>.fromOpaque(pointer!).takeUnretainedValue()
}

private let tlsPull: gnutls_pull_func = { pointer, data, size in
    socket(pointer).pull(into: data!, size)
}

private let tlsVecPush: gnutls_vec_push_func = { _, vectors, count in
    var total = 0
    for i in 0..<Int(count) {
        let vector = vectors![i]
        guard vector.iov_len > 0 else { continue }
        TLSSocket.collect(UnsafeRawBufferPointer(start: vector.iov_base, count: vector.iov_len))
        total += vector.iov_len
    }
    return total
}

/// Set so that GnuTLS never runs its default, which would take the transport pointer for a descriptor.
private let tlsPullTimeout: gnutls_pull_timeout_func = { pointer, milliseconds in
    socket(pointer).waitReadable(milliseconds: milliseconds)
}
