/// The bytes of the server's handshake answers (RFC 6455 §4.2.2).
public enum HandshakeResponse {
    /// `101 Switching Protocols` completing the upgrade, with the selected subprotocol and the
    /// accepted extensions, if any.
    public static func accept(key: String, subprotocol: String?, extensions: String? = nil) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(160 + (subprotocol?.utf8.count ?? 0) + (extensions?.utf8.count ?? 0))
        out += "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ".utf8
        WebSocketAccept.append(forKey: key, to: &out)
        if let subprotocol { out += "\r\nSec-WebSocket-Protocol: \(subprotocol)".utf8 }
        if let extensions { out += "\r\nSec-WebSocket-Extensions: \(extensions)".utf8 }
        out += "\r\n\r\n".utf8
        return out
    }

    /// An error response with a one-line plain-text reason; the connection is closed after it.
    public static func reject(_ rejection: HandshakeRejection) -> [UInt8] {
        let body = rejection.reason + "\n"
        var text = "HTTP/1.1 \(rejection.status.rawValue) \(rejection.status.reasonPhrase)\r\n"
        text += "Content-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n"
        if rejection.status == .upgradeRequired {
            // §4.2.2: tell the client which version we speak.
            text += "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n"
        }
        if let retryAfter = rejection.retryAfter { text += "Retry-After: \(retryAfter)\r\n" }
        if let challenge = rejection.challenge { text += "WWW-Authenticate: \(challenge)\r\n" }
        text += "\r\n" + body
        return Array(text.utf8)
    }
}
