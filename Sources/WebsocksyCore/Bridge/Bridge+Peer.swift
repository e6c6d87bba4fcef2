/// The peer's side of the bridge: its bytes framed into messages for the client, its end and its
/// failures; datagrams assembled for it; the buffer budget for assembled messages.
extension Bridge: DatagramEndpointOwner, BudgetHolder {
    // MARK: Peer → client

    func peerReceived(count: Int) {
        lastData = server.now
        let outcome: FramingOutcome
        switch peer {
        case .stream(let endpoint): outcome = frame(&endpoint.inbox, lastRead: count)
        case .datagram(let endpoint): outcome = frame(&endpoint.inbox, lastRead: count)
        case .shared, .echo, .gone: return
        }
        framed(outcome)
    }

    private enum FramingOutcome {
        case framed
        case bufferFull
        case failed(String)
    }

    /// Acts on the end of a framing pass (outside it: ending the peer empties its inbox).
    private func framed(_ outcome: FramingOutcome) {
        switch outcome {
        case .framed:
            // Backpressure peer → client: stop reading the peer while the client's queue is full.
            if client.queuedBytes > server.limits.outboxHighWater { pausePeer() }
        case .bufferFull:
            Log.info("\(clientAddress): the framing function left \(server.limits.peerBufferBytes) bytes from the peer unframed; closing with 1009")
            initiateClose(.messageTooBig, reason: "peer data not framed")
            finishPeer()
        case .failed(let why):
            Log.info("\(clientAddress): \(why); closing with 1011")
            initiateClose(.internalError, reason: "framing error")
            finishPeer()
        }
    }

    /// Runs the framing function over what the peer sent and sends each message it cuts. It
    /// touches only `inbox` and the client, so the caller may hold the peer's inbox while it runs.
    private func frame(_ inbox: inout ByteBuffer, lastRead: Int) -> FramingOutcome {
        guard let framer else { return .framed }
        var last = lastRead
        while session.canSend {
            let data = inbox.readable
            guard data.count > 0 else { break }
            switch framer.next(data, lastRead: min(last, data.count)) {
            case .needMore:
                return data.count >= server.limits.peerBufferBytes ? .bufferFull : .framed
            case .frame(let length, let opcode):
                if let opcode { sendFrame(opcode, peerMessage(UnsafeRawBufferPointer(rebasing: data[0..<length]))) }
                inbox.consume(length)
                last = max(0, last - length)
            case .failed(let why):
                return .failed(why)
            }
        }
        return .framed
    }

    /// A message the framing cut, as the client gets it: in text mode without its line end.
    private func peerMessage(_ message: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        lineMode?.stripped(message) ?? message
    }

    /// The peer finished sending: what it sent is framed and delivered, the client gets Close
    /// 1000, and the peer keeps receiving client data (it may only have half-closed) until the
    /// client's Close ends the connection.
    func peerEnded() {
        switch peer {
        case .stream(let endpoint): deliverRemainder(&endpoint.inbox)
        case .datagram, .shared, .echo, .gone: break
        }
        if programOutputEnded() { return }
        Log.debug("\(clientAddress): peer closed the connection")
        initiateClose(.normalClosure, by: "peer")
    }

    /// An exec:// program's stdout ended: the WebSocket ends with the program's exit, with 1000
    /// or 1011 by its status (now, or once it has exited). False for other peers.
    private func programOutputEnded() -> Bool {
        guard let program = connection.program else { return false }
        if let status = program.exitStatus {
            closeForProgram(status)
        } else {
            awaitingProgramExit = true
        }
        return true
    }

    /// The exec:// program exited; once its stdout has ended too, so does the WebSocket.
    func programExited(_ status: Int32) {
        if awaitingProgramExit { return closeForProgram(status) }
        programExit = (status, server.now)
    }

    func closeForProgram(_ status: Int32) {
        awaitingProgramExit = false
        programExit = nil
        if RunningProgram.succeeded(status) {
            initiateClose(.normalClosure, by: "peer")
        } else {
            initiateClose(.internalError, reason: "program ended with \(RunningProgram.describe(status))", by: "peer")
        }
    }

