import CWebsocksy
import Glibc

/// One peer shared by every client of a route (`share = broadcast|readonly`, and always for
/// `fifo://`, `fifo-out://` and `stdin://`): opened with its first client, framed once, each
/// message sent to every client; what clients send goes to it whole, one message at a time.
/// When it ends it is opened again a second later (a FIFO never ends: it is held open for
/// writing too; standard input ends for good). Its clients stay connected meanwhile.
///
/// A client that cannot keep up is handled by `slow-client`: its messages dropped (counted in its
/// access-log line and the metrics), the client closed with 1008, or the peer held for everyone.
/// Mode and policy belong to each client's route (`Bridge.sharing`): a read-only route and a
/// broadcast route to the same peer share it, each with its own rights.
final class SharedPeer: StreamEndpointOwner {
    enum State { case closed, opening, open, finished }

    let key: String
    let address: PeerAddress
    /// The first route's settings, for the write FIFO's bound.
    let settings: SharingSettings
    unowned let server: Server
    /// Cuts the peer's bytes into messages; a new one (fresh framing state) each time it opens.
    private var framer: PeerFramer?
    private let framing: (function: ws_framing, config: FramingConfig?)?
    private(set) var state = State.closed
    private var endpoint: StreamEndpoint?
    private var connector: PeerConnector?
    private var writer: FifoWriter?
    private var program: RunningProgram?
    /// The bridges of its clients, in joining order.
    private var subscribers: [Bridge] = []
    /// Connections waiting for it to open before their 101.
    private var joining: [Connection] = []
    private var reopenAt: Int64 = 0
    /// When opening gives up (a connect the kernel keeps trying), from `connect-timeout`.
    private var openDeadline: Int64 = 0
    /// Opened at start-up: reopened when it ends even without clients.
    private var keepOpen = false
    /// Reading is paused for `hold` until every client is below the limit.
    private var holding = false
    static let reopenDelayMilliseconds: Int64 = 1000

    init(key: String, address: PeerAddress, settings: SharingSettings, framing: (function: ws_framing, config: FramingConfig?)?, server: Server) {
        self.key = key
        self.address = address
        self.settings = settings
        self.framing = framing
        self.server = server
    }

    var clientCount: Int { subscribers.count }

    // MARK: Clients

    /// A connection wants this peer: answered at once (`sharedPeerReady`/`sharedPeerFailed`) when it
    /// is open or cannot be opened, else when it is.
    func join(_ connection: Connection) {
        switch state {
        case .open: connection.sharedPeerReady(self)
        case .finished: connection.sharedPeerFailed("\(address) has ended")
        case .opening:
            joining.append(connection)
        case .closed:
            joining.append(connection)
            if reopenAt == 0 || server.now >= reopenAt { open() }
        }
    }

    /// `share-open = start`: open now, and keep it open (reopened when it ends) with no client.
    func openAtStart() {
        keepOpen = true
        if state == .closed { open() }
    }

    func cancelJoin(_ connection: Connection) {
        joining.removeAll { $0 === connection }
    }

    func attach(_ bridge: Bridge) {
        subscribers.append(bridge)
    }

    func detach(_ bridge: Bridge) {
        subscribers.removeAll { $0 === bridge }
        if holding { subscriberDrained() }
    }

    /// A whole client message for the peer; false when it was dropped (peer down, a source that
    /// cannot be written, a write FIFO full). Read-only clients never get here.
    func send(_ message: UnsafeRawBufferPointer) -> Bool {
        guard state == .open else { return false }
        if let writer { return writer.write(message) }
        guard let endpoint, !address.isReadOnlySource else { return false }
        endpoint.send(message)
        return true
    }

    /// Bytes waiting to go to the peer: clients pause while it is over the high-water mark.
    var queuedBytes: Int { (endpoint?.queuedBytes ?? 0) + (writer?.queuedBytes ?? 0) }

    /// A client's queue went down: with `hold`, the peer is read again once all are low enough.
    func subscriberDrained() {
        guard holding, !anyHoldingClientBehind else { return }
        holding = false
        endpoint?.resumeReading()
    }

    /// A client whose route says `slow-client = hold` has more than its limit waiting.
    private var anyHoldingClientBehind: Bool {
        subscribers.contains { $0.sharing.slowClient == .hold && $0.client.queuedBytes > $0.sharing.slowClientLimit }
    }

    // MARK: Opening

    private func open() {
        state = .opening
        openDeadline = server.now + server.limits.connectTimeoutMilliseconds
        framer = framing.map { PeerFramer(function: $0.function, config: $0.config, client: "shared \(key)") }
        do throws(SystemError) {
            switch address {
            case .tcp, .unixStream:
                let connector = PeerConnector(server: server, address: address)
                self.connector = connector
                if let outcome = connector.start(completion: { [unowned self] in self.connected($0) }) { connected(outcome) }
                return
            case .program(let path, let arguments):
                let environment = ProgramEnvironment.variables(
                    .init(target: "", headers: [], clientIP: nil, clientPort: nil, serverPort: server.listeningPort, subprotocol: nil, user: nil),
                    passing: server.programs.settings.environmentNames) { getenv($0).map { String(cString: $0) } }
                let started: (RunningProgram, Int32)
                do throws(Programs.StartError) {
                    started = try server.programs.start(path: path, arguments: arguments, environment: environment, client: "shared \(key)")
                } catch {
                    return failed("\(error)")
                }
                program = started.0
                try adopt(started.1)
            case .fifo(let path, let out):
                // Read-write: there is always a writer (us), so the reader never sees EOF between
                // `echo hi > fifo` runs and opening never waits.
                try adopt(openFIFO(path, mode: O_RDWR))
                if let out { writer = try FifoWriter(path: out, limit: settings.slowClientLimit) }
            case .fifoOut(let path):
                writer = try FifoWriter(path: path, limit: settings.slowClientLimit)
            case .standardInput:
                try adopt(StandardInput.pollable())
            case .echo, .tls, .udp, .unixDatagram:
                return failed("\(address) cannot be shared")
            }
        } catch {
            return failed("\(error)")
        }
        opened()
    }

