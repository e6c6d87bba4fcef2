import CWebsocksy
import Glibc

/// One of several services on one port, chosen by request path (wsgw's model):
/// `service = PATH,PEER[,MODE[,LINE-END]]` on the defaultpeer backend.
struct Service {
    /// How messages map to the peer's bytes.
    enum Mode: String {
        /// Bytes as they come, binary messages (`binary` framing).
        case binary
        /// Lines: a line end added to each client message, each peer line a text message without it.
        case text
        /// Text when the query string says `encoding=text`, else binary (wsgw's `auto`).
        case auto
    }

    let path: String
    let address: PeerAddress
    let mode: Mode
    let lineEnd: [UInt8]
    let lineEndName: String

    /// Parses `PATH,PEER[,MODE[,LINE-END]]`.
    init(_ text: String) throws(BackendError) {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { String($0.trimmingHTTPWhitespace) }
        guard (2...4).contains(parts.count) else {
            throw BackendError("service must be PATH,PEER[,MODE[,LINE-END]], e.g. /chat,tcp://localhost:6667,text; not '\(text)'")
        }
        guard parts[0].hasPrefix("/"), !parts[0].contains("?") else {
            throw BackendError("service path must start with / and have no query, not '\(parts[0])'")
        }
        path = Self.normalized(parts[0])
        do throws(PeerAddressError) {
            address = try PeerAddress.parse(parts[1])
        } catch {
            throw BackendError("service \(parts[0]): \(error)")
        }
        try Self.checkServiceName(address)
        guard let mode = Mode(rawValue: parts.count > 2 ? parts[2].lowercased() : "binary") else {
            throw BackendError("service \(parts[0]): mode must be text, binary or auto, not '\(parts[2])'")
        }
        self.mode = mode
        lineEndName = parts.count > 3 ? parts[3].lowercased() : "lf"
        do throws(FramingConfigError) {
            lineEnd = try SeparatorSpec.newline(lineEndName)
        } catch {
            throw BackendError("service \(parts[0]): \(error)")
        }
    }

    /// Request paths compare without a trailing slash (`/chat/` is `/chat`).
    static func normalized(_ path: String) -> String {
        path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
    }

    /// Whether this request wants text: always, never, or by its query string (`auto`).
    func isText(query: Substring?) -> Bool {
        switch mode {
        case .text: return true
        case .binary: return false
        case .auto: return query?.split(separator: "&").contains("encoding=text") ?? false
        }
    }

    /// A port given by name (`tcp://mail:pop3`) must be in the services database, checked at
    /// start-up; the connect then resolves it like a number (getaddrinfo).
    static func checkServiceName(_ address: PeerAddress) throws(BackendError) {
        let (port, proto): (String, String)
        switch address {
        case .tcp(_, let p), .tls(_, let p): (port, proto) = (p, "tcp")
        case .udp(_, let p): (port, proto) = (p, "udp")
        default: return
        }
        guard Int(port) == nil else { return }
        guard getservbyname(port, proto) != nil else {
            throw BackendError("unknown service name '\(port)' for \(proto) (not in /etc/services)")
        }
    }
}
