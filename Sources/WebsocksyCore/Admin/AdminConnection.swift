/// One connection to the admin listener: reads a request head (8 KiB at most, within the handshake
/// timeout), answers it through `AdminRoutes` and closes. Kept apart from client connections: it
/// has no limits, backend or access log, and it still answers while a graceful stop drains clients.
final class AdminConnection: StreamEndpointOwner, ListMember {
    unowned(unsafe) let server: Server
    let endpoint: StreamEndpoint
    var listIndex = -1
    let deadline: Int64
    static let maxRequestBytes = 8192

    init(server: Server, fd: Int32) throws(SystemError) {
        self.server = server
        endpoint = try StreamEndpoint(server: server, fd: fd, owner: nil)
        endpoint.inboxLimit = Self.maxRequestBytes
        deadline = server.now + server.limits.handshakeTimeoutMilliseconds
        endpoint.owner = self
    }

    func endpointReceived(_ endpoint: StreamEndpoint, count: Int) {
        let bytes = endpoint.inbox.readable
        guard let end = Self.headEnd(UnsafeRawBufferPointer(bytes)) else {
            if bytes.count >= Self.maxRequestBytes { finish(Array("HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".utf8)) }
            return
        }
        // Bytes, not Characters: "\r\n" is one Character in Swift.
        let lineEnd = bytes[0..<end].firstIndex { $0 == 0x0D || $0 == 0x0A } ?? end
        let requestLine = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[0..<lineEnd]), as: UTF8.self)
        finish(AdminRoutes.respond(to: requestLine[...], ready: server.isReady) { server.metricsText() })
    }

    /// Where the blank line ending the request head is (CRLF CRLF, or LF LF from a lax client).
    private static func headEnd(_ bytes: UnsafeRawBufferPointer) -> Int? {
        var i = 0
        while i + 1 < bytes.count {
            if bytes[i] == 0x0A && bytes[i + 1] == 0x0A { return i }
            if bytes[i] == 0x0A && bytes[i + 1] == 0x0D && i + 2 < bytes.count && bytes[i + 2] == 0x0A { return i }
            i += 1
        }
        return nil
    }

    private func finish(_ response: [UInt8]) {
        response.withUnsafeBytes { endpoint.send($0) }
        endpoint.finish(awaitingOtherSide: true)
        server.adminConnectionEnded(self)
    }

    /// Too slow to send its request: closed without an answer.
    func expire() {
        endpoint.close()
        server.adminConnectionEnded(self)
    }

    func endpointResumed(_ endpoint: StreamEndpoint) {}
    func endpointEnded(_ endpoint: StreamEndpoint) { expire() }
    func endpointDrained(_ endpoint: StreamEndpoint) {}
    func endpointSecured(_ endpoint: StreamEndpoint) {}
    func endpointClosed(_ endpoint: StreamEndpoint, error: IOFailure?) { server.adminConnectionEnded(self) }
}
