import CWebsocksy
import Glibc

/// One client connection, from accept to the end of its WebSocket: a thin coordinator that owns
/// the client's stream endpoint until the upgrade and hands it to a `Bridge` after.
///
/// Life cycle: `handshake` (TLS first for wss://; the HTTP request; a plain request goes to
/// `responding` and, when the connection stays open, back) → `authenticating` (only while an htpasswd
/// password is checked on its thread; tokens are checked at once) → `queryingBackend` (a plugin backend
/// answers from its own thread; the client is not read meanwhile) → `connectingPeer` (the backend chose
/// a socket peer; the 101 waits for its connect, and for its TLS handshake for tls://) → `open`
/// (the bridge runs the WebSocket) → `closed`. Closing — flushing, half-closing, lingering — is
/// the endpoints' own business once the connection lets go of them.
final class Connection: StreamEndpointOwner, ListMember {
    enum State { case handshake, responding, authenticating, queryingBackend, connectingPeer, open, closed }

    /// The server outlives everything it serves; `unowned(unsafe)` skips a reference-count check per access on the hot path.
    unowned(unsafe) let server: Server
    let client: StreamEndpoint
    /// "address:port" of the client: the socket's peer, or the client a trusted load balancer's
    /// PROXY header names (then used everywhere: logs, limits, the peer's PROXY header).
    private(set) var clientAddress: String
    /// The client's address and port as numbers (nil for a Unix-socket listener).
    private(set) var client4or6: ProxiedAddress?
    /// The address the client reached, as a load balancer's PROXY header gave it (for the header
    /// the gateway sends its peer in turn).
    private(set) var proxiedDestination: ProxiedAddress?
    /// The connection came from a `proxy-protocol-from` source.
    private(set) var fromBalancer = false
    /// The counted entry in the per-client limits, released when the connection ends.
    var limitKey: ClientLimits.Key?
    private(set) var state = State.handshake
    var listIndex = -1

    var handshakeParser: HandshakeParser
    /// For the access log.
    var record: ConnectionRecord
    /// The address a trusted proxy forwarded for (`fwd=` in the access log; nil: none, or not from
    /// a trusted proxy). The access log's client column is always `clientAddress`.
    var loggedClient: String?
    /// A byte of a request has arrived (after TLS, when there is TLS). A connection that ends
    /// without one — a preconnect, a port scan — is counted for the periodic summary, not logged.
    var requestStarted = false
    /// Why the connection ended was already logged at info (a stalled handshake, a TLS failure).
    var endReported = false
    /// It ended because the handshake timeout passed without a byte (a preconnect left idle).
    var timedOutIdle = false
    /// The file body of a web-root response still being sent.
    var fileBody: FileBody?
    /// The response being sent leaves the connection open for another request.
    var keepAlive = false
    var requestsServed = 0
    /// When the handshake or a response times out (0 = never).
    var deadline: Int64

    /// The backend query this connection waits for (`BackendQueries`), to cancel if it ends first.
    var pendingQuery: UInt64?
    /// The htpasswd check it waits for (`PasswordChecks`), likewise.
    var pendingPasswordCheck: UInt64?
    /// The peer being connected, and what the upgrade needs once it is.
    var connector: PeerConnector?
    var peerAddress = PeerAddress.echo
    /// When connecting the peer began (µs), for the metrics' histogram; 0 for echo.
    var peerConnectStarted: Int64 = 0
    /// The route asks for a PROXY v2 header to the peer (`proxy-protocol = v2`).
    var sendsProxyHeader = false
    var framer: PeerFramer?
    /// The route's text mode (`PeerChoice.lineEnd`), for the bridge.
    var lineEnd: [UInt8]?
    /// The route's `record` option, for the recording started at the 101 (`Bridge+Recording.swift`).
    var recordChoice: RecordChoice?
    var pendingUpgrade: (key: String, subprotocol: String?, compression: PerMessageDeflate?)?
    /// The `exec://` program serving this connection (its stdin and stdout are the peer).
    var program: RunningProgram?
    /// The shared peer this connection waits to open before its 101.
    var joiningShared: SharedPeer?
    /// Its route's sharing settings, for the bridge.
    var sharing: SharingSettings?
    /// A tls:// peer whose handshake the 101 waits for.
    var securingPeer: StreamEndpoint?
    private(set) var bridge: Bridge?

    init(server: Server, client: StreamEndpoint, clientAddress: String, client4or6: ProxiedAddress?) {
        self.server = server
        self.client = client
        self.clientAddress = clientAddress
        self.client4or6 = client4or6
        self.handshakeParser = HandshakeParser(maxHeaderBytes: server.limits.maxHeaderBytes, maxHeaderCount: server.limits.maxHeaders)
        self.record = ConnectionRecord(startedAt: server.now)
        self.deadline = server.now + server.limits.handshakeTimeoutMilliseconds
        client.owner = self
        if server.tls.serverCredentials != nil {
            client.peekFirstByte { [unowned self] byte in self.firstByteArrived(byte) }
        }
    }

    // MARK: Endpoint events (the client before the upgrade; a tls:// peer during its handshake)

    func endpointReceived(_ endpoint: StreamEndpoint, count: Int) {
        if count > 0 && endpoint === client { requestStarted = true }
        if state == .handshake { processHandshake() }
    }

    func endpointResumed(_ endpoint: StreamEndpoint) {
        if state == .handshake { processHandshake() }
    }

    func endpointEnded(_ endpoint: StreamEndpoint) {
        destroy()
    }

    func endpointDrained(_ endpoint: StreamEndpoint) {
        if state == .responding { continueResponse() }
    }

