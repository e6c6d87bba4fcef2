import CLinux
import Glibc

/// One connected stream socket — the client's, or a TCP / Unix stream / TLS peer's — with everything
/// its lifecycle needs in one place: an optional TLS session, the inbox and the outbox,
/// write-or-queue, flushing, pausing reading (which *is* dropping EPOLLIN), a read budget per
/// wake-up, and the end: flush, half-close, linger until the other side closes, close.
final class StreamEndpoint: Endpoint {
    enum Phase { case tlsHandshake, open, finishing, lingering, closed }

    /// Nil once the owner has finished with the endpoint (`finish`, `close`).
    unowned(unsafe) var owner: (any StreamEndpointOwner)?
    private(set) var phase = Phase.open
    private(set) var tls: TLSSession?
    private var tlsWantsWrite = false
    /// Bytes read and not yet used by the owner.
    var inbox: ByteBuffer
    /// Bytes the socket has not taken yet.
    private var outbox: Outbox
    /// Reading stops when the inbox holds this much (a peer's unframed bytes are capped).
    var inboxLimit = Int.max
    private(set) var isReadPaused = false
    /// The other side finished sending.
    private(set) var inputEnded = false
    /// A failure found while writing on the owner's behalf, reported on the next turn.
    private var failure: IOFailure?
    /// After the final flush: wait for the other side's FIN even when nothing is unread yet (a
    /// client that has not sent its Close frame will still send it).
    private var awaitsOtherSide = false
    /// While bytes are queued: when the socket last took some, or when the queue started
    /// (monotonic ms; 0 while nothing is queued). Whoever takes nothing for long has stalled.
    private(set) var lastWriteProgress: Int64 = 0
    /// Bytes held back for the owner when reading resumed.
    private var resumePending = false
    /// Set before the first byte of a connection that may start TLS: the owner looks at it first.
    var peeksFirstByte = false
    private var firstBytePeeked: ((UInt8) -> Void)?
    /// Set on a connection from a `proxy-protocol-from` source: a PROXY header may come first.
    private var proxyHeaderRead: ((ProxyProtocolParse) -> Void)?
    /// The part of a PROXY header taken off the socket so far.
    private var proxyPreface: [UInt8] = []

    /// Bytes one wake-up reads at most before the loop moves on to other descriptors.
    static let readBudget = 256 << 10

