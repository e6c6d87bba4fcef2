import CLinux
import Glibc

/// The web root (`web = DIR`): plain GET and HEAD requests are answered with files from one
/// directory, so a page and its WebSocket can share a port (websockify's `--web`).
public final class StaticFiles {
    /// The directory, resolved once (symbolic links followed), without a trailing slash.
    let root: String

    public init(directory: String) throws(ConfigError) {
        guard let resolved = realpath(directory, nil) else {
            throw ConfigError("web", "cannot use \(directory): \(String(cString: strerror(errno)))")
        }
        defer { free(resolved) }
        root = String(cString: resolved)
        guard PluginDirectory.isDirectory(root) else { throw ConfigError("web", "\(directory) is not a directory") }
    }

    /// The answer to a plain request: a file (opened here, streamed by the connection), 304, or an error page.
    public func respond(to request: PlainRequest) -> WebResponse {
        guard request.method == "GET" || request.method == "HEAD" else {
            return Self.page(405, "Method Not Allowed", "Only GET and HEAD are served here.", extra: "Allow: GET, HEAD\r\n")
        }
        guard let path = resolve(request.target) else {
            return Self.page(404, "Not Found", "Not found.")
        }
        // O_NONBLOCK: opening a FIFO someone left in the root must not stall the event loop.
        // O_NOFOLLOW: `path` is already resolved, so a link here was swapped in since the check.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW)
        guard fd >= 0 else {
            return errno == EACCES ? Self.page(403, "Forbidden", "Cannot read the file.") : Self.page(404, "Not Found", "Not found.")
        }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            return Self.page(404, "Not Found", "Not found.")
        }
        let body = FileBody(fd: fd, length: Int(st.st_size))
        let modified = Self.httpDate(st.st_mtim.tv_sec)
        if let since = request.header("If-Modified-Since"), let sinceTime = Self.parseHTTPDate(since), st.st_mtim.tv_sec <= sinceTime {
            return WebResponse(status: 304, head: "HTTP/1.1 304 Not Modified\r\nLast-Modified: \(modified)\r\n")
        }
        return WebResponse(status: 200,
                           head: "HTTP/1.1 200 OK\r\nContent-Type: \(Self.contentType(path))\r\nContent-Length: \(body.end)\r\n"
                               + "Last-Modified: \(modified)\r\nX-Content-Type-Options: nosniff\r\n",
                           file: request.method == "GET" && body.end > 0 ? body : nil)
    }

    /// The file a request target names, or nil when it does not exist or lies outside the root
    /// (`..`, encoded slashes and symbolic links are all settled by resolving the real path).
    /// A directory's `index.html` is resolved and checked again: it may itself be a link out.
    func resolve(_ target: String) -> String? {
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? "/"
        guard let decoded = Self.percentDecode(path), !decoded.contains("\0"),
              let resolved = contained(root + decoded) else { return nil }
        return PluginDirectory.isDirectory(resolved) ? contained(resolved + "/index.html") : resolved
    }

    /// The real path of `path` (every symbolic link followed) when it lies inside the root, else nil.
    private func contained(_ path: String) -> String? {
        guard let real = realpath(path, nil) else { return nil }
        defer { free(real) }
        let resolved = String(cString: real)
        return resolved == root || resolved.hasPrefix(root + "/") ? resolved : nil
    }

    static func percentDecode(_ s: String) -> String? {
        var out: [UInt8] = []
        var bytes = Array(s.utf8)[...]
        while let b = bytes.popFirst() {
            if b == UInt8(ascii: "%") {
                guard let h = bytes.popFirst(), let l = bytes.popFirst(),
                      let hi = UInt8(String(UnicodeScalar(h)), radix: 16), let lo = UInt8(String(UnicodeScalar(l)), radix: 16) else { return nil }
                out.append(hi << 4 | lo)
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func contentType(_ path: String) -> String {
        let ext = path.split(separator: ".").last.map { $0.lowercased() } ?? ""
        switch ext {
        case "html", "htm": return "text/html; charset=utf-8"
        case "css": return "text/css; charset=utf-8"
        case "js", "mjs": return "text/javascript; charset=utf-8"
        case "json", "map": return "application/json"
        case "txt": return "text/plain; charset=utf-8"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        case "jpg", "jpeg": return "image/jpeg"
        case "gif": return "image/gif"
        case "ico": return "image/x-icon"
        case "wasm": return "application/wasm"
        case "woff2": return "font/woff2"
        default: return "application/octet-stream"
        }
    }

    /// A short HTML page.
    static func page(_ status: Int, _ reason: String, _ text: String, extra: String = "") -> WebResponse {
        let body = "<!doctype html><title>\(status) \(reason)</title><h1>\(status) \(reason)</h1><p>\(text)</p>\n"
        return WebResponse(status: status,
                           head: "HTTP/1.1 \(status) \(reason)\r\nContent-Type: text/html; charset=utf-8\r\n"
                               + "Content-Length: \(body.utf8.count)\r\n" + extra,
                           body: Array(body.utf8))
    }

    /// IMF-fixdate (RFC 9110 §5.6.7), e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
    static func httpDate(_ seconds: time_t) -> String {
        var t = seconds
        var parts = tm()
        gmtime_r(&t, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let n = strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func parseHTTPDate(_ text: String) -> time_t? {
        var parts = tm()
        guard text.withCString({ clinux_strptime($0, "%a, %d %b %Y %H:%M:%S GMT", &parts) }) != nil else { return nil }
        return timegm(&parts)
    }
}
