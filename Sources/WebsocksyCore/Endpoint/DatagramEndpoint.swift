import Glibc

/// What a datagram endpoint tells its owner; as for streams, only from the event loop.
protocol DatagramEndpointOwner: AnyObject {
    /// One datagram of `count` bytes was appended to `endpoint.inbox`.
    func datagramReceived(_ endpoint: DatagramEndpoint, count: Int)
    /// A datagram larger than the endpoint accepts arrived; it was dropped whole, never cut.
    func datagramTooLarge(_ endpoint: DatagramEndpoint, size: Int)
    /// The queue of datagrams is at or below the low-water mark after the socket took more.
    func datagramDrained(_ endpoint: DatagramEndpoint)
    /// The socket failed (an ICMP error on a connected UDP socket, say): the endpoint is closed.
    func datagramClosed(_ endpoint: DatagramEndpoint, error: IOFailure)
}

/// A connected UDP or Unix datagram socket. Boundaries are kept both ways: one `send` is one
/// datagram (queued whole, length-prefixed, when the socket is full), one receive is one datagram,
/// sized before it is read so a large one is refused rather than silently truncated.
final class DatagramEndpoint: Endpoint {
    unowned(unsafe) var owner: (any DatagramEndpointOwner)?
    /// Received datagrams not framed yet.
    var inbox: ByteBuffer
    /// Datagrams waiting for the socket, each behind its 4-byte length.
    private var outbox = ByteBuffer()
    /// The largest datagram accepted from the peer.
    let maxDatagram: Int
    /// Unix datagrams can be larger than any fixed buffer: their size is peeked first. A UDP
    /// payload is at most 65 507 bytes, so a 64 KiB buffer always holds it whole.
    private let peeksSize: Bool
    private(set) var isReadPaused = false
    private var failure: IOFailure?
    private var finishing = false

    /// Largest UDP payload (IPv4: 65535 - 8 - 20).
    static let udpPayloadLimit = 65507
    /// Datagrams one wake-up reads at most.
    static let readBudget = 64

    init(server: Server, fd: Int32, registration: (token: Reactor.Token, events: UInt32)?, isUnix: Bool, maxDatagram: Int, owner: (any DatagramEndpointOwner)?) throws(SystemError) {
        self.owner = owner
        self.peeksSize = isUnix
        self.maxDatagram = maxDatagram
        inbox = ByteBuffer(pool: server.blocks)
        try super.init(server: server, fd: fd, registration: registration, interest: EpollEvents.readable)
    }

    var queuedBytes: Int { outbox.count }

    override func handleEvent(_ events: UInt32) {
        if let failure { return fail(failure) }
        guard !isClosed else { return }
        if events & EpollEvents.writable != 0 {
            flush()
            guard !isClosed else { return }
        }
        if events & (EpollEvents.readable | EpollEvents.error | EpollEvents.hangup) != 0 {
            if finishing || isReadPaused {
                // Not reading, so no receive reports it: an ICMP error on a connected UDP socket.
                if events & EpollEvents.error != 0 { fail(.system(SystemError("socket", errno: pendingError()))) }
                return
            }
            readAvailable()
        }
    }

    private func readAvailable() {
        defer { inbox.releaseBlockIfEmpty() }
        for _ in 0..<Self.readBudget where !isReadPaused && !isClosed {
            var size = min(65536, maxDatagram + 1)
            if peeksSize {
                switch Syscall.io("recv", zeroIsEOF: false, { recv(fd, nil, 0, Int32(MSG_PEEK | MSG_TRUNC)) }) {
                case .bytes(let n): size = n
                case .wouldBlock, .eof: return
                case .failed(let error): return fail(error)
                }
                if size > maxDatagram {
                    _ = recv(fd, nil, 0, 0)  // drop it: it is never delivered cut
                    owner?.datagramTooLarge(self, size: size)
                    return
                }
            }
            let tail = inbox.writableTail(minimum: max(size, 1))
            switch Syscall.io("recv", zeroIsEOF: false, { recv(fd, tail.baseAddress, size, Int32(MSG_TRUNC)) }) {
            case .bytes(let n) where n > size || n > maxDatagram:
                owner?.datagramTooLarge(self, size: n)
                return
            case .bytes(0):
                continue  // an empty datagram: nothing to frame
            case .bytes(let n):
                inbox.commit(n)
                owner?.datagramReceived(self, count: n)
            case .wouldBlock, .eof:
                return
            case .failed(let error):
                return fail(error)
            }
        }
    }

    /// Sends one datagram now, or queues it whole; false when it is too large to be one datagram.
    func send(_ datagram: UnsafeRawBufferPointer) -> Bool {
        guard failure == nil, !isClosed else { return true }
        if outbox.isEmpty {
            switch Syscall.io("send", zeroIsEOF: false, { Glibc.send(fd, datagram.baseAddress, datagram.count, 0) }) {
            case .bytes, .eof: return true
            case .wouldBlock: break
            case .failed(.system(let error)) where error.errno == EMSGSIZE: return false
            case .failed(let error):
                failLater(error)
                return true
            }
        }
        var length = UInt32(datagram.count)
        withUnsafeBytes(of: &length) { outbox.append($0) }
        outbox.append(datagram)
        updateInterest()
        return true
    }

    private func flush() {
        while !outbox.isEmpty {
            let pending = outbox.readable
            let length = Int(pending.loadUnaligned(as: UInt32.self))
            switch Syscall.io("send", zeroIsEOF: false, { Glibc.send(fd, pending.baseAddress! + 4, length, 0) }) {
            case .bytes, .eof:
                outbox.consume(4 + length)
            case .wouldBlock:
                return updateInterest()
            case .failed(let error):
                return fail(error)
            }
        }
        if outbox.allocatedBytes > server.limits.retainedBufferBytes { outbox.releaseIfEmpty() }
        if finishing { return close() }
        updateInterest()
        owner?.datagramDrained(self)
    }

    func pauseReading() {
        guard !isReadPaused else { return }
        isReadPaused = true
        updateInterest()
    }

    func resumeReading() {
        guard isReadPaused else { return }
        isReadPaused = false
        updateInterest()
    }

    private func updateInterest() {
        var wanted: UInt32 = 0
        if failure == nil {
            if !isReadPaused && !finishing { wanted |= EpollEvents.readable }
            if !outbox.isEmpty { wanted |= EpollEvents.writable }
        }
        setInterest(wanted)
    }

    /// The owner is done: send what is queued (bounded by `close-timeout`), then close.
    func finish() {
        owner = nil
        guard !isClosed else { return }
        guard !outbox.isEmpty, failure == nil else { return close() }
        finishing = true
        deadline = server.now + server.limits.closeTimeoutMilliseconds
        server.adoptFinishing(self)
        updateInterest()
    }

    override func close() {
        owner = nil
        guard closeDescriptor() else { return }
        inbox.removeAll()
        inbox.releaseIfEmpty()
        outbox.removeAll()
        outbox.releaseIfEmpty()
    }

    private func fail(_ error: IOFailure) {
        let owner = self.owner
        close()
        owner?.datagramClosed(self, error: error)
    }

    private func failLater(_ error: IOFailure) {
        guard failure == nil else { return }
        failure = error
        updateInterest()
        wakeSoon()
    }
}
