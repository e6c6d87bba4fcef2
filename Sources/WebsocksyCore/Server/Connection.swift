import CLinux
import Glibc

/// One client connection and everything it owns: its socket, buffers, protocol state and peer.
///
/// Life cycle: [`tlsHandshake` for wss://] `handshake` (reading the HTTP request; a plain request
/// goes to `responding` and, when the connection stays open, back) → `connectingPeer` (the backend chose a socket
/// peer; the 101 waits for its connect) → `open` (bridging) → `closing` (we sent a
/// Close and wait for the client's) → `draining` (flushing what is queued, then half-closing) →
/// `lingering` (reading until the client closes too, so unread input never turns our close into a
/// reset that could destroy the Close frame in flight) → `closed`.
final class Connection: EventHandler, ListMember {
    enum State { case tlsHandshake, handshake, responding, connectingPeer, open, closing, draining, lingering, closed }

    unowned let server: Server
    let fd: Int32
    let clientAddress: String
    var token: Reactor.Token?
    var state = State.handshake
    var listIndex = -1

    /// Bytes from the client not yet decoded (a partial header, or input held back by backpressure).
    var inbox = ByteBuffer()
    /// Bytes for the client that the socket has not taken yet.
    var outbox = ByteBuffer()
    /// The TLS session of a wss:// client.
    var tls: TLSSession?
    /// TLS is configured and the first byte has not been seen yet.
    var tlsUndecided: Bool
    var tlsWantsWrite = false
    var handshakeParser: HandshakeParser
    var reader: WebSocketReader
    /// The peer is the built-in echo (no socket).
    var isEcho = false
    var echo = EchoPeer()
    var peerSocket: PeerSocket?
    var framer: PeerFramer?
    /// Key and subprotocol of the 101 to send once the peer is connected.
    var pendingUpgrade: (key: String, subprotocol: String?)?

    /// A Close frame has been queued: nothing may follow it (RFC 6455 §5.5.1).
    var closeSent = false
    /// The client's Close frame arrived: it sends nothing more, so the socket may be closed outright.
    var closeReceived = false
    /// The client half-closed: no more reads.
    var clientFinished = false
    /// Reading from the client stopped because a queue it feeds (the outbox for echo, the peer's
    /// queue for a socket peer) is over its high-water mark.
    var readPaused = false
    var interest = EpollEvents.readable
    var lastReceive: Int64
    /// Last data message either way, for `idle-timeout`.
    var lastData: Int64
    /// For the access log.
    var record: ConnectionRecord
    /// The client as the access log names it (from a trusted proxy's headers when there is one).
    var loggedClient: String?
    var pingSentAt: Int64?
    /// The file body of a web-root response still being sent.
    var fileBody: FileBody?
    /// The response being sent leaves the connection open for another request.
    var keepAlive = false
    var requestsServed = 0
    /// When the current state times out (0 = never).
    var deadline: Int64

    init(server: Server, fd: Int32, clientAddress: String, now: Int64) {
        self.server = server
        self.fd = fd
        self.clientAddress = clientAddress
        self.handshakeParser = HandshakeParser(maxHeaderBytes: server.limits.maxHeaderBytes, maxHeaderCount: server.limits.maxHeaders)
        self.reader = WebSocketReader(maxMessageSize: server.limits.maxMessage)
        self.lastReceive = now
        self.lastData = now
        self.record = ConnectionRecord(startedAt: now)
        self.deadline = now + server.limits.handshakeTimeoutMilliseconds
        self.tlsUndecided = server.tls.serverCredentials != nil
    }

    func handleEvent(_ events: UInt32) {
        if state == .tlsHandshake {
            continueTLSHandshake()
            return
        }
        if events & EpollEvents.writable != 0 {
            flushOutbox()
        }
        if state != .closed, events & (EpollEvents.readable | EpollEvents.hangup | EpollEvents.error) != 0 {
            readFromClient()
        }
    }

    /// Reads what the client sent until the socket is empty (or reading is paused) and acts on it.
    func readFromClient() {
        if tlsUndecided && !sniffTLS() { return }
        while state != .closed && state != .connectingPeer && state != .tlsHandshake && state != .responding
                && !readPaused && !clientFinished {
            let tail = inbox.writableTail(minimum: server.limits.readChunk)
            switch SocketIO.read(fd, tls, into: tail) {
            case .bytes(let n):
                inbox.commit(n)
                lastReceive = server.now
                pingSentAt = nil
                processInbox()
                // A short plain read drained the socket; TLS reads stop at record boundaries.
                if n < tail.count && tls == nil { return }
            case .wouldBlock:
                return
            case .eof:
                clientEndedStream()
                return
            case .failed(let why):
                Log.debug("\(clientAddress): \(why)")
                destroy()
                return
            }
        }
    }

    /// Acts on buffered client bytes as the state allows.
    func processInbox() {
        switch state {
        case .handshake: processHandshake()
        case .open, .closing: processFrames()
        case .draining, .lingering: inbox.removeAll()
        case .tlsHandshake, .connectingPeer, .responding, .closed: break
        }
    }

    /// The client closed its sending side.
    private func clientEndedStream() {
        clientFinished = true
        switch state {
        case .tlsHandshake, .handshake, .responding, .connectingPeer, .lingering:
            destroy()
        case .open, .closing:
            if record.closedBy == nil { record.closedBy = "client" }
            Log.debug("\(clientAddress): client closed the connection without a close handshake")
            destroy()
        case .draining:
            // Keep flushing what is queued (the client may still read); finishDraining closes.
            updateInterest()
        case .closed:
            break
        }
    }

    /// Tears the connection down now: closes the socket and frees everything it holds.
    func destroy() {
        guard state != .closed else { return }
        state = .closed
        // After a kept-alive response, a connection closing before its next request has nothing to log.
        if let accessLog = server.accessLog, requestsServed == 0 || record.status != 0 {
            accessLog.write(record.line(client: loggedClient ?? clientAddress, now: server.now))
        }
        if let token { server.reactor.unregister(token) }
        fileBody = nil
        tls = nil
        close(fd)
        detachPeer()
        inbox.removeAll()
        inbox.releaseIfEmpty()
        outbox.removeAll()
        outbox.releaseIfEmpty()
        echo.messageSent()
        server.connectionClosed(self)
    }
}
