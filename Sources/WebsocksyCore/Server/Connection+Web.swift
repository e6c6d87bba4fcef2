import Glibc

/// Plain HTTP requests: files from the web root, streamed, on a connection that stays open for the
/// next request when the client allows it (a page with many assets then costs one connection).
extension Connection {
    /// Requests served on one connection before it is closed (as nginx's `keepalive_requests`).
    static let maxRequestsPerConnection = 100

    /// Answers a request that is not an upgrade: from the web root, or with a page saying what this is.
    func servePlain(_ request: PlainRequest) {
        let response: WebResponse
        if let web = server.web {
            response = web.respond(to: request)
            Log.debug("\(clientAddress): \(LogText.capped(request.method)) \(LogText.capped(request.target)) → \(response.status)")
        } else {
            Log.info("\(clientAddress): refused with 426: \(LogText.capped(request.method)) \(LogText.capped(request.target)) is not a WebSocket upgrade")
            response = StaticFiles.page(426, "Upgrade Required",
                                        "This is a WebSocket endpoint: connect with a WebSocket client (ws:// or wss://).",
                                        extra: "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n")
        }
        record.status = response.status
        requestsServed += 1
        keepAlive = server.web != nil && response.status != 405 && request.allowsPersistence
            && requestsServed < Self.maxRequestsPerConnection
        var head = response.head
        if !keepAlive {
            head += "Connection: close\r\n"
        } else if request.minorVersion == 0 {
            head += "Connection: keep-alive\r\n"
        }
        head += "\r\n"
        var bytes = Array(head.utf8)
        bytes += response.body
        bytes.withUnsafeBytes { sendRaw($0) }
        guard state == .handshake else { return }  // the write failed and tore the connection down
        fileBody = response.file
        state = .responding
        deadline = server.now + server.limits.sendTimeoutMilliseconds
        continueResponse()
    }

    /// Sends the file body as far as the socket takes it (sendfile, or through the outbox for TLS);
    /// when everything is out, waits for the next request or closes.
    func continueResponse() {
        while outbox.isEmpty, let body = fileBody, body.remaining > 0 {
            let n: Int
            if tls == nil {
                var offset = off_t(body.offset)
                n = sendfile(fd, body.fd, &offset, min(body.remaining, 1 << 20))
                if n > 0 { body.offset = Int(offset) }
            } else {
                let tail = outbox.writableTail(minimum: 16384)
                n = pread(body.fd, tail.baseAddress, min(tail.count, body.remaining, 65536), off_t(body.offset))
                if n > 0 {
                    outbox.commit(n)
                    body.offset += n
                    guard writeOutbox() else { return }
                }
            }
            if n > 0 {
                deadline = server.now + server.limits.sendTimeoutMilliseconds  // progress: a slow client is no stall
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
            // 0: the file shrank under us, and the length is promised; or the socket failed.
            Log.info("\(clientAddress): \(record.request): body cut short (\(n == 0 ? "file shrank" : String(cString: strerror(errno))))")
            destroy()
            return
        }
        if fileBody?.remaining == 0 { fileBody = nil }
        guard outbox.isEmpty && fileBody == nil else {
            updateInterest()  // wait until the socket takes more
            return
        }
        guard keepAlive else {
            startDraining()
            return
        }
        // Ready for the next request on this connection; pipelined bytes may already be here.
        if let accessLog = server.accessLog {
            accessLog.write(record.line(client: loggedClient ?? clientAddress, now: server.now))
        }
        record = ConnectionRecord(startedAt: server.now)
        handshakeParser = HandshakeParser(maxHeaderBytes: server.limits.maxHeaderBytes, maxHeaderCount: server.limits.maxHeaders)
        state = .handshake
        deadline = server.now + server.limits.handshakeTimeoutMilliseconds
        updateInterest()
        if !inbox.isEmpty { processInbox() }
    }
}
