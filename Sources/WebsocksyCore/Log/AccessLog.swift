import Glibc

/// `access-log = FILE` (`-` = stderr): one line per connection when it ends (one per request on a
/// connection kept open for several). A connection that closes without sending a request (a browser
/// preconnect, a port scan, a health check that only connects) gets its line too, `"-" 0`: the access
/// log stays complete even though the error log only counts such connections. Opened with O_APPEND so
/// lines from several workers never interleave; SIGUSR1 reopens the file after log rotation.
final class AccessLog {
    private let path: String
    private var fd: Int32

    init(path: String) throws(ConfigError) {
        self.path = path
        fd = -1
        guard reopen() else {
            throw ConfigError("access-log", "cannot open \(path): \(String(cString: strerror(errno)))")
        }
    }

    deinit { if fd > 2 { close(fd) } }

    @discardableResult
    func reopen() -> Bool {
        if path == "-" {
            fd = 2
            return true
        }
        let opened = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard opened >= 0 else {
            Log.error("cannot reopen the access log \(path): \(String(cString: strerror(errno)))")
            return false
        }
        if fd > 2 { close(fd) }
        fd = opened
        return true
    }

    func write(_ line: String) {
        var bytes = Array((line + "\n").utf8)
        _ = Glibc.write(fd, &bytes, bytes.count)
    }
}

/// What the access log records about one connection.
struct ConnectionRecord {
    var startedAt: Int64
    var request = "-"
    var status = 0
    /// The body bytes of a plain HTTP response (web root, the 426 page) that reached the socket;
    /// nil for upgrades and refused upgrades, logged `-`.
    var bodyBytes: Int?
    var subprotocol: String?
    var peer: String?
    var messagesIn = 0, bytesIn = 0, messagesOut = 0, bytesOut = 0
    var closeCode: UInt16?
    var closedBy: String?
    /// Who authenticated (a token's `sub`, an htpasswd user).
    var user: String?
    /// Messages not delivered on a shared peer (either way); logged as `dropped=` when not 0.
    var dropped = 0

    /// Longest value of one field, in bytes, before it is cut (a request target can be 16 KB).
    static let fieldLimit = 1024

    /// `time client fwd= "request" status bytes= proto= peer= in=msgs/bytes out=msgs/bytes time= close= by=`:
    /// `client` is the socket's address and port (`127.0.0.1:53122`, `[::1]:53122`, `unix-client`)
    /// or the one a trusted balancer's PROXY header carries; `fwd` the address a trusted proxy forwarded for (X-Forwarded-For / X-Real-IP),
    /// else `-`; `bytes` the body bytes of a plain HTTP response sent (`0` for HEAD and 304), `-` on
    /// WebSocket and refused-upgrade lines, whose traffic is in `in`/`out`.
    /// Fields from the network are capped and escaped (controls, `"`, `\` and, outside the quotes,
    /// spaces as `\xHH`), so every line is one line with the same fields whatever a client sends.
    func line(client: String, forwarded: String? = nil, now: Int64) -> String {
        var stamp = time(nil)
        var parts = tm()
        gmtime_r(&stamp, &parts)
        let date = String(format: parts)
        let seconds = Double(now - startedAt) / 1000
        let duration = String(Int(seconds)) + "." + String(Int((seconds - Double(Int(seconds))) * 1000) + 1000).dropFirst()
        return "\(date) \(Self.field(client)) fwd=\(Self.field(forwarded ?? "-")) \"\(Self.field(request, quoted: true))\" \(status) "
            + "bytes=\(bodyBytes.map(String.init) ?? "-") "
            + "proto=\(Self.field(subprotocol ?? "-")) peer=\(Self.field(peer ?? "-")) "
            + "in=\(messagesIn)/\(bytesIn) out=\(messagesOut)/\(bytesOut) time=\(duration) "
            + "close=\(closeCode.map(String.init) ?? "-") by=\(closedBy ?? "-") user=\(Self.field(user ?? "-"))"
            + (dropped > 0 ? " dropped=\(dropped)" : "")
    }

    private static func field(_ value: String, quoted: Bool = false) -> String {
        LogText.escaped(LogText.capped(value, to: fieldLimit), also: quoted ? [0x22, 0x5C] : [0x20, 0x22, 0x5C])
    }
}

private extension String {
    init(format parts: tm) {
        var p = parts
        var buffer = [CChar](repeating: 0, count: 32)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &p)
        self = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The address a trusted proxy forwarded for, logged as `fwd=`: from `X-Forwarded-For` (walking the
/// list from the right past other trusted proxies) or `X-Real-IP`, only when the direct client is a
/// trusted proxy; nil otherwise (the headers of anyone else are ignored).
enum ForwardedClient {
    static func address(direct: String, trusted: [String], headers: HeaderFields) -> String? {
        guard !trusted.isEmpty, trusted.contains(hostPart(direct)) else { return nil }
        if let forwarded = headers.last("X-Forwarded-For") {
            let hops = forwarded.split(separator: ",").map { String($0.trimmingHTTPWhitespace) }.filter { !$0.isEmpty }
            if let client = hops.reversed().first(where: { !trusted.contains($0) }) ?? hops.first { return client }
        }
        if let real = headers.last("X-Real-IP"), !real.isEmpty { return real }
        return nil
    }

    /// "1.2.3.4:5" → "1.2.3.4", "[::1]:5" → "::1".
    static func hostPart(_ address: String) -> String {
        if address.hasPrefix("["), let close = address.firstIndex(of: "]") {
            return String(address[address.index(after: address.startIndex)..<close])
        }
        if let colon = address.lastIndex(of: ":"), address.firstIndex(of: ":") == colon {
            return String(address[..<colon])
        }
        return address
    }
}
