/// Incremental, bounded parser for the opening handshake request (RFC 6455 §4.2.1 over HTTP/1.1).
///
/// Bytes may arrive one per segment: `parse` is called with everything received so far and only
/// scans what is new for the end of the header block, so the cost stays linear. Frame bytes may
/// follow the request in the same read; `consumed` says where the request ended.
public struct HandshakeParser: Sendable {
    public enum Result {
        case incomplete
        case complete(HandshakeRequest, consumed: Int)
        /// A well-formed HTTP request that is not a WebSocket upgrade (for the web root).
        case plain(PlainRequest, consumed: Int)
        case rejected(HandshakeRejection)
    }

    /// Limit on the request line plus headers, in bytes (→ 431).
    public var maxHeaderBytes: Int
    /// Limit on the number of header lines (→ 431).
    public var maxHeaderCount: Int
    /// Where the search for the blank line resumes.
    private var scanned = 0

    public init(maxHeaderBytes: Int = 16384, maxHeaderCount: Int = 100) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
    }

    public mutating func parse(_ bytes: UnsafeRawBufferPointer) -> Result {
        guard let end = findEndOfHeaders(bytes) else {
            if bytes.count > maxHeaderBytes {
                return .rejected(.init(.requestHeaderFieldsTooLarge, "request header exceeds \(maxHeaderBytes) bytes"))
            }
            return .incomplete
        }
        if end > maxHeaderBytes {
            return .rejected(.init(.requestHeaderFieldsTooLarge, "request header exceeds \(maxHeaderBytes) bytes"))
        }
        do {
            switch try Self.validate(UnsafeRawBufferPointer(rebasing: bytes[0..<end]), maxHeaderCount: maxHeaderCount) {
            case .upgrade(let request): return .complete(request, consumed: end)
            case .plain(let request): return .plain(request, consumed: end)
            }
        } catch {
            return .rejected(error)
        }
    }

    /// The offset just past the empty line ending the header block. Accepts CRLF and bare LF line
    /// ends (RFC 9112 §2.2 lets a recipient treat a lone LF as a line terminator).
    private mutating func findEndOfHeaders(_ bytes: UnsafeRawBufferPointer) -> Int? {
        let lf = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r")
        var i = max(scanned, 0)
        while i < bytes.count {
            if bytes[i] == lf {
                if i + 1 < bytes.count && bytes[i + 1] == lf { return i + 2 }
                if i + 2 < bytes.count && bytes[i + 1] == cr && bytes[i + 2] == lf { return i + 3 }
                if i + 2 >= bytes.count { break }  // could still become an end: rescan from here
            }
            i += 1
        }
        scanned = i
        return nil
    }

    private enum Parsed {
        case upgrade(HandshakeRequest)
        case plain(PlainRequest)
    }

    /// Checks the request in one pass over its bytes. Strings are made only for the request target,
    /// the method and the offered subprotocols; the fields stay bytes in `HeaderFields`.
    private static func validate(_ block: UnsafeRawBufferPointer, maxHeaderCount: Int) throws(HandshakeRejection) -> Parsed {
        guard block.contains(where: { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }) else {
            throw .init(.badRequest, "empty request")
        }
        var lines = Lines(block)
        let requestLine = lines.next() ?? 0..<0
        let (methodRange, targetRange, version) = try parseRequestLine(block, requestLine)
        let method = String(decoding: block[methodRange], as: UTF8.self)
        let target = String(decoding: block[targetRange], as: UTF8.self)

        var fields: [HeaderFields.Field] = []
        var hosts = 0, isUpgrade = false, connectionUpgrade = false
        var versions = 0, versionIs13 = false, keys = 0, key = 0..<0
        var protocols: [String] = []
        while let line = lines.next(), !line.isEmpty {
            guard fields.count < maxHeaderCount else {
                throw .init(.requestHeaderFieldsTooLarge, "more than \(maxHeaderCount) header fields")
            }
            guard block[line.lowerBound] != HTTPBytes.space, block[line.lowerBound] != HTTPBytes.tab else {
                throw .init(.badRequest, "obsolete header line folding")
            }
            guard let colon = block[line].firstIndex(of: UInt8(ascii: ":")) else {
                throw .init(.badRequest, "header line without a colon")
            }
            let name = line.lowerBound..<colon
            guard HTTPBytes.isToken(block, name) else { throw .init(.badRequest, "malformed header name") }
            let value = HTTPBytes.trimmed(block, colon + 1..<line.upperBound)
            fields.append((name, value))

            // The fields the handshake depends on (RFC 6455 §4.2.1).
            let nameBytes = UnsafeRawBufferPointer(rebasing: block[name])
            switch nameBytes.count {
            case 4 where HTTPBytes.caseInsensitiveEquals(nameBytes, "host"):
                hosts += 1
            case 7 where HTTPBytes.caseInsensitiveEquals(nameBytes, "upgrade"):
                isUpgrade = isUpgrade || HTTPBytes.listContains(block, value, "websocket")
            case 10 where HTTPBytes.caseInsensitiveEquals(nameBytes, "connection"):
                connectionUpgrade = connectionUpgrade || HTTPBytes.listContains(block, value, "upgrade")
            case 17 where HTTPBytes.caseInsensitiveEquals(nameBytes, "sec-websocket-key"):
                keys += 1
                key = value
            case 21 where HTTPBytes.caseInsensitiveEquals(nameBytes, "sec-websocket-version"):
                versions += 1
                versionIs13 = block[value].elementsEqual("13".utf8)
            case 22 where HTTPBytes.caseInsensitiveEquals(nameBytes, "sec-websocket-protocol"):
                try HTTPBytes.forEachListElement(block, value) { (token) throws(HandshakeRejection) -> Bool in
                    guard HTTPBytes.isToken(block, token) else { throw .init(.badRequest, "malformed Sec-WebSocket-Protocol") }
                    protocols.append(String(decoding: block[token], as: UTF8.self))
                    return true
                }
            default:
                break
            }
        }
        let headers = HeaderFields(bytes: Array(block), fields: fields)
        guard isUpgrade else {
            return .plain(PlainRequest(method: method, target: target, minorVersion: version, headers: headers))
        }
        guard method == "GET" else { throw .init(.badRequest, "method \(LogText.capped(method)) is not GET") }
        guard version >= 1 else { throw .init(.badRequest, "HTTP/1.1 or later is required") }
        guard hosts == 1 else { throw .init(.badRequest, "exactly one Host header is required") }
        guard connectionUpgrade else { throw .init(.badRequest, "Connection header does not contain Upgrade") }
        guard versions == 1, versionIs13 else {
            throw .init(.upgradeRequired, "unsupported WebSocket version (only 13 is supported)")
        }
        guard keys == 1, WebSocketAccept.isValidKey(UnsafeRawBufferPointer(rebasing: block[key])) else {
            throw .init(.badRequest, "Sec-WebSocket-Key must be one base64-encoded 16-byte value")
        }
        return .upgrade(HandshakeRequest(target: target, headers: headers,
                                         key: String(decoding: block[key], as: UTF8.self), protocols: protocols))
    }

    /// "METHOD SP target SP HTTP/1.x" (RFC 9112 §3): the method and target ranges and the minor version.
    private static func parseRequestLine(_ block: UnsafeRawBufferPointer, _ line: Range<Int>)
        throws(HandshakeRejection) -> (method: Range<Int>, target: Range<Int>, minorVersion: Int) {
        let malformed = HandshakeRejection(.badRequest, "malformed request line")
        guard let firstSpace = block[line].firstIndex(of: HTTPBytes.space) else { throw malformed }
        let method = line.lowerBound..<firstSpace
        guard HTTPBytes.isToken(block, method),
              let secondSpace = block[firstSpace + 1..<line.upperBound].firstIndex(of: HTTPBytes.space),
              !block[secondSpace + 1..<line.upperBound].contains(HTTPBytes.space) else { throw malformed }
        let target = firstSpace + 1..<secondSpace
        guard target.first.map({ block[$0] == UInt8(ascii: "/") }) == true else {
            throw .init(.badRequest, "request target must be an absolute path")
        }
        let version = block[secondSpace + 1..<line.upperBound]
        guard version.count == 8, version.starts(with: "HTTP/1.".utf8),
              let digit = version.last, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(digit) else {
            throw .init(.badRequest, "not an HTTP/1.x request")
        }
        return (method, target, Int(digit - UInt8(ascii: "0")))
    }

    /// The lines of a header block: ranges without their LF or CRLF ending.
    private struct Lines {
        let bytes: UnsafeRawBufferPointer
        var position = 0

        init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        mutating func next() -> Range<Int>? {
            guard position < bytes.count else { return nil }
            let start = position
            var end = start
            while end < bytes.count, bytes[end] != UInt8(ascii: "\n") { end += 1 }
            position = end + 1
            if end > start, bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            return start..<end
        }
    }
}
