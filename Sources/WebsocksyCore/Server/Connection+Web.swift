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
        record.bodyBytes = response.body.count  // with the file's bytes as they go out
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
        bytes.withUnsafeBytes { client.send($0) }
        fileBody = response.file
        setState(.responding)
        // Pipelined requests wait until this response is out.
        client.pauseReading()
        deadline = server.now + server.limits.sendTimeoutMilliseconds
        continueResponse()
    }

    /// Sends the file body as far as the socket takes it (sendfile, or through the outbox for TLS);
    /// when everything is out, waits for the next request or closes.
    func continueResponse() {
        guard client.isOpen else { return }
        while client.queuedBytes == 0, let body = fileBody, body.remaining > 0 {
            let n: Int
            if client.tls == nil {
                var offset = off_t(body.offset)
                n = sendfile(client.fd, body.fd, &offset, min(body.remaining, 1 << 20))
                if n > 0 { body.offset = Int(offset) }
            } else {
                let tail = client.queueTail(minimum: 16384)
                n = pread(body.fd, tail.baseAddress, min(tail.count, body.remaining, 65536), off_t(body.offset))
                if n > 0 {
                    client.commitQueued(n)
                    body.offset += n
                    guard client.writeOutbox() else { return }
                }
            }
            if n > 0 {
                record.bodyBytes = (record.bodyBytes ?? 0) + n
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
        guard client.queuedBytes == 0 && fileBody == nil else {
            client.wantsWritable()  // wait until the socket takes more
            return
        }
        guard keepAlive else {
            finishClient()
            return
        }
        // Ready for the next request on this connection; pipelined bytes may already be here.
        writeAccessLog()
        record = ConnectionRecord(startedAt: server.now)
        handshakeParser = HandshakeParser(maxHeaderBytes: server.limits.maxHeaderBytes, maxHeaderCount: server.limits.maxHeaders)
        setState(.handshake)
        deadline = server.now + server.limits.handshakeTimeoutMilliseconds
        client.resumeReading()
    }
}
