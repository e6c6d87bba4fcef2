/// The bytes of the server's handshake answers (RFC 6455 §4.2.2).
public enum HandshakeResponse {
    /// `101 Switching Protocols` completing the upgrade, with the selected subprotocol if any.
    public static func accept(key: String, subprotocol: String?) -> [UInt8] {
        var text = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        text += "Sec-WebSocket-Accept: \(WebSocketAccept.value(forKey: key))\r\n"
        if let subprotocol { text += "Sec-WebSocket-Protocol: \(subprotocol)\r\n" }
        text += "\r\n"
        return Array(text.utf8)
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
        text += "\r\n" + body
        return Array(text.utf8)
    }
}