    private func connected(_ outcome: PeerConnector.Outcome) {
        connector = nil
        switch outcome {
        case .connected(let fd, let registration):
            do throws(SystemError) {
                endpoint = try StreamEndpoint(server: server, fd: fd, registration: registration, owner: self)
                endpoint!.inboxLimit = server.limits.peerBufferBytes
            } catch {
                close(fd)
                return failed("\(error)")
            }
            opened()
        case .failed(let why), .forbidden(let why):
            failed(why)
        }
    }

    private func adopt(_ fd: Int32) throws(SystemError) {
        let made = try StreamEndpoint(server: server, fd: fd, owner: self)
        made.inboxLimit = server.limits.peerBufferBytes
        endpoint = made
    }

    private func opened() {
        state = .open
        Log.info("shared peer \(address) open (\(joining.count + subscribers.count) client(s))")
        let waiting = joining
        joining = []
        for connection in waiting { connection.sharedPeerReady(self) }
    }

    private func failed(_ why: String) {
        Log.info("shared peer \(address): \(why)")
        state = .closed
        reopenAt = server.now + Self.reopenDelayMilliseconds
        let waiting = joining
        joining = []
        for connection in waiting { connection.sharedPeerFailed(why) }
    }

    /// The peer ended: opened again after a pause while it has clients (standard input: never).
    private func lost(_ why: String) {
        endpoint = nil
        writer = nil
        program = nil
        holding = false
        if case .standardInput = address {
            state = .finished
            Log.info("stdin:// ended; closing its \(subscribers.count) client(s)")
            for bridge in subscribers { bridge.initiateClose(.normalClosure, reason: "end of input", by: "peer") }
            return
        }
        Log.info("shared peer \(address) \(why); opening it again in \(Self.reopenDelayMilliseconds / 1000) s")
        state = .closed
        reopenAt = server.now + Self.reopenDelayMilliseconds
    }

    /// From the server's sweep: reopen when due, flush a write FIFO.
    func sweep(now: Int64) {
        writer?.flush()
        if state == .opening, let connector, now >= openDeadline {
            connector.cancel()
            self.connector = nil
            failed("no connection within \(server.limits.connectTimeoutMilliseconds / 1000) s")
        }
        if state == .closed, now >= reopenAt, keepOpen || !subscribers.isEmpty || !joining.isEmpty { open() }
    }

    /// Clients' messages cannot be taken (a source that cannot be written).
    var isReadOnly: Bool { address.isReadOnlySource }

    /// At exit.
    func stop() {
        connector?.cancel()
        endpoint?.close()
        endpoint = nil
        writer = nil
    }

    // MARK: Peer endpoint events

    func endpointReceived(_ endpoint: StreamEndpoint, count: Int) {
        guard let framer else { return }
        var last = count
        while true {
            let data = endpoint.inbox.readable
            guard data.count > 0 else { break }
            switch framer.next(data, lastRead: min(last, data.count)) {
            case .needMore:
                if data.count >= server.limits.peerBufferBytes {
                    Log.info("shared peer \(address): the framing function left \(data.count) bytes unframed; dropped")
                    endpoint.inbox.removeAll()
                }
                return afterFanOut(endpoint)
            case .frame(let length, let opcode):
                if let opcode { fanOut(opcode, UnsafeRawBufferPointer(rebasing: data[0..<length])) }
                endpoint.inbox.consume(length)
                last = max(0, last - length)
            case .failed(let why):
                Log.info("shared peer \(address): \(why)")
                endpoint.inbox.removeAll()
                return afterFanOut(endpoint)
            }
        }
        afterFanOut(endpoint)
    }

    private func fanOut(_ opcode: Opcode, _ message: UnsafeRawBufferPointer) {
        // A client closed for being slow leaves the list while it is walked: this walks a copy.
        let everyone = subscribers
        for bridge in everyone { bridge.sendShared(opcode, message) }
    }

    private func afterFanOut(_ endpoint: StreamEndpoint) {
        guard anyHoldingClientBehind else { return }
        holding = true
        endpoint.pauseReading()
    }

    func endpointResumed(_ endpoint: StreamEndpoint) {
        endpointReceived(endpoint, count: 0)
    }

    func endpointEnded(_ endpoint: StreamEndpoint) {
        endpointReceived(endpoint, count: 0)
        endpoint.close()
        lost("ended")
    }

    func endpointDrained(_ endpoint: StreamEndpoint) {
        // Clients paused for the peer's queue may be read again.
        for bridge in subscribers { bridge.balance() }
    }

    func endpointSecured(_ endpoint: StreamEndpoint) {}

    func endpointClosed(_ endpoint: StreamEndpoint, error: IOFailure?) {
        guard endpoint === self.endpoint else { return }
        lost(error.map { "failed: \($0)" } ?? "closed")
    }
}

extension PeerAddress {
    /// Sources clients cannot write to: what they send is dropped (counted).
    var isReadOnlySource: Bool {
        switch self {
        case .standardInput: true
        case .fifo(_, let out): out == nil
        default: false
        }
    }
}
