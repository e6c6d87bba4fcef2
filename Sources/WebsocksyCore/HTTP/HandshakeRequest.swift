/// A validated WebSocket opening handshake request (RFC 6455 §4.2.1), kept for the backend.
public struct HandshakeRequest: Sendable {
    /// The request target: path and query as the client sent them.
    public var target: String
    /// Every header in arrival order, names spelled as the client sent them.
    public var headers: HeaderFields
    /// `Sec-WebSocket-Key`, already checked to decode to 16 bytes.
    public var key: String
    /// Subprotocols offered in `Sec-WebSocket-Protocol`, in order, across all such headers.
    public var protocols: [String]
    /// The client's IP address as text (the PROXY header's, when a trusted balancer sent one);
    /// nil on a Unix-socket listener. Set by the connection, for backends (`core_client_address`).
    public var clientIP: String?
    /// A verified token's claims (`auth-keys`, `auth-secret`), for backends: the `token` backend
    /// routes by them, plugins read them with `core_claim`.
    public var claims: [String: JSONValue] = [:]
    /// Who authenticated: the token's `sub` or the htpasswd user (the access log's `user=`).
    public var user: String?

    /// The first header with this name (case-insensitive).
    public func header(_ name: String) -> String? { headers.first(name) }
}

/// An HTTP request that is not a WebSocket upgrade.
public struct PlainRequest: Sendable {
    public var method: String
    public var target: String
    /// x of HTTP/1.x.
    public var minorVersion: Int
    public var headers: HeaderFields

    public func header(_ name: String) -> String? { headers.first(name) }

    /// Whether the client lets the connection stay open for another request (RFC 9112 §9.3):
    /// HTTP/1.1 unless it says `close`, HTTP/1.0 only with `keep-alive`. A request announcing a body
    /// never does: bodies are not read here, so the next request could not be found.
    public var allowsPersistence: Bool {
        if headers.first("Transfer-Encoding") != nil { return false }
        if let length = headers.first("Content-Length"), length != "0" { return false }
        let connection = (headers.first("Connection") ?? "").lowercased()
        let tokens = connection.split(separator: ",").map { $0.trimmingHTTPWhitespace }
        return minorVersion >= 1 ? !tokens.contains("close") : tokens.contains("keep-alive")
    }
}

/// Why a handshake is refused: the HTTP status and a one-line reason sent in the body.
public struct HandshakeRejection: Error, Equatable, Sendable {
    public var status: HTTPStatus
    public var reason: String
    /// Seconds after which a client refused for its rate may try again (429's `Retry-After`).
    public var retryAfter: Int?
    /// `WWW-Authenticate` of a 401.
    public var challenge: String?

    public init(_ status: HTTPStatus, _ reason: String, retryAfter: Int? = nil, challenge: String? = nil) {
        self.status = status
        self.reason = reason
        self.retryAfter = retryAfter
        self.challenge = challenge
    }
}

extension String {
    /// ASCII case-insensitive comparison, as HTTP field names and tokens are compared.
    func asciiCaseInsensitiveEquals(_ other: String) -> Bool {
        var a = self, b = other
        return a.withUTF8 { x in b.withUTF8 { HTTPBytes.caseInsensitiveEquals(UnsafeRawBufferPointer(x), $0) } }
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
