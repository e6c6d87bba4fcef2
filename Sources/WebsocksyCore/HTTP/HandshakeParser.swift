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

    private static func validate(_ block: UnsafeRawBufferPointer, maxHeaderCount: Int) throws(HandshakeRejection) -> Parsed {
        var lines = block.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { line -> Substring in
            let trimmed = line.last == UInt8(ascii: "\r") ? line.dropLast() : line
            return Substring(decoding: trimmed, as: UTF8.self)
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard !lines.isEmpty else { throw .init(.badRequest, "empty request") }

        let requestLine = lines.removeFirst().split(separator: " ", omittingEmptySubsequences: false)
        guard requestLine.count == 3, !requestLine[0].isEmpty, requestLine[0].utf8.allSatisfy(isTokenByte) else {
            throw .init(.badRequest, "malformed request line")
        }
        let method = String(requestLine[0])
        let target = String(requestLine[1])
        guard target.hasPrefix("/") else { throw .init(.badRequest, "request target must be an absolute path") }
        guard let version = httpMinorVersion(requestLine[2]) else { throw .init(.badRequest, "not an HTTP/1.x request") }
        guard lines.count <= maxHeaderCount else {
            throw .init(.requestHeaderFieldsTooLarge, "more than \(maxHeaderCount) header fields")
        }

        var headers: [(name: String, value: String)] = []
        headers.reserveCapacity(lines.count)
        for line in lines {
            guard let first = line.first, first != " ", first != "\t" else {
                throw .init(.badRequest, "obsolete header line folding")
            }
            guard let colon = line.firstIndex(of: ":") else { throw .init(.badRequest, "header line without a colon") }
            let name = line[..<colon]
            guard !name.isEmpty, name.utf8.allSatisfy(isTokenByte) else {
                throw .init(.badRequest, "malformed header name")
            }
            headers.append((String(name), String(line[line.index(after: colon)...].trimmingHTTPWhitespace)))
        }

        // One pass sorts out the headers the handshake depends on (RFC 6455 §4.2.1).
        var hosts = 0, isUpgrade = false, connectionUpgrade = false
        var versions: [String] = [], keys: [String] = [], protocols: [String] = []
        for (name, value) in headers {
            if name.asciiCaseInsensitiveEquals("Upgrade") {
                isUpgrade = isUpgrade || value.containsToken("websocket")
            } else if name.asciiCaseInsensitiveEquals("Connection") {
                connectionUpgrade = connectionUpgrade || value.containsToken("upgrade")
            } else if name.asciiCaseInsensitiveEquals("Host") {
                hosts += 1
            } else if name.asciiCaseInsensitiveEquals("Sec-WebSocket-Version") {
                versions.append(value)
            } else if name.asciiCaseInsensitiveEquals("Sec-WebSocket-Key") {
                keys.append(value)
            } else if name.asciiCaseInsensitiveEquals("Sec-WebSocket-Protocol") {
                for token in value.commaSeparatedTokens {
                    guard token.utf8.allSatisfy(isTokenByte) else { throw .init(.badRequest, "malformed Sec-WebSocket-Protocol") }
                    protocols.append(String(token))
                }
            }
        }
        guard isUpgrade else {
            return .plain(PlainRequest(method: method, target: target, headers: headers))
        }
        guard method == "GET" else { throw .init(.badRequest, "method \(method) is not GET") }
        guard version >= 1 else { throw .init(.badRequest, "HTTP/1.1 or later is required") }
        guard hosts == 1 else { throw .init(.badRequest, "exactly one Host header is required") }
        guard connectionUpgrade else { throw .init(.badRequest, "Connection header does not contain Upgrade") }
        guard versions.count == 1, versions[0] == "13" else {
            throw .init(.upgradeRequired, "unsupported WebSocket version (only 13 is supported)")
        }
        guard keys.count == 1, WebSocketAccept.isValidKey(keys[0]) else {
            throw .init(.badRequest, "Sec-WebSocket-Key must be one base64-encoded 16-byte value")
        }
        return .upgrade(HandshakeRequest(target: target, headers: headers, key: keys[0], protocols: protocols))
    }

    /// The minor version of "HTTP/1.x", nil for anything else.
    private static func httpMinorVersion(_ s: Substring) -> Int? {
        guard s.hasPrefix("HTTP/1."), s.count == 8, let digit = s.last?.wholeNumberValue else { return nil }
        return digit
    }

    /// RFC 9110 §5.6.2 tchar.
    private static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
             UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }
}
