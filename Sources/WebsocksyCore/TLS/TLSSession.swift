import CGnuTLS
import Glibc

/// One TLS session over a non-blocking socket, server or client side. The handshake, reads and
/// writes never block: they report when the socket must become readable or writable first.
final class TLSSession {
    enum Step: Equatable {
        case done
        case wantRead
        case wantWrite
        case failed(String)
    }

    private let session: gnutls_session_t
    /// Held for the session's lifetime (GnuTLS does not copy them).
    private let credentials: TLSCredentials
    private let priority: TLSPriority
    /// Length of a record write that returned EAGAIN: GnuTLS wants the same call repeated.
    private var pendingWrite = 0
    /// The name a client session verifies the peer against: GnuTLS keeps the pointer, not a copy.
    private var verifiedName: UnsafeMutablePointer<CChar>?

    private init(session: gnutls_session_t, fd: Int32, credentials: TLSCredentials, priority: TLSPriority) {
        self.session = session
        self.credentials = credentials
        self.priority = priority
        gnutls_priority_set(session, priority.handle)
        gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, UnsafeMutableRawPointer(credentials.handle))
        gnutls_transport_set_int2(session, fd, fd)
    }

    deinit {
        gnutls_deinit(session)
        free(verifiedName)
    }

    /// A server session; `requireClientCertificate` asks for and verifies one against the CA.
    static func server(fd: Int32, credentials: TLSCredentials, priority: TLSPriority, requireClientCertificate: Bool) -> TLSSession? {
        var handle: gnutls_session_t?
        guard gnutls_init(&handle, cgnutls_server_flags()) >= 0, let handle else { return nil }
        let s = TLSSession(session: handle, fd: fd, credentials: credentials, priority: priority)
        s.setALPN()
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

    func handshake() -> Step {
        while true {
            let rc = gnutls_handshake(session)
            if rc >= 0 { return .done }
            if rc == cgnutls_e_again() || rc == cgnutls_e_interrupted() {
                return gnutls_record_get_direction(session) == 0 ? .wantRead : .wantWrite
            }
            if gnutls_error_is_fatal(rc) == 0 { continue }
            // Tell the other side why (protocol version, no shared cipher, bad certificate)
            // instead of a bare EOF; best effort on a non-blocking socket.
            _ = gnutls_alert_send_appropriate(session, rc)
            return .failed(TLSError.text(rc))
        }
    }

    /// Decrypted bytes into `buffer`: `.bytes`, `.wouldBlock`, `.eof` or `.failed`.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        while true {
            let n = gnutls_record_recv(session, buffer.baseAddress, buffer.count)
            if n > 0 { return .bytes(n) }
            if n == 0 || Int32(n) == cgnutls_e_premature_termination() { return .eof }
            let code = Int32(n)
            if code == cgnutls_e_again() || code == cgnutls_e_interrupted() { return .wouldBlock }
            if gnutls_error_is_fatal(code) == 0 { continue }
            return .failed(.tls(TLSError.text(code)))
        }
    }

    /// Encrypts and sends up to one record of `bytes`.
    func write(_ bytes: UnsafeRawBufferPointer) -> IOResult {
        let length = pendingWrite > 0 ? min(pendingWrite, bytes.count) : min(bytes.count, 16384)
        while true {
            let n = gnutls_record_send(session, bytes.baseAddress, length)
            if n >= 0 {
                pendingWrite = 0
                return .bytes(n)
            }
            let code = Int32(n)
            if code == cgnutls_e_again() || code == cgnutls_e_interrupted() {
                pendingWrite = length
                return .wouldBlock
            }
            if gnutls_error_is_fatal(code) == 0 { continue }
            return .failed(.tls(TLSError.text(code)))
        }
    }

    /// Decrypted bytes GnuTLS holds that epoll cannot announce.
    var hasPendingData: Bool { gnutls_record_check_pending(session) > 0 }

    /// Sends close_notify, without waiting for the other side's (best effort on a non-blocking socket).
    func sendCloseNotify() {
        _ = gnutls_bye(session, GNUTLS_SHUT_WR)
    }
}
