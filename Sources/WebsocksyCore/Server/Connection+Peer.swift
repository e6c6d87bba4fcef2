import Glibc

/// Connecting the peer the backend chose, before the 101 (websocksy does the same): a peer that
/// cannot be reached gets the client a 502 instead of an upgrade that closes at once.
extension Connection {
    func connectPeer(_ choice: PeerChoice, for request: HandshakeRequest) {
        guard let framing = choice.framing else {
            refuse(.init(.internalServerError, "no framing function for the peer"))
            return
        }
        framer = PeerFramer(function: framing, config: choice.framingConfig, datagram: choice.address.isDatagram, client: clientAddress)
        lineEnd = choice.address.isDatagram ? nil : choice.lineEnd
        peerAddress = choice.address
        sendsProxyHeader = choice.sendsProxyHeader && !choice.address.isDatagram
        if choice.sharing != nil || choice.address.isInherentlyShared {
            return joinShared(choice)
        }
        if case .program(let path, let arguments) = choice.address {
            return startProgram(path, arguments, request: request, subprotocol: choice.subprotocol)
        }
        setState(.connectingPeer)
        peerConnectStarted = MonotonicClock.nowMicroseconds()
        deadline = server.now + server.limits.connectTimeoutMilliseconds
        let connector = PeerConnector(server: server, address: choice.address, addressCheck: choice.addressCheck)
        self.connector = connector
        if let outcome = connector.start(completion: { [unowned self] in self.peerConnectFinished($0) }) {
            peerConnectFinished(outcome)
        }
        // Not bridged at once (a connect in progress, a tls:// handshake; loopback plain peers
        // usually are): the client waits, unread, so its bytes cannot pile up meanwhile.
        if state == .connectingPeer { client.pauseReading() }
    }

    private func peerConnectFinished(_ outcome: PeerConnector.Outcome) {
        connector = nil
        guard state == .connectingPeer else { return }
        switch outcome {
        case .failed(let why):
            refuse(.init(.badGateway, "peer unreachable: \(why)"))
        case .forbidden(let why):
            refuse(.init(.forbidden, "token's peer refused: \(why)"))
        case .connected(let fd, let registration):
            do throws(SystemError) {
                try peerConnected(fd: fd, registration: registration)
            } catch {
                close(fd)
                refuse(.init(.badGateway, "peer unreachable: \(error)"))
            }
        }
    }

    private func peerConnected(fd: Int32, registration: (token: Reactor.Token, events: UInt32)) throws(SystemError) {
        let limits = server.limits
        if sendsProxyHeader { try writeProxyHeader(fd) }
        switch peerAddress {
        case .udp, .unixDatagram:
            let isUnix = if case .unixDatagram = peerAddress { true } else { false }
            let endpoint = try DatagramEndpoint(server: server, fd: fd, registration: registration, isUnix: isUnix,
                                                maxDatagram: limits.peerBufferBytes, owner: nil)
            completeUpgrade(peer: .datagram(endpoint))
        case .tls(let host, _):
            let endpoint = try StreamEndpoint(server: server, fd: fd, registration: registration, owner: self)
            endpoint.inboxLimit = limits.peerBufferBytes
            securingPeer = endpoint
            let credentials: TLSCredentials
            do throws(TLSError) {
                credentials = try server.tls.peerCredentialsForUse()
            } catch {
                return refuse(.init(.badGateway, "peer unreachable: \(error)"))
            }
            guard let session = TLSSession.client(fd: fd, host: host, credentials: credentials,
                                                  priority: server.tls.peerPriority, verify: server.tls.verifyPeers) else {
                return refuse(.init(.badGateway, "peer unreachable: cannot start a TLS session"))
            }
            endpoint.startTLS(session)
        default:
            let endpoint = try StreamEndpoint(server: server, fd: fd, registration: registration, owner: self)
            endpoint.inboxLimit = limits.peerBufferBytes
            completeUpgrade(peer: .stream(endpoint))
        }
    }

    /// A shared peer: bridged once it is open (at once when it already is).
    private func joinShared(_ choice: PeerChoice) {
        framer = nil
        lineEnd = nil
        sharing = choice.sharing ?? SharingSettings()
        let shared = server.sharedPeers.peer(for: choice, settings: sharing!)
        setState(.connectingPeer)
        deadline = server.now + server.limits.connectTimeoutMilliseconds
        joiningShared = shared
        shared.join(self)
    }

    func sharedPeerReady(_ shared: SharedPeer) {
        joiningShared = nil
        guard state == .connectingPeer else { return }
        completeUpgrade(peer: .shared(shared))
    }

    func sharedPeerFailed(_ why: String) {
        joiningShared = nil
        guard state == .connectingPeer else { return }
        refuse(.init(.badGateway, "shared peer unavailable: \(why)"))
    }

    /// An `exec://` peer: started now, bridged at once through its stdin/stdout socket.
    private func startProgram(_ path: String, _ arguments: [String], request: HandshakeRequest, subprotocol: String?) {
        let port = client4or6.map { String($0.port) }
        let environment = ProgramEnvironment.variables(
            .init(target: request.target, headers: request.headers.all.map { ($0.name, $0.value) }, clientIP: request.clientIP,
                  clientPort: port, serverPort: server.listeningPort, subprotocol: subprotocol, user: request.user),
            passing: server.programs.settings.environmentNames) { name in getenv(name).map { String(cString: $0) } }
        let started: (RunningProgram, Int32)
        do throws(Programs.StartError) {
            started = try server.programs.start(path: path, arguments: arguments, environment: environment, client: clientAddress)
        } catch {
            if case .capacity = error { return refuse(.init(.serviceUnavailable, "\(error)")) }
            return refuse(.init(.badGateway, "\(error)"))
        }
        let (program, fd) = started
        self.program = program
        program.onExit = { [unowned self] status in bridge?.programExited(status) }
        do throws(SystemError) {
            let endpoint = try StreamEndpoint(server: server, fd: fd, owner: self)
            endpoint.inboxLimit = server.limits.peerBufferBytes
            completeUpgrade(peer: .stream(endpoint))
        } catch {
            close(fd)
            refuse(.init(.badGateway, "\(error)"))
        }
    }

    func peerSecured(_ endpoint: StreamEndpoint) {
        securingPeer = nil
        guard state == .connectingPeer else { return endpoint.close() }
        completeUpgrade(peer: .stream(endpoint))
    }

    /// The PROXY v2 header naming the client, first on a fresh connection to the peer (before a
    /// tls:// peer's handshake too): a socket that has just connected takes its couple of hundred
    /// bytes at once, so it is written directly.
    private func writeProxyHeader(_ fd: Int32) throws(SystemError) {
        var header = ProxyProtocol.v2Local
        if let source = client4or6, let destination = proxiedDestination ?? localAddress() {
            header = ProxyProtocol.encodeV2(source: source, destination: destination)
        }
        let written = header.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard written == header.count else { throw SystemError("PROXY header to the peer", errno: written < 0 ? errno : EAGAIN) }
    }

    /// The gateway's own address on the client's connection (the PROXY header's destination).
    private func localAddress() -> ProxiedAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(client.fd, $0, &length) }
        }
        return ok == 0 ? ProxyProtocol.address(of: storage) : nil
    }

    /// The peer did not connect (or finish its TLS handshake) within `connect-timeout`.
    func peerConnectTimedOut() {
        connector?.cancel()
        connector = nil
        securingPeer?.close()
        securingPeer = nil
        refuse(.init(.badGateway, "peer unreachable: no connection to \(peerAddress) within \(server.limits.connectTimeoutMilliseconds / 1000) s"))
    }
}
