import CLinux
import Glibc

/// The socket to one connection's peer (TCP, UDP, Unix stream or Unix datagram).
///
/// It connects without blocking (each resolved address in turn), queues what the peer cannot take yet,
/// and reads into a buffer the connection's framing function cuts into messages. When the client side
/// ends, the connection detaches it with `finish()`: it then flushes what is queued, half-closes, and
/// reads until the peer closes too, so no accepted byte is lost to a reset.
final class PeerSocket: EventHandler, ListMember {
    enum State { case resolving, connecting, tlsHandshake, open, finishing, lingering, closed }

    unowned let server: Server
    /// The client connection this peer serves; nil once detached.
    var owner: Connection?
    let address: PeerAddress
    let isDatagram: Bool
    private(set) var fd: Int32 = -1
    /// The TLS session of a tls:// peer.
    private var tls: TLSSession?
    private var token: Reactor.Token?
    private(set) var state = State.resolving
    private var candidates: [SocketAddress] = []
    private var lastError = ""
    /// Bytes (stream) or length-prefixed datagrams queued for the peer.
    private(set) var outbox = ByteBuffer()
    /// Bytes read from the peer, not yet framed.
    var inbox = ByteBuffer()
    /// A client message being assembled into one datagram.
    private var datagram = ByteBuffer()
    private var interest: UInt32 = 0
    var readPaused = false
    /// The peer closed its sending side.
    private(set) var peerFinished = false
    var deadline: Int64 = 0
    /// Position in the server's list of detached peers.
    var listIndex = -1

