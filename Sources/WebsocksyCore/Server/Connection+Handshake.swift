/// The opening handshake: parse, ask the backend, answer 101 or refuse.
extension Connection {
    func processHandshake() {
        if requestsServed == 0, server.tls.serverCredentials == nil, client.inbox.readable.first == 0x16 {
            // A TLS ClientHello (content type 22) where an HTTP request belongs: wss:// to a port
            // without a certificate. Refused at once rather than after the handshake timeout; the
            // plain-text answer makes TLS clients report a "wrong version number".
            return refuse(.init(.badRequest, "TLS handshake on a port without TLS (wss:// to a ws:// gateway?)"))
        }
        switch handshakeParser.parse(UnsafeRawBufferPointer(client.inbox.readable)) {
        case .incomplete:
            return
        case .rejected(let rejection):
            if case .header = ProxyProtocol.parse(UnsafeRawBufferPointer(client.inbox.readable)) {
                return refuse(.init(.badRequest, proxiedDestination != nil || fromBalancer
                    ? "a second PROXY protocol header" : "PROXY protocol header from a source not in proxy-protocol-from"))
            }
            refuse(rejection)
        case .plain where server.isStopping, .complete where server.isStopping:
            refuse(.init(.serviceUnavailable, "server shutting down"))
        case .plain(let request, let consumed):
            client.inbox.consume(consumed)
            record.request = "\(request.method) \(request.target)"
            loggedClient = ForwardedClient.address(direct: clientAddress, trusted: server.trustedProxies, headers: request.headers)
            authenticatePlain(request)
        case .complete(var request, let consumed):
            client.inbox.consume(consumed)
            request.clientIP = client4or6.map { ForwardedClient.hostPart($0.description) }
            // Out of the request before it is logged: a token in an access log is a stolen login.
            let token = server.auth?.takeToken(&request)
            record.request = "GET \(request.target)"
            loggedClient = ForwardedClient.address(direct: clientAddress, trusted: server.trustedProxies, headers: request.headers)
            if let rejection = checkOrigin(request) {
                refuse(rejection)
                return
            }
            if let key = ClientLimits.Key(client4or6?.ip), let retryAfter = server.clientLimits.takeUpgrade(key, now: server.now) {
                let limits = server.clientLimits
                refuse(.init(.tooManyRequests, "upgrade rate exceeded (upgrade-rate = \(limits.rate)/s, burst \(limits.burst))",
                             retryAfter: retryAfter), logged: limits.shouldLog(key, now: server.now))
                return
            }
            authenticateUpgrade(request, token: token)
        }
    }

    /// Asks the backend for the peer (after authentication, when it is configured).
    func queryBackend(_ request: HandshakeRequest) {
        setState(.queryingBackend)
        deadline = server.now + server.limits.backendTimeoutMilliseconds
        // While the backend thinks, the client is still read, so that one that leaves cancels
        // its query — but only a little: what it sends before the 101 waits in the inbox.
        client.inboxLimit = client.inbox.count + Self.inboxWhileWaiting
        pendingQuery = server.queries.query(request) { [unowned self] answer in self.backendAnswered(request, answer) }
    }

    /// Bytes a client may send behind its request while a backend query or a password check runs.
    static let inboxWhileWaiting = 16 << 10

    /// The backend's choice, at once or from its query thread (never after the connection ended:
    /// ending cancels the query).
    private func backendAnswered(_ request: HandshakeRequest, _ answer: BackendAnswer) {
        pendingQuery = nil
        client.inboxLimit = Int.max
        switch answer {
        case .refuse(let rejection):
            refuse(rejection)
        case .peer(let choice):
            Log.debug("\(clientAddress): \(request.target) → \(choice.address)")
            record.peer = choice.address.description
            record.subprotocol = choice.subprotocol
            recordChoice = choice.record
            pendingUpgrade = (request.key, choice.subprotocol, negotiateCompression(request, choice.compression))
            if choice.address == .echo {
                completeUpgrade(peer: .echo)
            } else {
                connectPeer(choice, for: request)
            }
        }
    }

    /// Sends the 101 and hands the client to a bridge with its peer.
    func completeUpgrade(peer: Bridge.Peer) {
        guard let (key, subprotocol, compression) = pendingUpgrade else { return }
        pendingUpgrade = nil
        record.status = 101
        server.metrics.upgrades += 1
        if peerConnectStarted != 0 { server.metrics.peerConnect.observe(microseconds: Int(MonotonicClock.nowMicroseconds() - peerConnectStarted)) }
        let response = HandshakeResponse.accept(key: key, subprotocol: subprotocol, extensions: compression?.parameters.responseHeader)
        response.withUnsafeBytes { client.send($0) }
        let bridge = Bridge(connection: self, client: client, peer: peer, framer: framer, compression: compression)
        bridge.startRecording(recordChoice)
        bridge.lineMode = lineEnd.map { LineMode(end: $0) }
        if let sharing { bridge.sharing = sharing }
        becomeOpen(bridge)
        client.resumeReading()
        // Frames may have arrived right behind the request.
        bridge.processClientInput()
    }

    /// permessage-deflate when this route allows it and the client offers it acceptably.
    private func negotiateCompression(_ request: HandshakeRequest, _ routeChoice: CompressionChoice?) -> PerMessageDeflate? {
        let pool = server.compression
        let choice = routeChoice ?? CompressionChoice(enabled: pool.settings.enabled, minimumSize: pool.settings.minimumSize)
        guard choice.enabled else { return nil }
        let offers = request.headers.values("Sec-WebSocket-Extensions")
        guard !offers.isEmpty,
              let agreed = DeflateParameters.negotiate(ExtensionOffer.parse(offers), settings: pool.settings) else { return nil }
        return PerMessageDeflate(parameters: agreed, pool: pool, minimumSize: choice.minimumSize)
    }

    /// Cross-site WebSocket hijacking defence: with `origin` configured, only listed pages may connect.
    /// A request without an Origin (not from a browser) is refused too: the list is an allow-list.
    private func checkOrigin(_ request: HandshakeRequest) -> HandshakeRejection? {
        let allowed = server.origins
        guard !allowed.isEmpty else { return nil }
        guard let origin = request.header("Origin") else {
            return .init(.forbidden, "no Origin header; this gateway admits listed origins only")
        }
        var normalized = origin.lowercased()
        if normalized.hasSuffix("/") { normalized.removeLast() }
        return allowed.contains(normalized) ? nil : .init(.forbidden, "origin \(LogText.capped(origin)) is not allowed")
    }

    /// Answers with an HTTP error and closes (one log line per refused connection, unless the
    /// caller rate-limits the lines: per-client limits log one per address per interval).
    func refuse(_ rejection: HandshakeRejection, logged: Bool = true) {
        if logged { Log.info("\(clientAddress): refused with \(rejection.status.rawValue): \(rejection.reason)") }
        server.metrics.refused(rejection.status.rawValue)
        record.status = rejection.status.rawValue
        let response = HandshakeResponse.reject(rejection)
        response.withUnsafeBytes { client.send($0) }
        finishClient()
    }
}
