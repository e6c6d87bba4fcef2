import Glibc

/// An open WebSocket and its peer, from the 101 to the end of the close handshake.
///
/// Client bytes go through the `WebSocketSession`, whose actions the bridge carries out; payload
/// goes to the peer (a stream endpoint, a datagram endpoint, or the built-in echo), and what the
/// peer sends is cut into messages by the framing function and sent to the client. One rule keeps
/// memory bounded both ways: a queue towards one side over its high-water mark pauses reading
/// from the other side (and the client's own replies — pongs, Close — count towards its queue).
final class Bridge: StreamEndpointOwner {
    enum Peer {
        case echo
        case stream(StreamEndpoint)
        case datagram(DatagramEndpoint)
        /// One peer for many clients (`share`, FIFOs, standard input).
        case shared(SharedPeer)
        case gone
    }

    /// The connection owns the bridge and outlives it (until the end of the loop turn it ends in),
    /// and the server outlives both: no reference-count check per access on the hot path.
    unowned(unsafe) let connection: Connection
    unowned(unsafe) let server: Server
    let client: StreamEndpoint
    var session: WebSocketSession
    var peer: Peer
    /// The route's sharing mode and slow-client policy, for a shared peer.
    var sharing = SharingSettings()
    /// An exec:// program's stdout has ended and its exit status is awaited (`programExited`).
    var awaitingProgramExit = false
    /// The program exited while something it started still holds its stdout: the WebSocket ends
    /// at the next sweep after this time anyway (what was written meanwhile is delivered).
    var programExit: (status: Int32, at: Int64)?
    let framer: PeerFramer?
    /// Echo and datagram peers take whole messages; fragmented ones are assembled here.
    var assembler = MessageAssembler()
    private(set) var isEnded = false
    /// Bytes of an echo reply beyond the high-water mark that the client has not read: an echoed
    /// message can be `max-message` long, so they count against the budget like assembled bytes.
    var replyCharge = 0
    var lastReceive: Int64
    /// Last data message either way, for `idle-timeout`.
    var lastData: Int64
    var pingSentAt: Int64?
    /// When a close we started stops waiting for the client's Close (0 = no such close).
    var closeDeadline: Int64 = 0
    /// The session recording (`record`), if this connection is recorded: see `Bridge+Recording.swift`.
    var recording: Recording?
    /// Text mode towards a line-based stream peer (wsgw's): line ends added and removed.
    var lineMode: LineMode?

    init(connection: Connection, client: StreamEndpoint, peer: Peer, framer: PeerFramer?, compression: PerMessageDeflate?) {
        self.connection = connection
        self.server = connection.server
        self.client = client
        self.peer = peer
        self.framer = framer
        self.session = WebSocketSession(maxMessageSize: connection.server.limits.maxMessage, compression: compression)
        self.lastReceive = connection.server.now
        self.lastData = connection.server.now
        client.owner = self
        switch peer {
        case .stream(let endpoint): endpoint.owner = self
        case .datagram(let endpoint): endpoint.owner = self
        case .shared(let shared): shared.attach(self)
        case .echo, .gone: break
        }
    }

    var clientAddress: String { connection.clientAddress }

    // MARK: Client → peer

    /// Payload handed on per wake-up at most. The read budget bounds what one wake-up reads, but
    /// compressed input inflates up to a thousandfold: past this the rest waits for the next turn.
    static let deliveredPerTurn = 1 << 20
    /// Client input was left for the next turn (`deliveredPerTurn`).
    var inputDeferred = false

    /// Decodes what the client sent and acts on it, until the bytes run out, a queue this client
    /// feeds is over its high-water mark, or this turn's share is spent (the rest waits in the inbox).
    func processClientInput() {
        var delivered = 0
        while !isEnded && !client.isReadPaused {
            let input = client.inbox.readable
            guard input.count > 0 else { return }
            let (consumed, action) = session.next(input)
            if case .deliver(let payload, _, _, _) = action { delivered += payload.count }
            // Action payloads point into the inbox: act before consuming.
            let decoded = perform(action)
            guard !isEnded else { return }
            client.inbox.consume(consumed)
            guard decoded else { return }
            if clientFeedsAreFull {
                client.pauseReading()
            } else if delivered > Self.deliveredPerTurn {
                inputDeferred = true
                return client.deferInbox()
            }
        }
    }

