import Testing
@testable import WebsocksyCore

@Suite struct HandshakeTests {
    static let rfcRequest = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n"
        + "Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n"

    private func parse(_ request: String, maxHeaderBytes: Int = 16384) -> HandshakeParser.Result {
        var parser = HandshakeParser(maxHeaderBytes: maxHeaderBytes)
        return Array(request.utf8).withUnsafeBytes { parser.parse($0) }
    }

    private func rejection(_ request: String) -> HandshakeRejection? {
        if case .rejected(let r) = parse(request) { return r }
        return nil
    }

    /// RFC 6455 §1.3: the key "dGhlIHNhbXBsZSBub25jZQ==" gives "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".
    @Test func rfcAcceptValue() {
        #expect(WebSocketAccept.value(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func rfcRequestParses() {
        guard case .complete(let request, let consumed) = parse(Self.rfcRequest) else { Issue.record("not complete"); return }
        #expect(consumed == Self.rfcRequest.utf8.count)
        #expect(request.target == "/chat")
        #expect(request.protocols == ["chat", "superchat"])
        #expect(request.header("origin") == "http://example.com")
        #expect(request.headers.all.map(\.name) == ["Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Origin",
                                                     "Sec-WebSocket-Protocol", "Sec-WebSocket-Version"])
        #expect(request.headers[5].value == "chat, superchat")
    }

    /// Values lose optional whitespace; lookups ignore case; first and last differ for repeated fields;
    /// subprotocols gather across repeated headers in order.
    @Test func headerFieldsKeepArrivalOrder() {
        let request = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + "X-Forwarded-For:  1.1.1.1 \t\r\nSec-WebSocket-Protocol: a,,b\r\nx-forwarded-for:2.2.2.2\r\n"
            + "Sec-WebSocket-Protocol: c\r\nEmpty:\r\n\r\n"
        guard case .complete(let r, _) = parse(request) else { Issue.record("not complete"); return }
        #expect(r.headers.count == 10)
        #expect(r.headers.first("X-FORWARDED-FOR") == "1.1.1.1")
        #expect(r.headers.last("x-forwarded-for") == "2.2.2.2")
        #expect(r.headers.first("empty") == "")
        #expect(r.headers.first("Missing") == nil)
        #expect(r.protocols == ["a", "b", "c"])
        #expect(r.key == "dGhlIHNhbXBsZSBub25jZQ==")
        let built = HeaderFields([("A", "1"), ("b", "")])
        #expect(built.all.map(\.name) == ["A", "b"] && built.first("a") == "1" && built.last("B") == "")
    }

    @Test func acceptResponse() {
        let response = String(decoding: HandshakeResponse.accept(key: "dGhlIHNhbXBsZSBub25jZQ==", subprotocol: "chat"), as: UTF8.self)
        #expect(response == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
    }

    /// One byte at a time: incomplete until the last byte, then complete.
    @Test func byteAtATime() {
        var parser = HandshakeParser()
        let bytes = Array(Self.rfcRequest.utf8)
        for n in 1...bytes.count {
            let result = bytes[0..<n].withUnsafeBytes { parser.parse($0) }
            if n < bytes.count {
                guard case .incomplete = result else { Issue.record("early result at \(n)"); return }
            } else {
                guard case .complete(_, let consumed) = result else { Issue.record("not complete"); return }
                #expect(consumed == bytes.count)
            }
        }
    }

    @Test func frameBytesRightBehindTheRequest() {
        let bytes = Array(Self.rfcRequest.utf8) + clientFrame(1, text("hi"))
        var parser = HandshakeParser()
        guard case .complete(_, let consumed) = bytes.withUnsafeBytes({ parser.parse($0) }) else { Issue.record("not complete"); return }
        #expect(Array(bytes[consumed...]) == clientFrame(1, text("hi")))
    }

    @Test func caseInsensitiveNamesAndTokenLists() {
        let request = "GET /x?y=1 HTTP/1.1\r\nhost: a\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, Upgrade\r\n"
            + "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
        guard case .complete(let r, _) = parse(request) else { Issue.record("not complete"); return }
        #expect(r.target == "/x?y=1")
        #expect(r.protocols.isEmpty)
    }

    @Test func bareLFLineEnds() {
        let request = Self.rfcRequest.replacingOccurrences("\r\n", "\n")
        guard case .complete = parse(request) else { Issue.record("not complete"); return }
    }

    @Test func wrongVersionIs426() {
        let r = rejection(Self.rfcRequest.replacingOccurrences("Version: 13", "Version: 8"))
        #expect(r?.status == .upgradeRequired)
        let response = String(decoding: HandshakeResponse.reject(r!), as: UTF8.self)
        #expect(response.hasPrefix("HTTP/1.1 426 Upgrade Required\r\n"))
        #expect(response.contains("\r\nSec-WebSocket-Version: 13\r\n"))
    }

    @Test(arguments: [
        ("GET /chat HTTP/1.1", "POST /chat HTTP/1.1"),          // not GET
        ("GET /chat HTTP/1.1", "GET /chat HTTP/1.0"),           // HTTP/1.0
        ("GET /chat HTTP/1.1", "GET chat HTTP/1.1"),            // not an absolute path
        ("GET /chat HTTP/1.1", "GET /chat  HTTP/1.1"),          // malformed request line
        ("Connection: Upgrade", "Connection: keep-alive"),
        ("Host: server.example.com\r\n", ""),                   // missing Host
        ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ"), // key too short
        ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ!="),
        ("dGhlIHNhbXBsZSBub25jZQ==", "YWJjZGVmZ2hpamtsbW5vcHFy"), // 18 bytes, no padding
        ("Origin: http", " Origin: http"),                      // obsolete line folding
        ("Origin: http", "Origin http"),                        // no colon
        ("Origin: http", "Ori gin: http"),                      // bad header name
    ])
    func malformedIs400(_ change: (String, String)) {
        let r = rejection(Self.rfcRequest.replacingOccurrences(change.0, change.1))
        #expect(r?.status == .badRequest, "\(change)")
    }

    /// Without `Upgrade: websocket` it is a plain request for the web root, whatever its method.
    @Test(arguments: [("Upgrade: websocket\r\n", ""), ("Upgrade: websocket", "Upgrade: h2c"), ("GET /chat", "POST /chat")])
    func notAnUpgradeIsPlain(_ change: (String, String)) {
        var request = Self.rfcRequest.replacingOccurrences("Upgrade: websocket\r\n", "X-Was: upgrade\r\n")
        request = request.replacingOccurrences(change.0, change.1)
        guard case .plain(let plain, _) = parse(request) else { Issue.record("not plain: \(change)"); return }
        #expect(plain.target == "/chat")
    }

    @Test func duplicateKeyIs400() {
        let r = rejection(Self.rfcRequest.replacingOccurrences("Origin:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin:"))
        #expect(r?.status == .badRequest)
    }

    @Test func tooLargeIs431() {
        let huge = Self.rfcRequest.replacingOccurrences("Origin: http://example.com", "X-Big: " + String(repeating: "a", count: 20000))
        #expect(rejection(huge)?.status == .requestHeaderFieldsTooLarge)
        // Without the blank line yet, the limit still applies (no unbounded buffering).
        var parser = HandshakeParser(maxHeaderBytes: 1024)
        let partial = Array(("GET / HTTP/1.1\r\nX: " + String(repeating: "b", count: 2000)).utf8)
        guard case .rejected(let r) = partial.withUnsafeBytes({ parser.parse($0) }) else { Issue.record("not rejected"); return }
        #expect(r.status == .requestHeaderFieldsTooLarge)
    }

    @Test func tooManyHeadersIs431() {
        let many = (0..<101).map { "X-H\($0): v\r\n" }.joined()
        let r = rejection(Self.rfcRequest.replacingOccurrences("Origin:", many + "Origin:"))
        #expect(r?.status == .requestHeaderFieldsTooLarge)
    }

    @Test func keyValidation() {
        #expect(WebSocketAccept.isValidKey("dGhlIHNhbXBsZSBub25jZQ=="))
        #expect(!WebSocketAccept.isValidKey("dGhlIHNhbXBsZSBub25jZQ="))
        #expect(!WebSocketAccept.isValidKey("dGhlIHNhbXBsZSBub25j===="))
        #expect(!WebSocketAccept.isValidKey(""))
    }

    @Test func subprotocolSelection() {
        #expect(SubprotocolSelection.select(configured: nil, offered: []) == .none)
        if case .refused = SubprotocolSelection.select(configured: nil, offered: ["chat"]) {} else { Issue.record("not refused") }
        #expect(SubprotocolSelection.select(configured: "*", offered: ["a", "b"]) == .selected("a"))
        #expect(SubprotocolSelection.select(configured: "*", offered: []) == .none)
        #expect(SubprotocolSelection.select(configured: "CHAT", offered: ["x", "chat"]) == .selected("chat"))
        #expect(SubprotocolSelection.select(configured: "chat", offered: []) == .none)
        if case .refused = SubprotocolSelection.select(configured: "chat", offered: ["mqtt"]) {} else { Issue.record("not refused") }
    }
}

extension String {
    /// Plain substring replacement without Foundation.
    func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        var result = ""
        var rest = self[...]
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}
