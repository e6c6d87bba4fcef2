/// The connection's socket peer: connecting before the upgrade, bytes both ways, ending.
extension Connection {
    /// Starts connecting; the 101 goes out once the peer is connected (websocksy does the same).
    func connectPeer(_ choice: PeerChoice, key: String) {
        guard let framing = choice.framing else {
            refuse(.init(.internalServerError, "no framing function for the peer"))
            return
        }
        framer = PeerFramer(function: framing, config: choice.framingConfig, datagram: choice.address.isDatagram, client: clientAddress)
        pendingUpgrade = (key, choice.subprotocol)
        state = .connectingPeer
        deadline = 0
        let socket = PeerSocket(server: server, owner: self, address: choice.address)
        peerSocket = socket
        socket.start()
        // Stop reading the client only if the connect did not complete at once (loopback usually does).
        if state == .connectingPeer { updateInterest() }
    }

    func peerConnected() {
        guard state == .connectingPeer, let (key, subprotocol) = pendingUpgrade else { return }
        pendingUpgrade = nil
        completeUpgrade(key: key, subprotocol: subprotocol)
    }

    func peerFailed(_ reason: String) {
        peerSocket = nil
        switch state {
        case .connectingPeer:
            refuse(.init(.badGateway, "peer unreachable: \(reason)"))
        case .open:
            Log.info("\(clientAddress): peer error: \(reason); closing with 1011")
            initiateClose(.internalError, reason: "peer error", by: "peer")
        default:
            break
        }
    }

    func peerReceived(lastRead: Int) {
        lastData = server.now
        frameFromPeer(lastRead: lastRead)
    }

    /// The peer closed its side: what it sent is framed and delivered, then the client gets 1000.
    func peerEnded() {
        frameFromPeer(lastRead: 0)
        guard state == .open, let peer = peerSocket else { return }
        let rest = peer.inbox.readable
        if rest.count > 0 {
            // Bytes the framing function never framed: delivered or dropped by the framer's rule.
            let bytes = UnsafeRawBufferPointer(rest)
            if let opcode = framer?.remainderAtClose(bytes) { sendFrame(opcode, bytes) }
            peer.inbox.removeAll()
        }
        Log.debug("\(clientAddress): peer closed the connection")
        initiateClose(.normalClosure, by: "peer")
        detachPeer()
    }

    func peerBufferFull() {
        Log.info("\(clientAddress): the framing function left \(server.limits.peerBufferBytes) bytes from the peer unframed; closing with 1009")
        initiateClose(.messageTooBig, reason: "peer data not framed")
        detachPeer()
    }

    /// The peer's queue drained: client reads held back for it may resume.
    func peerDrained() {
        resumeClientReadsIfPossible()
    }

    /// Runs the framing function over what the peer sent and sends each message it cuts.
    private func frameFromPeer(lastRead: Int) {
        guard let peer = peerSocket, let framer else { return }
        var last = lastRead
        while state == .open {
            let data = peer.inbox.readable
            guard data.count > 0 else { break }
            switch framer.next(data, lastRead: min(last, data.count)) {
            case .needMore:
                if data.count >= server.limits.peerBufferBytes { peerBufferFull() }
                return finishFraming(peer)
            case .frame(let length, let opcode):
                if let opcode {
                    sendFrame(opcode, UnsafeRawBufferPointer(rebasing: data[0..<length]))
                    // A failed write tears the connection down and detaches (and empties) the peer.
                    guard state != .closed, peerSocket === peer else { return }
                }
                peer.inbox.consume(length)
                last = max(0, last - length)
            case .failed(let why):
                Log.info("\(clientAddress): \(why); closing with 1011")
                initiateClose(.internalError, reason: "framing error")
                detachPeer()
                return
            }
        }
        finishFraming(peer)
    }

    /// Backpressure peer → client: stop reading the peer while the client's queue is over its mark.
    private func finishFraming(_ peer: PeerSocket) {
        if outbox.count > server.limits.outboxHighWater { peer.pauseReading() }
    }

    /// Client payload to a socket peer: streamed as it arrives, or one datagram per message.
    func deliverToSocket(_ peer: PeerSocket, _ payload: UnsafeRawBufferPointer, messageEnd: Bool) {
        if peer.isDatagram {
            guard peer.appendDatagram(payload, messageEnd: messageEnd) else {
                Log.info("\(clientAddress): message too large for one datagram; closing with 1009")
                sendClose(.messageTooBig, reason: "message too large for a datagram")
                startDraining()
                return
            }
        } else {
            peer.write(payload)
        }
        if peer.queuedBytes > server.limits.outboxHighWater { readPaused = true }
    }

    /// Hands the peer over to finish on its own (flush, half-close, wait for its close).
    func detachPeer() {
        guard let peer = peerSocket else { return }
        peerSocket = nil
        peer.finish()
        server.adoptDetached(peer)
    }

    /// Resumes reading the client once neither queue it feeds is over its low-water mark.
    func resumeClientReadsIfPossible() {
        guard readPaused, state != .lingering, state != .closed else { return }
        guard outbox.count <= server.limits.outboxLowWater, (peerSocket?.queuedBytes ?? 0) <= server.limits.outboxLowWater else { return }
        readPaused = false
        processInbox()
        guard state != .closed else { return }
        updateInterest()
        // Decrypted bytes GnuTLS already holds would never be announced by epoll.
        if tls?.hasPendingData == true { readFromClient() }
    }
}
