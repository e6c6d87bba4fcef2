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
                upgrade(request, to: choice)
            }
        }
    }

    private func upgrade(_ request: HandshakeRequest, to choice: PeerChoice) {
        peer = choice.address
        let response = HandshakeResponse.accept(key: request.key, subprotocol: choice.subprotocol)
        response.withUnsafeBytes { sendRaw($0) }
        guard state == .handshake else { return }
        state = .open
        deadline = 0
        Log.debug("\(clientAddress): \(request.target) upgraded, peer \(choice.address)")
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
