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
            refuse(rejection)
        case .plain(let request, let consumed):
            client.inbox.consume(consumed)
            record.request = "\(request.method) \(request.target)"
            loggedClient = ForwardedClient.address(direct: clientAddress, trusted: server.trustedProxies, headers: request.headers)
            servePlain(request)
        case .complete(let request, let consumed):
            client.inbox.consume(consumed)
            record.request = "GET \(request.target)"
            loggedClient = ForwardedClient.address(direct: clientAddress, trusted: server.trustedProxies, headers: request.headers)
            if let rejection = checkOrigin(request) {
                refuse(rejection)
                return
            }
            switch server.backend.query(request) {
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
                    connectPeer(choice)
                }
            }
        }
    }

    /// Sends the 101 and hands the client to a bridge with its peer.
    func completeUpgrade(peer: Bridge.Peer) {
        guard let (key, subprotocol, compression) = pendingUpgrade else { return }
        pendingUpgrade = nil
        record.status = 101
        let response = HandshakeResponse.accept(key: key, subprotocol: subprotocol, extensions: compression?.parameters.responseHeader)
        response.withUnsafeBytes { client.send($0) }
        let bridge = Bridge(connection: self, client: client, peer: peer, framer: framer, compression: compression)
        bridge.startRecording(recordChoice)
        bridge.lineMode = lineEnd.map { LineMode(end: $0) }
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

    /// Answers with an HTTP error and closes (one log line per refused connection).
    func refuse(_ rejection: HandshakeRejection) {
        Log.info("\(clientAddress): refused with \(rejection.status.rawValue): \(rejection.reason)")
        record.status = rejection.status.rawValue
        let response = HandshakeResponse.reject(rejection)
        response.withUnsafeBytes { client.send($0) }
        finishClient()
    }
}