    /// Carries out one session action; false when the session needs more bytes.
    private func perform(_ action: WebSocketSession.Action) -> Bool {
        switch action {
        case .needMore:
            return false
        case .deliver(let payload, let opcode, let start, let end):
            deliver(UnsafeRawBufferPointer(payload), opcode: opcode, messageStart: start, messageEnd: end)
        case .reply(let opcode, let payload):
            sendFrame(opcode, payload)
        case .none:
            break
        case .closeReceived(let code, let reply):
            noteClose(code ?? 1005, by: "client")
            // §5.5.1: answer with a Close echoing the status code; the FIN follows at once.
            writeClose(reply, last: true)
            end()
        case .closeCompleted(let code):
            noteClose(code ?? 1005, by: "client")
            end()
        case .fail(let code, let why, let sendClose):
            Log.info("\(clientAddress): \(why); closing with \(code)")
            if sendClose { writeClose(code, last: true) }
            end()
        }
        return true
    }

    private func deliver(_ payload: UnsafeRawBufferPointer, opcode: Opcode, messageStart: Bool, messageEnd: Bool) {
        lastData = server.now
        connection.record.bytesIn += payload.count
        if messageEnd { connection.record.messagesIn += 1 }
        if let recording { recording.clientChunk(payload, opcode: opcode, messageStart: messageStart, messageEnd: messageEnd) }
        switch peer {
        case .stream(let endpoint):
            endpoint.send(payload)
            if lineMode != nil {
                lineMode!.observe(payload, messageStart: messageStart)
                if messageEnd && lineMode!.messageLacksEnd { lineMode!.end.withUnsafeBytes { endpoint.send($0) } }
            }
        case .echo:
            // After our Close nothing may be sent, so there is no one to echo to.
            // Assembling can spend the buffer budget and end this very connection.
            guard session.canSend, let message = assemble(payload, messageStart, messageEnd), !isEnded else { return }
            sendFrame(opcode, message)
            releaseAssembly()
            chargeUnreadReply()
        case .datagram(let endpoint):
            deliverDatagram(endpoint, payload, messageStart: messageStart, messageEnd: messageEnd)
        case .shared(let shared):
            guard sharing.mode == .broadcast, !shared.isReadOnly else {
                if messageEnd { connection.record.dropped += 1 }
                return
            }
            // Whole messages only: fragments of two clients must not interleave at the peer.
            guard let message = assemble(payload, messageStart, messageEnd), !isEnded else { return }
            if !shared.send(message) { connection.record.dropped += 1 }
            releaseAssembly()
        case .gone:
            break
        }
    }

    /// A message of the shared peer for this client, under its `slow-client` policy.
    func sendShared(_ opcode: Opcode, _ message: UnsafeRawBufferPointer) {
        guard !isEnded, session.canSend else { return }
        let settings = sharing
        if client.queuedBytes > settings.slowClientLimit {
            switch settings.slowClient {
            case .drop:
                connection.record.dropped += 1
                return
            case .close:
                connection.record.dropped += 1
                Log.info("\(clientAddress): more than \(settings.slowClientLimit) bytes of the shared peer waiting for this client; closing with 1008")
                return failConnection(.policyViolation, reason: "too slow for the shared peer")
            case .hold:
                break  // the shared peer stops reading until this client catches up
            }
        }
        lastData = server.now
        sendFrame(opcode, message)
    }

    // MARK: To the client

