/// A validated WebSocket opening handshake request (RFC 6455 §4.2.1), kept for the backend.
public struct HandshakeRequest: Sendable {
    /// The request target: path and query as the client sent them.
    public var target: String
    /// Every header in arrival order, names spelled as the client sent them.
    public var headers: [(name: String, value: String)]
    /// `Sec-WebSocket-Key`, already checked to decode to 16 bytes.
    public var key: String
    /// Subprotocols offered in `Sec-WebSocket-Protocol`, in order, across all such headers.
    public var protocols: [String]

    /// The first header with this name (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.asciiCaseInsensitiveEquals(name) }?.value
    }
}

/// An HTTP request that is not a WebSocket upgrade.
public struct PlainRequest: Sendable {
    public var method: String
    public var target: String
    public var headers: [(name: String, value: String)]

    public func header(_ name: String) -> String? {
        headers.first { $0.name.asciiCaseInsensitiveEquals(name) }?.value
    }
}

/// Why a handshake is refused: the HTTP status and a one-line reason sent in the body.
public struct HandshakeRejection: Error, Equatable, Sendable {
    public var status: HTTPStatus
    public var reason: String

    public init(_ status: HTTPStatus, _ reason: String) {
        self.status = status
        self.reason = reason
    }
}

extension String {
    /// ASCII case-insensitive comparison, as HTTP field names and tokens are compared.
    func asciiCaseInsensitiveEquals(_ other: String) -> Bool {
        var a = self, b = other
        return a.withUTF8 { x in
            b.withUTF8 { y in
                guard x.count == y.count else { return false }
                for i in 0..<x.count where x[i] != y[i] {
                    let lower = x[i] | 0x20
                    guard lower == y[i] | 0x20, lower >= 0x61, lower <= 0x7A else { return false }
                }
                return true
            }
        }
    }

    /// Whether a comma-separated header value contains `token` (case-insensitive).
    func containsToken(_ token: String) -> Bool {
        commaSeparatedTokens.contains { String($0).asciiCaseInsensitiveEquals(token) }
    }

    /// The comma-separated elements of a list-valued header (RFC 9110 §5.6.1), trimmed, empty ones dropped.
    var commaSeparatedTokens: [Substring] {
        split(separator: ",").map { $0.trimmingHTTPWhitespace }.filter { !$0.isEmpty }
    }
}

extension StringProtocol {
    var trimmingHTTPWhitespace: Substring {
        var s = self[...]
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return Substring(s)
    }
}
