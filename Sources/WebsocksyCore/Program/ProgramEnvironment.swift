/// The environment of an `exec://` program: CGI-style variables about the request (as websocketd
/// sets them), plus the gateway's own variables named in `exec-env` — nothing else of the
/// gateway's environment, which may hold secrets.
public enum ProgramEnvironment {
    public struct Request {
        public var target: String
        public var headers: [(name: String, value: String)]
        public var clientIP: String?
        public var clientPort: String?
        public var serverPort: String
        public var subprotocol: String?
        public var user: String?
    }

    public static let defaultPath = "/usr/local/bin:/usr/bin:/bin"

    public static func variables(_ request: Request, passing names: [String], from environment: (String) -> String?) -> [String] {
        let question = request.target.firstIndex(of: "?")
        let path = question.map { String(request.target[..<$0]) } ?? request.target
        let query = question.map { String(request.target[request.target.index(after: $0)...]) } ?? ""
        var host = request.headers.first { $0.name.asciiCaseInsensitiveEquals("Host") }?.value ?? ""
        if let colon = host.lastIndex(of: ":"), !host.hasSuffix("]") { host = String(host[..<colon]) }
        var out = [
            "GATEWAY_INTERFACE=websocksy/1",
            "SERVER_SOFTWARE=websocksy/\(Version.string)",
            "SERVER_PROTOCOL=HTTP/1.1",
            "REQUEST_METHOD=GET",
            "REQUEST_URI=\(request.target)",
            "SCRIPT_NAME=",
            "PATH_INFO=\(path)",
            "QUERY_STRING=\(query)",
            "SERVER_NAME=\(host)",
            "SERVER_PORT=\(request.serverPort)",
            "REMOTE_ADDR=\(request.clientIP ?? "")",
            "REMOTE_PORT=\(request.clientPort ?? "")",
        ]
        if let subprotocol = request.subprotocol { out.append("WEBSOCKET_PROTOCOL=\(subprotocol)") }
        if let user = request.user { out.append("REMOTE_USER=\(user)") }
        var seen = Set<String>()
        for (name, value) in request.headers {
            let key = "HTTP_" + String(name.uppercased().map { $0 == "-" ? "_" : $0 })
            // Names that would not survive as a variable name, and repeats (the first wins).
            guard key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }), seen.insert(key).inserted else { continue }
            out.append("\(key)=\(value)")
        }
        var passedPath = false
        for name in names {
            guard let value = environment(name) else { continue }
            out.append("\(name)=\(value)")
            if name == "PATH" { passedPath = true }
        }
        if !passedPath { out.append("PATH=\(defaultPath)") }
        // A NUL would cut a C string short: such a variable is left out rather than altered.
        return out.filter { !$0.utf8.contains(0) }
    }
}