    /// Sends one unfragmented frame. `last`: the connection ends right after, so the kernel may
    /// hold the frame briefly and send it in one segment with the FIN.
    func sendFrame(_ opcode: Opcode, _ payload: UnsafeRawBufferPointer, last: Bool = false) {
        if opcode == .text || opcode == .binary {
            connection.record.messagesOut += 1
            connection.record.bytesOut += payload.count
            if let recording { recording.message(opcode, payload) }
            // Control frames are never compressed (RFC 7692 §6.1); a message may go either way.
            if let compression = session.compression, compression.compress(payload, emit: { chunk, first, fin in
                writeFrame(fin: fin, compressed: first, first ? opcode : .continuation, chunk)
            }) {
                return
            }
        }
        writeFrame(fin: true, compressed: false, opcode, payload, last: last)
    }

    private func writeFrame(fin: Bool, compressed: Bool, _ opcode: Opcode, _ payload: UnsafeRawBufferPointer, last: Bool = false) {
        var header: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &header) { h in
            let size = FrameHeader.encodeServerHeader(fin: fin, compressed: compressed, opcode: opcode, length: payload.count, into: h.baseAddress!)
            client.send(UnsafeRawBufferPointer(rebasing: h[0..<size]), payload, flags: last ? Int32(MSG_MORE) : 0)
        }
    }

    /// Writes a Close frame (§5.5.1): the status code, then at most 123 bytes of reason. The
    /// session has already recorded that a Close is sent.
    private func writeClose(_ code: CloseCode, reason: String = "", last: Bool = false) {
        if connection.record.closeCode == nil {
            connection.record.closeCode = code.rawValue
            if connection.record.closedBy == nil { connection.record.closedBy = "server" }
        }
        withUnsafeTemporaryAllocation(byteCount: 125, alignment: 1) { body in
            body[0] = UInt8(code.rawValue >> 8)
            body[1] = UInt8(code.rawValue & 0xFF)
            var length = 2
            for byte in reason.utf8.prefix(123) {
                body[length] = byte
                length += 1
            }
            sendFrame(.close, UnsafeRawBufferPointer(rebasing: body[0..<length]), last: last)
        }
    }

    private func noteClose(_ code: UInt16, by who: String) {
        guard connection.record.closedBy == nil else { return }
        connection.record.closedBy = who
        connection.record.closeCode = code
    }

    // MARK: Ending

    /// Starts a close from our side (peer gone, shutdown, idle): send Close, wait for the client's.
    /// Client data that arrives meanwhile still reaches a peer that reads.
    func initiateClose(_ code: CloseCode, reason: String = "", by who: String = "server") {
        guard !isEnded, session.startClose() else { return }
        if connection.record.closedBy == nil { connection.record.closedBy = who }
        writeClose(code, reason: reason)
        closeDeadline = server.now + server.limits.closeTimeoutMilliseconds
    }

    /// Fails the connection from our side without waiting for an answer (1009, keepalive).
    func failConnection(_ code: CloseCode, reason: String) {
        guard !isEnded else { return }
        if session.startClose() { writeClose(code, reason: reason, last: true) }
        session.abandon()
        end()
    }

    /// The WebSocket is over: the client endpoint and the peer finish on their own (flush what is
    /// queued, half-close, wait for the other side), and the connection is done.
    func end() {
        guard !isEnded else { return }
        isEnded = true
        stopRecording()
        releaseAssembly()
        releaseReplyCharge()
        client.finish(awaitingOtherSide: !session.closeReceived)
        finishPeer()
        connection.bridgeEnded()
    }

    /// Ends now, without flushing towards the client (it stopped answering).
    func abort() {
        guard !isEnded else { return }
        session.abandon()
        client.close()
        end()
    }

    func finishPeer() {
        switch peer {
        case .stream(let endpoint) where connection.program != nil && endpoint.queuedBytes == 0:
            // Not drained until it stops writing (a flooding program would be read at full
            // speed for nothing): closed, so it reads EOF and its writes fail.
            endpoint.close()
        case .stream(let endpoint): endpoint.finish()
        case .datagram(let endpoint): endpoint.finish()
        case .shared(let shared): shared.detach(self)
        case .echo, .gone: break
        }
        peer = .gone
        // A client paused for the peer's queue must be read again: its Close has to be seen.
        balance()
    }

    // MARK: Backpressure

    /// Bytes queued towards the peer (the echo answers through the client's own queue).
    var peerQueuedBytes: Int {
        switch peer {
        case .stream(let endpoint): endpoint.queuedBytes
        case .datagram(let endpoint): endpoint.queuedBytes
        case .shared(let shared): shared.queuedBytes
        case .echo, .gone: 0
        }
    }

    private var clientFeedsAreFull: Bool {
        let high = server.limits.outboxHighWater
        return client.queuedBytes > high || peerQueuedBytes > high
    }

    /// The one backpressure rule, both ways: reading a side pauses while a queue it feeds is over
    /// the high-water mark, and resumes once every queue it feeds is at or below the low-water mark.
    func balance() {
        guard !isEnded else { return }
        let low = server.limits.outboxLowWater, high = server.limits.outboxHighWater
        let toClient = client.queuedBytes, toPeer = peerQueuedBytes
        if toClient <= high { releaseReplyCharge() }
        if clientFeedsAreFull {
            client.pauseReading()
        } else if toClient <= low && toPeer <= low && !inputDeferred {
            // Deferred input resumes on its own turn (`endpointResumed`): reading before the
            // inbox is worked through would let it grow.
            client.resumeReading()
        }
        if toClient > high {
            pausePeer()
        } else if toClient <= low {
            resumePeer()
        }
    }

    /// A shared peer is never paused for one client: its `slow-client` policy decides.
    func pausePeer() {
        switch peer {
        case .stream(let endpoint): endpoint.pauseReading()
        case .datagram(let endpoint): endpoint.pauseReading()
        case .shared, .echo, .gone: break
        }
    }

    private func resumePeer() {
        switch peer {
        case .stream(let endpoint): endpoint.resumeReading()
        case .datagram(let endpoint): endpoint.resumeReading()
        case .shared(let shared): shared.subscriberDrained()
        case .echo, .gone: break
        }
    }

    // MARK: Client endpoint events

    func endpointReceived(_ endpoint: StreamEndpoint, count: Int) {
        cork()
        if endpoint === client {
            lastReceive = server.now
            pingSentAt = nil
            processClientInput()
        } else {
            peerReceived(count: count)
        }
        uncork()
    }

    func endpointResumed(_ endpoint: StreamEndpoint) {
        guard endpoint === client else { return }
        if inputDeferred {
            inputDeferred = false
            balance()
        }
        cork()
        processClientInput()
        uncork()
    }

    /// Small writes both ways (pongs, tiny fragments, short framed messages) made while one read is
    /// worked through leave in one syscall per side at the end of it.
    func cork() {
        client.cork()
        if case .stream(let endpoint) = peer { endpoint.cork() }
    }

    /// Writing what was coalesced can empty a queue without a writable event, the usual moment
    /// to resume the side it paused: so the rule is applied here too.
    func uncork() {
        client.uncork()
        if case .stream(let endpoint) = peer {
            endpoint.uncork()
            if endpoint.isReadPaused { return balance() }
        }
        if client.isReadPaused { balance() }
    }

    func endpointEnded(_ endpoint: StreamEndpoint) {
        guard endpoint === client else { return peerEnded() }
        if connection.record.closedBy == nil { connection.record.closedBy = "client" }
        Log.debug("\(clientAddress): client closed the connection without a close handshake")
        session.abandon()
        end()
    }

    func endpointDrained(_ endpoint: StreamEndpoint) {
        balance()
    }

    func endpointSecured(_ endpoint: StreamEndpoint) {}

    func endpointClosed(_ endpoint: StreamEndpoint, error: IOFailure?) {
        guard endpoint === client else { return peerClosed(error: error) }
        Log.debug("\(clientAddress): \(error.map { "\($0)" } ?? "connection closed")")
        session.abandon()
        end()
    }
}
