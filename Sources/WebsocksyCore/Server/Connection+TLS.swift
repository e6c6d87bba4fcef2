/// wss://: with a certificate configured, plain and TLS clients share the port. A TLS connection
/// starts with a handshake record (content type 22), an HTTP request with a letter.
extension Connection {
    /// Decides from the first byte, before anything is read, whether the client speaks TLS.
    func firstByteArrived(_ byte: UInt8) {
        if byte == 0x16 {
            guard let credentials = server.tls.serverCredentials, let priority = server.tls.serverPriority,
                  let session = TLSSession.server(fd: client.fd, credentials: credentials, priority: priority,
                                                  requireClientCertificate: server.tls.verifyClient,
                                                  ticketKey: server.tls.ticketKey) else {
                Log.error("\(clientAddress): cannot start a TLS session")
                destroy()
                return
            }
            client.startTLS(session)
            return
        }
        if server.tls.tlsOnly {
            refuse(.init(.badRequest, "this port accepts TLS (wss://) connections only"))
        }
    }
}
