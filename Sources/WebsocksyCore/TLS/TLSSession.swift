import CGnuTLS
import Glibc

/// One TLS session over a non-blocking socket, server or client side. The handshake, reads and
/// writes never block: they report when the socket must become readable or writable first.
/// GnuTLS reaches the socket through `TLSSocket` (read-ahead, one send per batch of records).
final class TLSSession {
    enum Step: Equatable {
        case done
        case wantRead
        case wantWrite
        case failed(String)
    }

    let session: gnutls_session_t
    let socket: TLSSocket
    /// Held for the session's lifetime (GnuTLS does not copy them).
    private let credentials: TLSCredentials
    private let priority: TLSPriority
    /// Held like the credentials: a reload replaces the key for new sessions only.
    private var ticketKey: TLSTicketKey?
    /// Length of a record write that returned EAGAIN: GnuTLS wants the same call repeated. (The
    /// push never blocks, so this stays 0; kept so that the rule holds whatever the transport.)
    var pendingWrite = 0
    /// The name a client session verifies the peer against: GnuTLS keeps the pointer, not a copy.
    private var verifiedName: UnsafeMutablePointer<CChar>?
    /// The last read stopped because the socket had nothing more (not because the buffer was full).
    private(set) var drained = false

    private init(session: gnutls_session_t, fd: Int32, credentials: TLSCredentials, priority: TLSPriority) {
        self.session = session
        self.socket = TLSSocket(fd: fd)
        self.credentials = credentials
        self.priority = priority
        gnutls_priority_set(session, priority.handle)
        gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, UnsafeMutableRawPointer(credentials.handle))
        socket.attach(to: session)
    }

    deinit {
        gnutls_deinit(session)
        free(verifiedName)
    }

    /// A server session; `requireClientCertificate` asks for and verifies one against the CA;
    /// with a `ticketKey` it issues session tickets and resumes sessions from them.
    static func server(fd: Int32, credentials: TLSCredentials, priority: TLSPriority, requireClientCertificate: Bool,
                       ticketKey: TLSTicketKey?) -> TLSSession? {
        var handle: gnutls_session_t?
        guard gnutls_init(&handle, cgnutls_server_flags()) >= 0, let handle else { return nil }
        let s = TLSSession(session: handle, fd: fd, credentials: credentials, priority: priority)
        s.setALPN()
        if let ticketKey {
            ticketKey.enable(on: handle)
            s.ticketKey = ticketKey
        }
        if requireClientCertificate {
            gnutls_certificate_server_set_request(handle, GNUTLS_CERT_REQUIRE)
            gnutls_session_set_verify_cert(handle, nil, 0)
        }
        return s
    }

    /// A client session to `host` (sent as SNI); `verify` checks the peer's certificate and name.
    static func client(fd: Int32, host: String, credentials: TLSCredentials, priority: TLSPriority, verify: Bool) -> TLSSession? {
        var handle: gnutls_session_t?
        guard gnutls_init(&handle, cgnutls_client_flags()) >= 0, let handle else { return nil }
        let s = TLSSession(session: handle, fd: fd, credentials: credentials, priority: priority)
        let isAddress = host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
        if !isAddress {
            _ = host.withCString { gnutls_server_name_set(handle, GNUTLS_NAME_DNS, $0, strlen($0)) }
        }
        if verify {
            s.verifiedName = strdup(host)
            gnutls_session_set_verify_cert(handle, s.verifiedName, 0)
        }
        return s
    }

    /// Offers/accepts ALPN "http/1.1", the protocol a WebSocket upgrade runs over.
    private func setALPN() {
        var name: [UInt8] = Array("http/1.1".utf8)
        name.withUnsafeMutableBufferPointer { p in
            var datum = gnutls_datum_t(data: p.baseAddress, size: UInt32(p.count))
            _ = gnutls_alpn_set_protocols(session, &datum, 1, 0)
        }
    }

    /// Runs the handshake as far as the socket allows. Records sealed for the other side go first
    /// (the previous flight, if the socket did not take all of it).
    func handshake() -> Step {
        switch socket.sendUnsent() {
        case false: return .wantWrite
        case nil: return .failed(Self.pushFailure)
        case true: break
        }
        socket.startOperation()
        while true {
            socket.startCall()
            let rc = gnutls_handshake(session)
            let sent = socket.transmit()
            if rc >= 0 || rc == cgnutls_e_again() || rc == cgnutls_e_interrupted() {
                if sent.failed { return .failed(Self.pushFailure) }
                // Done: what the socket did not take leaves before the first application bytes.
                if rc >= 0 { return .done }
                if sent.blocked { return .wantWrite }
                if socket.stoppedWithInput { continue }
                return gnutls_record_get_direction(session) == 0 ? .wantRead : .wantWrite
            }
            if gnutls_error_is_fatal(rc) == 0 { continue }
            // Tell the other side why (protocol version, no shared cipher, bad certificate)
            // instead of a bare EOF; best effort on a non-blocking socket.
            _ = gnutls_alert_send_appropriate(session, rc)
            _ = socket.transmit()
            return .failed(TLSError.text(rc))
        }
    }

    /// Decrypted bytes into `buffer`, record after record while it has room and the socket has
    /// them (one hand-over per read, as plain reads: not one per 16 KiB record): `.bytes`,
    /// `.wouldBlock`, `.eof` or `.failed`. A full buffer leaves the rest with GnuTLS
    /// (`hasPendingData`); an end or a failure after some bytes is reported by the next call.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        var total = 0
        drained = false
        socket.startOperation()
        defer { _ = socket.transmit() }  // a record read may need an answer (a TLS 1.3 key update)
        while total < buffer.count {
            socket.startCall()
            let n = gnutls_record_recv(session, buffer.baseAddress! + total, buffer.count - total)
            if n > 0 {
                total += n
                continue
            }
            let code = Int32(n)
            if n < 0 && (code == cgnutls_e_again() || code == cgnutls_e_interrupted()) {
                if socket.stoppedWithInput { continue }
                drained = socket.pullBlocked
                break
            }
            if n < 0 && gnutls_error_is_fatal(code) == 0 { continue }
            if total > 0 { break }
            if n == 0 || code == cgnutls_e_premature_termination() { return .eof }
            return .failed(.tls(TLSError.text(code)))
        }
        return total > 0 ? .bytes(total) : .wouldBlock
    }

    /// Decrypted bytes GnuTLS holds, or ciphertext read ahead: neither can epoll announce.
    var hasPendingData: Bool { gnutls_record_check_pending(session) > 0 || socket.bufferedCount > 0 }

    /// Sealed bytes waiting for the socket.
    var unsentCount: Int { socket.unsentCount }

    /// Sends what earlier writes sealed and the socket did not take: `.bytes(0)` once none is
    /// left, `.wouldBlock` while the socket takes no more, or the failure.
    func sendUnsent() -> IOResult {
        switch socket.sendUnsent() {
        case true: .bytes(0)
        case false: .wouldBlock
        case nil: .failed(.tls(Self.pushFailure))
        }
    }

    /// A failed send reads as GnuTLS reported it when it wrote to the socket itself (what the
    /// connection logs and counts stays the same): "Error in the push function."
    static let pushFailure = TLSError.text(GNUTLS_E_PUSH_ERROR)

    /// Gives back the buffers of an idle session.
    func releaseIdleBuffers() {
        socket.releaseIdleBuffers()
    }

    /// Sends close_notify, without waiting for the other side's (best effort on a non-blocking socket).
    func sendCloseNotify() {
        _ = gnutls_bye(session, GNUTLS_SHUT_WR)
        _ = socket.transmit()
    }
}
