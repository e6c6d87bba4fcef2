import CLinux
import Glibc

/// The open connection: client frames in, protocol rules applied, payload handed to the peer.
extension Connection {
    func processFrames() {
        while (state == .open || state == .closing) && !readPaused {
            let input = inbox.readable
            guard input.count > 0 else { break }
            let (consumed, event) = reader.next(input)
            // Event payloads point into the inbox: act on them before consuming.
            let more = handle(event)
            guard state != .closed else { return }
            if state == .draining || state == .lingering {
                inbox.removeAll()
                return
            }
            inbox.consume(consumed)
            if !more { break }
        }
    }

    /// Carries out one protocol event; false when the reader needs more bytes.
    private func handle(_ event: WebSocketReader.Event) -> Bool {
        switch event {
        case .needMore:
            return false
        case .data(let payload, let opcode, let start, let end):
            if !closeSent { deliverToPeer(UnsafeRawBufferPointer(payload), opcode: opcode, messageStart: start, messageEnd: end) }
        case .ping(let payload):
            if !closeSent { sendFrame(.pong, payload) }
        case .pong:
            break
        case .close(let code, _):
            closeReceived = true
            if record.closedBy == nil {
                record.closedBy = "client"
                record.closeCode = code ?? 1005
            }
            if !closeSent {
                // §5.5.1: answer with a Close, echoing the status code received.
                sendClose(code.map { CloseCode($0) } ?? .normalClosure, last: true)
            }
            startDraining()
        case .violation(let code, let why):
            Log.info("\(clientAddress): \(why); closing with \(code)")
            if !closeSent { sendClose(code, last: true) }
            startDraining()
        }
        return true
    }

    private func deliverToPeer(_ payload: UnsafeRawBufferPointer, opcode: Opcode, messageStart: Bool, messageEnd: Bool) {
        lastData = server.now
        record.bytesIn += payload.count
        if messageEnd { record.messagesIn += 1 }
        if isEcho {
            if let message = echo.receive(payload, messageStart: messageStart, messageEnd: messageEnd) {
                sendFrame(opcode, message)
                echo.messageSent()
            }
            if outbox.count > server.limits.outboxHighWater { readPaused = true }
        } else if let peer = peerSocket {
            deliverToSocket(peer, payload, messageEnd: messageEnd)
        }
    }

    /// Starts a server-initiated close (peer gone, shutdown, keepalive): send Close, wait for the client's.
    func initiateClose(_ code: CloseCode, reason: String = "", by who: String = "server") {
        guard state == .open else { return }
        if record.closedBy == nil { record.closedBy = who }
        sendClose(code, reason: reason)
        guard state == .open else { return }  // the write failed and tore the connection down
        state = .closing
        deadline = server.now + server.limits.closeTimeoutMilliseconds
    }

    /// No more frames in either direction: flush what is queued, then half-close.
    func startDraining() {
        guard state != .closed, state != .draining, state != .lingering else { return }
        state = .draining
        deadline = server.now + server.limits.closeTimeoutMilliseconds
        echo.messageSent()
        inbox.removeAll()
        detachPeer()
        if outbox.isEmpty { finishDraining() } else { updateInterest() }
    }

    /// Everything was sent: send FIN and read until the client closes (or the deadline passes).
    /// After a complete close handshake with nothing unread, close() sends the same FIN behind the
    /// queued bytes and nothing can follow from the client, so there is nothing to wait for.
    func finishDraining() {
        if clientFinished || (closeReceived && SocketOptions.unreadBytes(fd) == 0) {
            tls?.sendCloseNotify()
            destroy()
            return
        }
        tls?.sendCloseNotify()
        shutdown(fd, Int32(SHUT_WR))
        state = .lingering
        readPaused = false
        updateInterest()
    }
}
