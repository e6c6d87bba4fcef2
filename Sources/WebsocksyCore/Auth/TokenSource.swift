/// Where an upgrade request's token is looked for (`auth-token`). Browsers cannot set headers on
/// a WebSocket, so a page passes its token in the URL, a cookie or a subprotocol entry;
/// non-browser clients send `Authorization: Bearer`.
public enum TokenSource: Equatable, Sendable, CustomStringConvertible {
    /// A query parameter, percent-decoded.
    case query(String)
    case cookie(String)
    /// `Authorization: Bearer TOKEN` (RFC 6750 §2.1).
    case bearer
    /// A `Sec-WebSocket-Protocol` entry starting with this prefix; the entry is not a subprotocol
    /// and is never selected.
    case subprotocol(prefix: String)

    public static let defaults: [TokenSource] = [.query("token"), .cookie("token"), .bearer]

    public static func parse(_ text: String) -> TokenSource? {
        let trimmed = String(text.trimmingHTTPWhitespace)
        if trimmed.lowercased() == "bearer" { return .bearer }
        guard let colon = trimmed.firstIndex(of: ":") else { return nil }
        let name = String(trimmed[trimmed.index(after: colon)...])
        guard !name.isEmpty, !name.contains(where: { $0 == " " || $0 == "," || $0 == ";" || $0 == "=" }) else { return nil }
        switch trimmed[..<colon].lowercased() {
        case "query": return .query(name)
        case "cookie": return .cookie(name)
        case "protocol": return .subprotocol(prefix: name)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .query(let name): "query:\(name)"
        case .cookie(let name): "cookie:\(name)"
        case .bearer: "bearer"
        case .subprotocol(let prefix): "protocol:\(prefix)"
        }
    }

    /// The token from the first source (in configured order) that has one. It is taken out of the
    /// request: the query parameters of `query:` sources leave the target (which the access log
    /// and the backend see) and the subprotocol entries with a configured prefix leave
    /// `request.protocols`, whether or not they supplied the token.
    static func take(from request: inout HandshakeRequest, sources: [TokenSource]) -> String? {
        var found: String?
        for source in sources {
            let token: String?
            switch source {
            case .query(let name):
                token = queryParameter(name, in: request.target)
                if token != nil { request.target = removingQueryParameter(name, from: request.target) }
            case .cookie(let name): token = cookie(name, in: request.headers.values("Cookie"))
            case .bearer: token = bearer(request.header("Authorization"))
            case .subprotocol(let prefix):
                let entry = request.protocols.first { $0.hasPrefix(prefix) && $0.utf8.count > prefix.utf8.count }
                request.protocols.removeAll { $0.hasPrefix(prefix) }
                token = entry.map { String($0.dropFirst(prefix.count)) }
            }
            if found == nil, let token, !token.isEmpty { found = token }
        }
        return found
    }

    /// The first `name=value` of the query, its value percent-decoded. Scanned as bytes: a token
    /// makes the target long, and walking it by Characters cost a third of an upgrade.
    static func queryParameter(_ name: String, in target: String) -> String? {
        let bytes = Array(target.utf8)
        for item in queryItems(bytes) where itemName(bytes[item.name]) == name {
            guard let value = item.value else { return "" }
            // A value with a bad escape is still the token given (refused as malformed, not as missing).
            return PercentEncoding.decode(bytes: bytes[value], plusIsSpace: true) ?? String(decoding: bytes[value], as: UTF8.self)
        }
        return nil
    }

    /// `target` without any `name=…` parameter (the rest of the query as written).
    static func removingQueryParameter(_ name: String, from target: String) -> String {
        let bytes = Array(target.utf8)
        guard let question = bytes.firstIndex(of: UInt8(ascii: "?")) else { return target }
        var out = Array(bytes[..<question])
        for item in queryItems(bytes) where itemName(bytes[item.name]) != name {
            out.append(out.count == question ? UInt8(ascii: "?") : UInt8(ascii: "&"))
            out += bytes[item.whole]
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func itemName(_ raw: ArraySlice<UInt8>) -> String? {
        PercentEncoding.decode(bytes: raw, plusIsSpace: true)
    }

    /// The `&`-separated items of the query part of `bytes` (after the first `?`), as ranges.
    private static func queryItems(_ bytes: [UInt8]) -> [(whole: Range<Int>, name: Range<Int>, value: Range<Int>?)] {
        guard let question = bytes.firstIndex(of: UInt8(ascii: "?")) else { return [] }
        var items: [(whole: Range<Int>, name: Range<Int>, value: Range<Int>?)] = []
        var start = question + 1
        while start <= bytes.count {
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "&")) ?? bytes.count
            if let equals = bytes[start..<end].firstIndex(of: UInt8(ascii: "=")) {
                items.append((start..<end, start..<equals, (equals + 1)..<end))
            } else {
                items.append((start..<end, start..<end, nil))
            }
            start = end + 1
        }
        return items
    }

    static func cookie(_ name: String, in headers: [String]) -> String? {
        for header in headers {
            for pair in header.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2, parts[0].trimmingHTTPWhitespace == name else { continue }
                var value = parts[1].trimmingHTTPWhitespace
                if value.count >= 2, value.first == "\"", value.last == "\"" { value = value.dropFirst().dropLast() }
                return String(value)
            }
        }
        return nil
    }

    static func bearer(_ header: String?) -> String? {
        guard let header else { return nil }
        let parts = header.trimmingHTTPWhitespace.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return String(parts[1].trimmingHTTPWhitespace)
    }

    /// Query strings are written as forms encode them: `+` is a space.
    static func percentDecoded(_ text: Substring) -> String? {
        PercentEncoding.decode(text, plusIsSpace: true)
    }
}
