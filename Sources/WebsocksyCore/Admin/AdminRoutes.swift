/// The admin listener's answers, without I/O: a request line in, a whole HTTP response out.
///
/// - `/healthz`: 200 while the process runs its loop (a liveness check).
/// - `/readyz`: 200 while new clients are welcome, 503 from the moment a graceful stop begins, so
///   a load balancer checking it takes the instance out before its connections are closed.
/// - `/metrics`: the Prometheus text format (`Metrics`).
enum AdminRoutes {
    /// The response to one request line (`GET /metrics HTTP/1.1`); `metrics` is only called for /metrics.
    static func respond(to requestLine: Substring, ready: Bool, metrics: () -> String) -> [UInt8] {
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else {
            return response(400, "Bad Request", "text/plain", "bad request line\n", head: false)
        }
        let method = parts[0], target = parts[1]
        guard method == "GET" || method == "HEAD" else {
            return response(405, "Method Not Allowed", "text/plain", "GET or HEAD\n", head: false, extra: "Allow: GET, HEAD\r\n")
        }
        let head = method == "HEAD"
        let path = target.prefix { $0 != "?" }
        switch path {
        case "/healthz":
            return response(200, "OK", "text/plain", "ok\n", head: head)
        case "/readyz":
            return ready ? response(200, "OK", "text/plain", "ready\n", head: head)
                         : response(503, "Service Unavailable", "text/plain", "stopping\n", head: head)
        case "/metrics":
            return response(200, "OK", PrometheusText.contentType, metrics(), head: head)
        default:
            return response(404, "Not Found", "text/plain", "/metrics, /healthz or /readyz\n", head: head)
        }
    }

    private static func response(_ status: Int, _ reason: String, _ type: String, _ body: String, head: Bool, extra: String = "") -> [UInt8] {
        var text = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(type)\r\nContent-Length: \(body.utf8.count)\r\n"
        text += "Cache-Control: no-store\r\nConnection: close\r\n\(extra)\r\n"
        if !head { text += body }
        return Array(text.utf8)
    }
}