    private func deliverRemainder(_ inbox: inout ByteBuffer) {
        guard case .framed = frame(&inbox, lastRead: 0), session.canSend else { return }
        let rest = UnsafeRawBufferPointer(inbox.readable)
        // The framing function is the authority on what a message is: see `remainderAtClose`.
        if rest.count > 0, let opcode = framer?.remainderAtClose(rest) { sendFrame(opcode, peerMessage(rest)) }
        inbox.removeAll()
    }

    /// The peer's socket failed (1011) or was closed without a FIN first (1000).
    func peerClosed(error: IOFailure?) {
        peer = .gone
        balance()
        if error == nil, programOutputEnded() { return }
        if let error, session.canSend {
            Log.info("\(clientAddress): peer error: \(error); closing with 1011")
            initiateClose(.internalError, reason: "peer error", by: "peer")
        } else {
            initiateClose(.normalClosure, by: "peer")
        }
    }

    // MARK: Datagram peers

    func deliverDatagram(_ endpoint: DatagramEndpoint, _ payload: UnsafeRawBufferPointer, messageStart: Bool, messageEnd: Bool) {
        if case .udp = connection.peerAddress, assembler.count + payload.count > DatagramEndpoint.udpPayloadLimit {
            return datagramTooLargeForPeer()
        }
        // Assembling can spend the buffer budget and end this very connection.
        guard let message = assemble(payload, messageStart, messageEnd), !isEnded else { return }
        let sent = endpoint.send(message)
        releaseAssembly()
        if !sent { datagramTooLargeForPeer() }
    }

    private func datagramTooLargeForPeer() {
        Log.info("\(clientAddress): message too large for one datagram; closing with 1009")
        failConnection(.messageTooBig, reason: "message too large for a datagram")
    }

    func datagramReceived(_ endpoint: DatagramEndpoint, count: Int) {
        client.cork()
        peerReceived(count: count)
        client.uncork()
        if !session.canSend {
            // After our Close nothing reaches the client: datagrams are dropped, not piled up
            // while the client takes its time to answer, and the socket is no longer read.
            endpoint.inbox.removeAll()
            endpoint.pauseReading()
        }
    }

    func datagramTooLarge(_ endpoint: DatagramEndpoint, size: Int) {
        Log.info("\(clientAddress): a \(size)-byte datagram from the peer exceeds \(endpoint.maxDatagram) bytes; closing with 1009")
        initiateClose(.messageTooBig, reason: "datagram too large")
        finishPeer()
    }

    func datagramDrained(_ endpoint: DatagramEndpoint) {
        balance()
    }

    func datagramClosed(_ endpoint: DatagramEndpoint, error: IOFailure) {
        peerClosed(error: error)
    }

    // MARK: Buffer budget

    /// Adds a chunk to the message being assembled, accounting its bytes in the process-wide budget.
    func assemble(_ payload: UnsafeRawBufferPointer, _ messageStart: Bool, _ messageEnd: Bool) -> UnsafeRawBufferPointer? {
        let before = assembler.count
        let message = assembler.receive(payload, messageStart: messageStart, messageEnd: messageEnd)
        let grown = assembler.count - before
        if grown > 0 { server.budget.add(grown, by: self) }
        return message
    }

    func releaseAssembly() {
        let held = assembler.reset()
        if held > 0 { server.budget.remove(held) }
    }

    /// Charges the part of an echo reply the socket did not take beyond the high-water mark.
    func chargeUnreadReply() {
        let over = client.queuedBytes - server.limits.outboxHighWater
        guard over > replyCharge else { return }
        let added = over - replyCharge
        replyCharge = over
        server.budget.add(added, by: self)
    }

    func releaseReplyCharge() {
        guard replyCharge > 0 else { return }
        let held = replyCharge
        replyCharge = 0
        server.budget.remove(held)
    }

    /// Bytes this connection holds against the buffer budget.
    var heldBytes: Int { assembler.count + replyCharge }

    /// Over budget and holding the most: this connection gives its memory back, now.
    func evictForMemory() {
        let held = "\(clientAddress): holds \(heldBytes) bytes of unfinished or unread message with the buffer budget (\(server.limits.bufferMemoryBytes) bytes) spent"
        guard replyCharge == 0 else {
            // The bytes are a reply the client does not read: a Close would only queue behind
            // them, keeping the memory for the close timeout. Reset instead.
            Log.info("\(held); resetting the connection")
            return abort()
        }
        Log.info("\(held); closing with 1009")
        failConnection(.messageTooBig, reason: "out of buffer memory")
    }
}