    /// Where bytes nobody wants any more are read to (the loop is single-threaded).
    nonisolated(unsafe) private static let discard = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)

    /// Largest UDP payload (IPv4: 65535 - 8 - 20).
    static let udpDatagramLimit = 65507

    init(server: Server, owner: Connection, address: PeerAddress) {
        self.server = server
        self.owner = owner
        self.address = address
        self.isDatagram = address.isDatagram
    }

    // MARK: Connecting

    func start() {
        deadline = server.now + server.limits.connectTimeoutMilliseconds
        switch address {
        case .tcp(let host, let port), .tls(let host, let port), .udp(let host, let port):
            let type = isDatagram ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)
            if let numeric = SocketAddress.numeric(host: host, port: port, socketType: type) {
                candidates = numeric
                connectNext()
            } else {
                server.resolver.resolve(host: host, port: port, socketType: type) { [weak self] result in
                    guard let self, self.state == .resolving else { return }
                    switch result {
                    case .success(let list):
                        self.candidates = list
                        self.connectNext()
                    case .failure(let error):
                        self.fail("cannot resolve \(host): \(error)")
                    }
                }
            }
        case .unixStream(let path):
            candidates = [SocketAddress.unix(path, socketType: Int32(SOCK_STREAM.rawValue))]
            connectNext()
        case .unixDatagram(let path):
            candidates = [SocketAddress.unix(path, socketType: Int32(SOCK_DGRAM.rawValue))]
            connectNext()
        case .echo:
            fail("echo:// has no socket")
        }
    }

    /// Tries the next candidate address; reports failure when none is left.
    private func connectNext() {
        closeSocket()
        guard !candidates.isEmpty else {
            fail(lastError.isEmpty ? "no address to connect to" : lastError)
            return
        }
        var target = candidates.removeFirst()
        state = .connecting
        let s = socket(target.family, target.socketType | Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else {
            lastError = "\(SystemError("socket"))"
            connectNext()
            return
        }
        fd = s
        if target.family == AF_INET || target.family == AF_INET6, !isDatagram {
            SocketOptions.setNoDelay(s)
        }
        if target.family == AF_UNIX && isDatagram {
            // Autobind to an abstract address of our own, so the peer has somewhere to answer.
            var own = sockaddr_un()
            own.sun_family = sa_family_t(AF_UNIX)
            _ = withUnsafePointer(to: &own) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sa_family_t>.size)) }
            }
        }
        let rc = withUnsafePointer(to: &target.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s, $0, target.length) }
        }
        if rc == 0 {
            register(EpollEvents.readable)
            transportConnected()
        } else if errno == EINPROGRESS {
            // On loopback the connection is usually established by now: check once without waiting,
            // which saves an event-loop round trip on every upgrade.
            if isConnected(s) {
                register(EpollEvents.readable)
                transportConnected()
            } else {
                register(EpollEvents.writable)
            }
        } else {
            lastError = "connect to \(address): \(String(cString: strerror(errno)))"
            connectNext()
        }
    }

    /// Whether a non-blocking connect has completed (getpeername fails with ENOTCONN until then).
    private func isConnected(_ fd: Int32) -> Bool {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) == 0 }
        }
    }

    /// The pending error of a socket (SO_ERROR): 0 once a non-blocking connect has succeeded.
    private func socketError(_ fd: Int32) -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        return error
    }

    private func register(_ events: UInt32) {
        interest = events
        do {
            token = try server.reactor.register(fd, events: events, handler: self)
        } catch {
            lastError = error.description
            connectNext()
        }
    }

    /// The socket is connected: start TLS for tls:// peers, otherwise the peer is ready.
    private func transportConnected() {
        guard case .tls(let host, _) = address else {
            connected()
            return
        }
        let credentials: TLSCredentials
        do throws(TLSError) {
            credentials = try server.tls.peerCredentialsForUse()
        } catch {
            fail(error.description)
            return
        }
        guard let session = TLSSession.client(fd: fd, host: host, credentials: credentials,
                                              priority: server.tls.peerPriority, verify: server.tls.verifyPeers) else {
            fail("cannot start a TLS session")
            return
        }
        tls = session
        state = .tlsHandshake
        continueTLSHandshake()
    }

    private func continueTLSHandshake() {
        guard let tls else { return }
        switch tls.handshake() {
        case .done:
            connected()
        case .wantRead:
            setInterest(EpollEvents.readable)
        case .wantWrite:
            setInterest(EpollEvents.writable)
        case .failed(let why):
            fail("TLS handshake with \(address) failed: \(why)")
        }
    }

    private func setInterest(_ events: UInt32) {
        guard let token, events != interest else { return }
        interest = events
        server.reactor.modify(fd, token: token, events: events)
    }

    private func connected() {
        state = .open
        deadline = 0
        candidates = []
        updateInterest()
        owner?.peerConnected()
    }

    private func fail(_ reason: String) {
        let owner = self.owner
        close()
        owner?.peerFailed(reason)
    }

    // MARK: Events

    func handleEvent(_ events: UInt32) {
        switch state {
        case .connecting:
            let error = socketError(fd)
            if error == 0 {
                transportConnected()
            } else {
                lastError = "connect to \(address): \(String(cString: strerror(error)))"
                connectNext()
            }
        case .tlsHandshake:
            continueTLSHandshake()
        case .open, .finishing, .lingering:
            if events & EpollEvents.writable != 0 { flush() }
            if state != .closed, events & (EpollEvents.readable | EpollEvents.hangup | EpollEvents.error) != 0 {
                readAvailable()
            }
        case .resolving, .closed:
            break
        }
    }

    private func readAvailable() {
        while state != .closed && !readPaused && !peerFinished {
            if state == .lingering || owner == nil {
                // Nobody will frame this any more: read and discard until the peer closes.
                let n = read(fd, Self.discard.baseAddress, Self.discard.count)
                if n > 0 { continue }
                if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
                if state == .finishing && !outbox.isEmpty {
                    peerFinished = true  // still flushing towards the peer; halfClose closes
                    updateInterest()
                    return
                }
                close()
                return
            }
            let room = server.limits.peerBufferBytes - inbox.count
            guard room > 0 else {
                // The framing function left a full buffer unframed: the owner decides (1009).
                owner?.peerBufferFull()
                return
            }
            let tail = inbox.writableTail(minimum: isDatagram ? 65536 : min(server.limits.readChunk, room))
            let want = isDatagram ? tail.count : min(tail.count, room)
            switch SocketIO.read(fd, tls, into: UnsafeMutableRawBufferPointer(rebasing: tail[0..<want])) {
            case .bytes(let n):
                inbox.commit(n)
                owner?.peerReceived(lastRead: n)
                if !isDatagram && n < want && tls == nil { return }
            case .eof where isDatagram:
                continue  // an empty datagram: nothing to frame
            case .eof:
                peerFinished = true
                updateInterest()
                owner?.peerEnded()
                if owner == nil && outbox.isEmpty { close() }
                return
            case .wouldBlock:
                return
            case .failed(let why):
                fail(why)
                return
            }
        }
    }

    // MARK: Sending

    /// Client payload for a stream peer: written now when possible, queued otherwise.
    func write(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0, state == .open || state == .finishing else { return }
        var written = 0
        if outbox.isEmpty && tls == nil {
            writing: while written < bytes.count {
                switch SocketIO.write(fd, nil, UnsafeRawBufferPointer(rebasing: bytes[written...])) {
                case .bytes(let n): written += n
                case .wouldBlock: break writing
                case .failed(let why):
                    fail(why)
                    return
                }
            }
        }
        guard written < bytes.count else { return }
        outbox.append(UnsafeRawBufferPointer(rebasing: bytes[written...]))
        // TLS encrypts from its own buffer: queue first, then write what the socket takes.
        if tls != nil && !writeQueued() { return }
        updateInterest()
    }

    /// Part of a client message for a datagram peer; the message goes out as one datagram at its end.
    /// False when the message cannot fit a datagram.
    func appendDatagram(_ bytes: UnsafeRawBufferPointer, messageEnd: Bool) -> Bool {
        if case .udp = address, datagram.count + bytes.count > Self.udpDatagramLimit { return false }
        if messageEnd && datagram.isEmpty {
            return sendDatagram(bytes)
        }
        datagram.append(bytes)
        guard messageEnd else { return true }
        let ok = sendDatagram(UnsafeRawBufferPointer(datagram.readable))
        datagram.removeAll()
        datagram.releaseIfEmpty()
        return ok
    }

    private func sendDatagram(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard state == .open || state == .finishing else { return true }
        if outbox.isEmpty {
            while true {
                let n = send(fd, bytes.baseAddress, bytes.count, 0)
                if n >= 0 { return true }
                if errno == EINTR { continue }
                if errno == EMSGSIZE { return false }
                if errno == EAGAIN || errno == EWOULDBLOCK { break }
                fail("\(SystemError("send"))")
                return true
            }
        }
        var length = UInt32(bytes.count)
        withUnsafeBytes(of: &length) { outbox.append($0) }
        outbox.append(bytes)
        updateInterest()
        return true
    }

    /// Writes queued bytes or datagrams until the socket takes no more; false when the socket
    /// failed (and was closed). Only writes: no callbacks, so it is safe while the owner is busy.
    private func writeQueued() -> Bool {
        while !outbox.isEmpty {
            let pending = outbox.readable
            if isDatagram {
                let length = Int(pending.loadUnaligned(as: UInt32.self))
                let n = send(fd, pending.baseAddress! + 4, length, 0)
                if n >= 0 {
                    outbox.consume(4 + length)
                } else if errno == EINTR {
                    continue
                } else if errno == EAGAIN || errno == EWOULDBLOCK {
                    return true
                } else {
                    fail("\(SystemError("send"))")
                    return false
                }
            } else {
                switch SocketIO.write(fd, tls, UnsafeRawBufferPointer(pending)) {
                case .bytes(let n): outbox.consume(n)
                case .wouldBlock: return true
                case .failed(let why):
                    fail(why)
                    return false
                }
            }
        }
        return true
    }

    /// The socket is writable: send what is queued, then tell the owner when the queue fell below
    /// its low-water mark.
    private func flush() {
        guard writeQueued() else { return }
        if outbox.isEmpty && outbox.allocatedBytes > server.limits.retainedBufferBytes { outbox.releaseIfEmpty() }
        if state == .finishing && outbox.isEmpty {
            halfClose()
            return
        }
        updateInterest()
        if outbox.count <= server.limits.outboxLowWater { owner?.peerDrained() }
    }

    var queuedBytes: Int { outbox.count }

    // MARK: Ending

    /// The client side is done: flush what is queued, half-close, read until the peer closes.
    func finish() {
        owner = nil
        readPaused = false
        switch state {
        case .resolving, .connecting, .tlsHandshake:
            close()
        case .open:
            state = .finishing
            deadline = server.now + server.limits.closeTimeoutMilliseconds
            if outbox.isEmpty { halfClose() } else { updateInterest() }
        case .finishing, .lingering, .closed:
            break
        }
    }

    private func halfClose() {
        // Nothing unread: close() sends FIN after everything queued, as shutdown would, and nothing
        // the peer sends later matters any more. With unread bytes close() would send a reset that
        // can overtake queued data, so then half-close and read until the peer closes.
        if isDatagram || peerFinished || SocketOptions.unreadBytes(fd) == 0 {
            tls?.sendCloseNotify()
            close()
            return
        }
        tls?.sendCloseNotify()
        shutdown(fd, Int32(SHUT_WR))
        state = .lingering
        inbox.removeAll()
        inbox.releaseIfEmpty()
        updateInterest()
    }

    /// Closes the socket now and frees its buffers.
    func close() {
        guard state != .closed else { return }
        state = .closed
        closeSocket()
        owner = nil
        inbox.removeAll()
        inbox.releaseIfEmpty()
        outbox.removeAll()
        outbox.releaseIfEmpty()
        datagram.removeAll()
        datagram.releaseIfEmpty()
        server.peerClosed(self)
    }

    private func closeSocket() {
        tls = nil
        if let token { server.reactor.unregister(token) }
        token = nil
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    func updateInterest() {
        guard let token, state != .closed else { return }
        var wanted: UInt32 = 0
        if !readPaused && !peerFinished { wanted |= EpollEvents.readable }
        if !outbox.isEmpty { wanted |= EpollEvents.writable }
        if wanted != interest {
            interest = wanted
            server.reactor.modify(fd, token: token, events: wanted)
        }
    }

    func pauseReading() {
        guard !readPaused else { return }
        readPaused = true
        updateInterest()
    }

    func resumeReading() {
        guard readPaused else { return }
        readPaused = false
        updateInterest()
        // Decrypted bytes GnuTLS already holds would never be announced by epoll.
        if tls?.hasPendingData == true { readAvailable() }
    }
}
