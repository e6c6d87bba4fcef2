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
        let a = utf8, b = other.utf8
        guard a.count == b.count else { return false }
        return zip(a, b).allSatisfy { x, y in
            x == y || (x | 0x20 == y | 0x20 && (x | 0x20) >= 0x61 && (x | 0x20) <= 0x7A)
        }
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