    func endpointSecured(_ endpoint: StreamEndpoint) {
        if endpoint === securingPeer { return peerSecured(endpoint) }
        if endpoint === client { server.metrics.tlsHandshakes += 1 }
    }

    func endpointClosed(_ endpoint: StreamEndpoint, error: IOFailure?) {
        if endpoint === securingPeer {
            securingPeer = nil
            refuse(.init(.badGateway, "peer unreachable: TLS handshake with \(peerAddress) \(error.map { "\($0)" } ?? "ended early")"))
            return
        }
        if case .tls(let why) = error {
            if why.hasPrefix("handshake failed") { server.metrics.tlsFailures += 1 }
            Log.info("\(clientAddress): TLS \(why)")
            endReported = true
        } else if let error {
            Log.debug("\(clientAddress): \(error)")
        }
        retire()
    }

    // MARK: Ending

    /// Everything for the client is queued: it is flushed, then the socket is half-closed and read
    /// until the client closes (a refused request, a response without keep-alive).
    func finishClient() {
        client.finish(awaitingOtherSide: true)
        retire()
    }

    /// Tears the connection down now: closes the socket and frees everything it holds.
    func destroy() {
        guard state != .closed else { return }
        if let bridge {
            bridge.abort()
        } else {
            settleBodyBytes()
            client.close()
        }
        retire()
    }

    /// The bridge ended the WebSocket; its endpoints finish on their own.
    func bridgeEnded() {
        retire()
    }

    /// Shutdown: connections not bridged yet are closed (a client waiting for its peer gets 503);
    /// open ones get Close 1001 and a chance to answer.
    func shutdown() {
        switch state {
        case .handshake where client.inbox.count > 0:
            // Part of a request is in: answered 503 once the rest is, within the shutdown timeout,
            // rather than cut off without a word. (An idle kept-alive connection has nothing.)
            if deadline == 0 || deadline > server.now + server.limits.shutdownTimeoutMilliseconds {
                deadline = server.now + server.limits.shutdownTimeoutMilliseconds
            }
            processHandshake()
        case .handshake, .responding:
            destroy()
        case .authenticating, .queryingBackend, .connectingPeer:
            refuse(.init(.serviceUnavailable, "server shutting down"))
        case .open:
            bridge?.initiateClose(.goingAway, reason: "server shutting down")
        case .closed:
            break
        }
    }

    /// The connection is done: logged, its pending work cancelled, and removed from the server.
    private func retire() {
        guard state != .closed else { return }
        state = .closed
        // After a kept-alive response, a connection closing before its next request has nothing to log.
        if requestsServed == 0 || record.status != 0 { writeAccessLog() }
        server.metrics.connectionEnded(record)
        if requestsServed == 0 && !requestStarted && record.status == 0 && !endReported {
            // Connected and never asked for anything: counted, and logged at info only in the
            // sweep's summary. It keeps its access-log line ("-" 0).
            Log.debug("\(clientAddress): closed without a request\(timedOutIdle ? " (handshake timeout)" : "")")
            server.quietClosures.add()
            server.metrics.withoutRequest += 1
        }
        if client.owner === self { client.close() }
        if let limitKey { server.clientLimits.connectionEnded(limitKey) }
        limitKey = nil
        if let pendingQuery { server.queries.cancel(pendingQuery) }
        pendingQuery = nil
        if let pendingPasswordCheck { server.passwordChecks?.cancel(pendingPasswordCheck) }
        pendingPasswordCheck = nil
        connector?.cancel()
        connector = nil
        securingPeer?.close()
        securingPeer = nil
        if let program { server.programs.release(program, now: server.now) }
        joiningShared?.cancelJoin(self)
        joiningShared = nil
        program = nil
        fileBody = nil
        framer = nil
        server.connectionClosed(self)
    }

    /// The access-log line for the request (or connection) that just ended.
    func writeAccessLog() {
        guard let accessLog = server.accessLog else { return }
        settleBodyBytes()
        accessLog.write(record.line(client: clientAddress, forwarded: loggedClient, now: server.now))
    }

    /// `bytes=` counts the body bytes of a plain response that reached the socket: what is still
    /// queued in the gateway (the response head first, then the body) is taken off.
    private func settleBodyBytes() {
        guard let offered = record.bodyBytes, client.queuedBytes > 0 else { return }
        record.bodyBytes = max(0, offered - client.queuedBytes)
    }

    func becomeOpen(_ bridge: Bridge) {
        state = .open
        deadline = 0
        self.bridge = bridge
    }

    func setState(_ new: State) {
        state = new
    }

    /// A trusted load balancer's PROXY header arrived (or did not, on a connection of its own).
    func proxyHeaderRead(_ result: ProxyProtocolParse) {
        fromBalancer = true
        switch result {
        case .invalid(let why):
            refuse(.init(.badRequest, "malformed PROXY protocol header: \(why)"))
        case .header(let header, _):
            guard let source = header.source else { return }  // LOCAL, UNKNOWN: the balancer's own check
            Log.trace("\(clientAddress): PROXY v\(header.version) for \(source)")
            clientAddress = source.description
            client4or6 = source
            proxiedDestination = header.destination
            if !server.admitClient(self) { refuseTooMany() }
        case .absent, .incomplete:
            break
        }
    }

    /// 429 for an address over `max-connections-per-client`.
    func refuseTooMany() {
        refuse(.init(.tooManyRequests, "too many connections from this address (max-connections-per-client = \(server.clientLimits.maxConnections))"),
               logged: server.clientLimits.shouldLog(ClientLimits.Key(client4or6?.ip)!, now: server.now))
    }
}