    /// Where lingering endpoints read bytes nobody wants (the loop is single-threaded).
    nonisolated(unsafe) private static let discard = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)

    init(server: Server, fd: Int32, registration: (token: Reactor.Token, events: UInt32)? = nil, owner: (any StreamEndpointOwner)?) throws(SystemError) {
        self.owner = owner
        inbox = ByteBuffer(pool: server.blocks)
        outbox = Outbox(pool: server.blocks)
        try super.init(server: server, fd: fd, registration: registration, interest: EpollEvents.readable)
    }

    /// Bytes the socket has not taken: queued, and sealed by TLS but not sent yet.
    var queuedBytes: Int { outbox.count + (tls?.unsentCount ?? 0) }
    private var hasQueued: Bool { !outbox.isEmpty || tls?.unsentCount ?? 0 > 0 }
    var isOpen: Bool { phase == .open && failure == nil }

    // MARK: Events

    override func handleEvent(_ events: UInt32) {
        if let failure {
            // A write found the socket reset. What the other side sent before it is still in the
            // receive queue, readable ahead of the error: deliver it, then report the failure.
            if phase == .open && isReading && owner != nil { readAvailable() }
            return fail(failure)
        }
        switch phase {
        case .closed:
            return
        case .tlsHandshake:
            continueTLSHandshake()
            return
        case .open, .finishing, .lingering:
            break
        }
        if events & EpollEvents.writable != 0 {
            flush()
            guard phase != .closed else { return }
            if failure != nil { return handleEvent(EpollEvents.deferred) }
        }
        if resumePending {
            resumePending = false
            owner?.endpointResumed(self)
            guard phase != .closed else { return }
        }
        if isReading {
            if events & (EpollEvents.readable | EpollEvents.hangup | EpollEvents.error | EpollEvents.deferred) != 0 {
                if proxyHeaderRead != nil { return readProxyHeader() }
                if peeksFirstByte { return readFirstByte() }
                readAvailable()
            }
        } else if events & (EpollEvents.hangup | EpollEvents.error) != 0 {
            // Nothing reads the socket now, so no read reports this: it was reset, or both
            // directions are shut. Either way nothing more will pass.
            let code = pendingError()
            fail(code == 0 ? nil : .system(SystemError("socket", errno: code)))
        }
    }

    private var isReading: Bool { !isReadPaused && !inputEnded && phase != .closed }

    /// Reads until the socket is empty or this wake-up's budget is spent: a connection that floods
    /// gets its share, then the loop serves the others (level-triggered epoll reports it again).
    private func readAvailable() {
        var budget = Self.readBudget
        // A record read may have needed an answer the socket did not take (a TLS 1.3 key update).
        defer { if tls?.unsentCount ?? 0 > 0 && phase != .closed { updateInterest() } }
        // What the owner used up needs no buffer until the next read.
        defer { inbox.releaseBlockIfEmpty() }
        while isReading {
            if owner == nil || phase == .lingering {
                return discardInput()
            }
            let room = inboxLimit - inbox.count
            guard room > 0 else {
                setReadPaused(true)  // the owner has already acted on the full inbox
                return
            }
            // Up to a read chunk in all, not a chunk more: a partial frame's few leftover bytes slide
            // to the front of their block instead of moving the inbox into a larger malloc'd one.
            let chunk = server.limits.readChunk
            let tail = inbox.writableTail(minimum: min(room, max(chunk - inbox.count, chunk / 4)))
            let want = min(tail.count, room)
            let target = UnsafeMutableRawBufferPointer(rebasing: tail[0..<want])
            let result = tls.map { $0.read(into: target) }
                ?? Syscall.io("read") { Glibc.read(fd, target.baseAddress, want) }
            switch result {
            case .bytes(let n):
                inbox.commit(n)
                owner?.endpointReceived(self, count: n)
                // A short read emptied the socket (TLS reads fill the buffer record after record).
                if n < want && (tls == nil || tls?.drained == true) { return }
                budget -= n
                if budget <= 0 {
                    if tls?.hasPendingData == true { wakeSoon() }
                    return
                }
            case .wouldBlock:
                return
            case .eof:
                // After a failed write the reset has been reported to the write, and reads
                // return 0: that is the failure, not an orderly end.
                if let failure { return fail(failure) }
                endOfInput()
                return
            case .failed(let error):
                fail(error)
                return
            }
        }
    }

    private func endOfInput() {
        inputEnded = true
        updateInterest()
        if phase == .open {
            owner?.endpointEnded(self)
        } else if phase == .lingering || !hasQueued {
            close()
        }
    }

    /// Reads and drops what arrives after the owner let go, until the other side closes; within
    /// the same budget per wake-up as useful reads, so a flood while lingering starves nobody.
    private func discardInput() {
        var budget = Self.readBudget
        while budget > 0 {
            switch Syscall.io("read", { Glibc.read(fd, Self.discard.baseAddress, Self.discard.count) }) {
            case .bytes(let n): budget -= n
            case .wouldBlock: return
            case .eof: return endOfInput()
            case .failed: return close()
            }
        }
    }

    /// Connections that may start TLS: the first byte is looked at, not consumed, before anything reads.
    private func readFirstByte() {
        var byte: UInt8 = 0
        switch Syscall.io("recv", { recv(fd, &byte, 1, Int32(MSG_PEEK)) }) {
        case .bytes:
            peeksFirstByte = false
            firstBytePeeked?(byte)
            firstBytePeeked = nil
            if phase == .open && isReading { readAvailable() }
        case .wouldBlock:
            return
        case .eof:
            fail(nil)
        case .failed(let error):
            fail(error)
        }
    }

    /// Looks for a PROXY header before anything else — before TLS, which it precedes — and tells
    /// `read` what came: a header (taken off the socket, nothing after it), none (the bytes stay
    /// for the normal reads), or a malformed one.
    func readProxyHeader(then read: @escaping (ProxyProtocolParse) -> Void) {
        proxyHeaderRead = read
    }

    /// Peeks at what has arrived and takes exactly the header's bytes off the socket. Bytes of an
    /// unfinished header are taken too (they all belong to it), so that epoll does not report the
    /// same bytes again and again; if they turn out to be plain HTTP after all ("P…" of "POST")
    /// they go to the inbox.
    private func readProxyHeader() {
        var peeked = [UInt8](repeating: 0, count: ProxyProtocol.maximumLength - proxyPreface.count)
        let want = peeked.count
        let n: Int
        switch Syscall.io("recv", { recv(fd, &peeked, want, Int32(MSG_PEEK)) }) {
        case .bytes(let count): n = count
        case .wouldBlock: return
        case .eof: return fail(nil)
        case .failed(let error): return fail(error)
        }
        let seen = proxyPreface + peeked[0..<n]
        let result = seen.withUnsafeBytes { ProxyProtocol.parse($0) }
        let take: Int
        switch result {
        case .incomplete: take = n
        case .header(_, let consumed): take = consumed - proxyPreface.count
        case .absent, .invalid: take = 0
        }
        if take > 0 {
            // The peeked bytes are there: this recv takes them without waiting.
            guard case .bytes = Syscall.io("recv", { recv(fd, &peeked, take, 0) }) else { return fail(nil) }
        }
        if case .incomplete = result {
            proxyPreface = seen
            return
        }
        let read = proxyHeaderRead
        proxyHeaderRead = nil
        if case .absent = result { proxyPreface.withUnsafeBytes { inbox.append($0) } }
        proxyPreface = []
        read?(result)
        guard phase == .open, isReading else { return }
        if peeksFirstByte, let first = inbox.readable.first {
            // The first byte was part of what looked like a header.
            peeksFirstByte = false
            firstBytePeeked?(first)
            firstBytePeeked = nil
        }
        if phase == .open && isReading { handleEvent(EpollEvents.deferred) }
    }

    /// The owner let go: the closures that would call it (the TLS sniff, the PROXY header) go too,
    /// and whatever arrives is read as any unowned endpoint reads it (discarded).
    private func forgetPrefaceReaders() {
        peeksFirstByte = false
        firstBytePeeked = nil
        proxyHeaderRead = nil
        proxyPreface = []
    }

    /// Asks for the first byte before any read; `peeked` decides between TLS and plain.
    func peekFirstByte(then peeked: @escaping (UInt8) -> Void) {
        peeksFirstByte = true
        firstBytePeeked = peeked
    }

    // MARK: TLS

    /// Runs a TLS handshake over the socket before anything else; `endpointSecured` reports its end.
    func startTLS(_ session: TLSSession) {
        tls = session
        phase = .tlsHandshake
        wakeSoon()
    }

    private func continueTLSHandshake() {
        guard let tls else { return }
        switch tls.handshake() {
        case .done:
            phase = .open
            updateInterest()
            // Application data that came with the handshake's last flight is already decrypted.
            if tls.hasPendingData { wakeSoon() }
            owner?.endpointSecured(self)
        case .wantRead:
            tlsWantsWrite = false
            updateInterest()
        case .wantWrite:
            tlsWantsWrite = true
            updateInterest()
        case .failed(let why):
            fail(.tls("handshake failed: \(why)"))
        }
    }

    // MARK: Writing

    /// Writes `first` then `second` with one sendmsg (a frame header and its payload), queueing
    /// whatever the socket does not take now. `flags` adds e.g. MSG_MORE.
    func send(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0), flags: Int32 = 0) {
        guard isOpen, !outbox.coalesce(first, second, flags: flags) else { return }
        if let tls {
            if let error = outbox.write(tls, first, second) { return failLater(error) }
            if hasQueued { updateInterest() }
            return
        }
        if let error = outbox.write(fd, first, second, flags: flags) { return failLater(error) }
        if !outbox.isEmpty { updateInterest() }
    }

    /// Starts coalescing small writes (the owner is about to work through a batch of input).
    func cork() {
        outbox.isCorked = true
    }

    /// Writes what was coalesced since `cork`, unless it queued behind bytes that wait for the
    /// socket to become writable (measured: one failed send per read of the other side while a
    /// stream was backed up).
    func uncork() {
        outbox.isCorked = false
        if !outbox.isEmpty && !isWriteBlocked && writeOutbox() { updateInterest() }
    }

    /// The last write found the socket full: what is queued waits for EPOLLOUT (registered).
    private var isWriteBlocked: Bool { tls.map { $0.unsentCount > 0 } ?? outbox.isBlocked }

    /// Writes queued bytes until the socket takes no more; false after a failure. Never calls back.
    @discardableResult
    func writeOutbox() -> Bool {
        guard failure == nil else { return false }
        if let error = outbox.flush(fd, tls) {
            failLater(error)
            return false
        }
        return true
    }

    /// Free space at the end of the outbox to fill in place, then `commitQueued` and `writeOutbox`.
    func queueTail(minimum: Int) -> UnsafeMutableRawBufferPointer {
        outbox.tail(minimum: minimum)
    }

    func commitQueued(_ n: Int) {
        outbox.commit(n)
    }

    /// The socket is writable: send what is queued, then finish or tell the owner.
    private func flush() {
        let before = queuedBytes
        guard writeOutbox() else { return }
        if queuedBytes < before { lastWriteProgress = server.now }
        if outbox.isEmpty && outbox.allocatedBytes > server.limits.retainedBufferBytes { outbox.releaseIfEmpty() }
        if phase == .finishing && !hasQueued {
            return endWriting()
        }
        updateInterest()
        if queuedBytes <= server.limits.outboxLowWater { owner?.endpointDrained(self) }
    }

    /// Keeps the interest on writability set while something is queued (a file body being sent).
    func wantsWritable() {
        setInterest(interestNow | EpollEvents.writable)
    }

    /// Gives back the buffers of an idle endpoint (they are reallocated on the next read or write).
    func releaseIdleBuffers() {
        inbox.releaseIfEmpty()
        outbox.releaseIfEmpty()
        tls?.releaseIdleBuffers()
    }

    // MARK: Flow control

    /// Stops reading: EPOLLIN is dropped from the registration, so the loop does not wake for it.
    /// Only an open endpoint pauses: one that is finishing reads until the other side closes.
    func pauseReading() {
        if phase == .open { setReadPaused(true) }
    }

    /// Reads again. Bytes held in the inbox or decrypted by TLS are handed over on the next turn
    /// (epoll cannot announce them).
    func resumeReading() {
        guard isReadPaused else { return }
        setReadPaused(false)
        if !inbox.isEmpty { resumePending = true }
        if resumePending || tls?.hasPendingData == true { wakeSoon() }
    }

    /// The owner stops working through the inbox to let other connections have the loop: reading
    /// pauses (the inbox must not grow meanwhile) and the owner hears `endpointResumed` next turn,
    /// when it resumes reading itself once it wants more.
    func deferInbox() {
        pauseReading()
        resumePending = true
        wakeSoon()
    }

    private func setReadPaused(_ paused: Bool) {
        guard paused != isReadPaused else { return }
        isReadPaused = paused
        updateInterest()
    }

    private var interestNow: UInt32 {
        switch phase {
        case .closed:
            return 0
        case .tlsHandshake:
            return tlsWantsWrite ? EpollEvents.writable : EpollEvents.readable
        case .open, .finishing, .lingering:
            guard failure == nil else { return 0 }
            var wanted: UInt32 = 0
            if isReading { wanted |= EpollEvents.readable }
            if hasQueued && phase != .lingering { wanted |= EpollEvents.writable }
            return wanted
        }
    }

    func updateInterest() {
        if !hasQueued {
            lastWriteProgress = 0
        } else if lastWriteProgress == 0 {
            lastWriteProgress = server.now
        }
        setInterest(interestNow)
    }

    // MARK: Ending

    /// The owner is done: flush what is queued, then close — or, when the other side may still
    /// send (`awaitingOtherSide`, or bytes are unread), half-close and read until it closes, so
    /// unread input never turns the close into a reset that destroys data still in flight. The
    /// endpoint finishes on its own, bounded by `close-timeout`.
    func finish(awaitingOtherSide: Bool = false) {
        owner = nil
        forgetPrefaceReaders()
        switch phase {
        case .tlsHandshake:
            close()
        case .open:
            guard failure == nil else { return close() }
            if outbox.isCorked {
                outbox.isCorked = false
                writeOutbox()
            }
            phase = .finishing
            awaitsOtherSide = awaitingOtherSide
            isReadPaused = false
            inbox.removeAll()
            inbox.releaseIfEmpty()
            deadline = server.now + server.limits.closeTimeoutMilliseconds
            server.adoptFinishing(self)
            if hasQueued { updateInterest() } else { endWriting() }
        case .finishing, .lingering, .closed:
            break
        }
    }

    private func endWriting() {
        tls?.sendCloseNotify()
        if inputEnded || (!awaitsOtherSide && SocketOptions.unreadBytes(fd) == 0) {
            // close() sends the FIN behind everything queued, as shutdown would.
            return close()
        }
        shutdown(fd, Int32(SHUT_WR))
        phase = .lingering
        updateInterest()
    }

    /// Closes at once and frees the buffers; the owner is not told (it asked, or has let go).
    override func close() {
        owner = nil
        forgetPrefaceReaders()
        closeNow()
    }

    private func closeNow() {
        guard closeDescriptor() else { return }
        phase = .closed
        tls = nil
        failure = nil
        firstBytePeeked = nil
        inbox.removeAll()
        inbox.releaseIfEmpty()
        outbox.removeAll()
        outbox.releaseIfEmpty()
    }

    /// Closes and tells the owner why.
    private func fail(_ error: IOFailure?) {
        let owner = self.owner
        self.owner = nil
        closeNow()
        owner?.endpointClosed(self, error: error)
    }

    /// A write failed inside a call of the owner's: report it from the loop, not from here.
    private func failLater(_ error: IOFailure) {
        guard failure == nil else { return }
        failure = error
        outbox.removeAll()
        updateInterest()
        wakeSoon()
    }
}
