/// The opening handshake: parse, ask the backend, answer 101 or refuse.
extension Connection {
    func processHandshake() {
        switch handshakeParser.parse(UnsafeRawBufferPointer(inbox.readable)) {
        case .incomplete:
            return
        case .rejected(let rejection):
            refuse(rejection)
        case .complete(let request, let consumed):
            inbox.consume(consumed)
            switch server.backend.query(request) {
            case .refuse(let rejection):
                refuse(rejection)
            case .peer(let choice):
                Log.debug("\(clientAddress): \(request.target) → \(choice.address)")
                if choice.address == .echo {
                    isEcho = true
                    completeUpgrade(key: request.key, subprotocol: choice.subprotocol)
                } else {
                    connectPeer(choice, key: request.key)
                }
            }
        }
    }

    /// Sends the 101 and starts bridging.
    func completeUpgrade(key: String, subprotocol: String?) {
        let response = HandshakeResponse.accept(key: key, subprotocol: subprotocol)
        response.withUnsafeBytes { sendRaw($0) }
        guard state == .handshake || state == .connectingPeer else { return }
        state = .open
        deadline = 0
        updateInterest()
        // Frames may have arrived right behind the request.
        processFrames()
    }

    /// Answers with an HTTP error and closes (one log line per refused connection).
    func refuse(_ rejection: HandshakeRejection) {
        Log.info("\(clientAddress): refused with \(rejection.status.rawValue): \(rejection.reason)")
        let response = HandshakeResponse.reject(rejection)
        response.withUnsafeBytes { sendRaw($0) }
        startDraining()
    }
}
