import Glibc

/// wss://: with a certificate configured, plain and TLS clients share the port. A TLS connection
/// starts with a handshake record (content type 22), an HTTP request with a letter.
extension Connection {
    /// Looks at the first byte without consuming it. Returns true when the connection goes on as
    /// plain HTTP; otherwise it started TLS, was refused, or must wait for the byte.
    func sniffTLS() -> Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_PEEK))
        if n == 0 {
            destroy()
            return false
        }
        if n < 0 {
            if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { destroy() }
            return false
        }
        tlsUndecided = false
        if byte == 0x16 {
            guard let credentials = server.tls.serverCredentials, let priority = server.tls.serverPriority,
                  let session = TLSSession.server(fd: fd, credentials: credentials, priority: priority,
                                                  requireClientCertificate: server.tls.verifyClient) else {
                Log.error("\(clientAddress): cannot start a TLS session")
                destroy()
                return false
            }
            tls = session
            state = .tlsHandshake
            continueTLSHandshake()
            return false
        }
        if server.tls.tlsOnly {
            refuse(.init(.badRequest, "this port accepts TLS (wss://) connections only"))
            return false
        }
        return true
    }

    func continueTLSHandshake() {
        guard let tls else { return }
        switch tls.handshake() {
        case .done:
            state = .handshake
            tlsWantsWrite = false
            updateInterest()
            readFromClient()
        case .wantRead:
            tlsWantsWrite = false
            updateInterest()
        case .wantWrite:
            tlsWantsWrite = true
            updateInterest()
        case .failed(let why):
            Log.info("\(clientAddress): TLS handshake failed: \(why)")
            destroy()
        }
    }
}
