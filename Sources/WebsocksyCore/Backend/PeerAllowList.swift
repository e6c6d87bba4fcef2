import Glibc

/// The peers a token may name (`-b token`, `allow=`): a leaked signing key must not be a key to
/// the whole network. Entries:
/// - `tcp://10.0.0.0/8:5900-5999`, `udp://[fd00::]/8:53`, `tls://192.0.2.7:*`: addresses by CIDR,
///   ports by number, range or `*`;
/// - `tcp://vnc.internal:5900`: a host name, allowed as a name (case-insensitive);
/// - `unix:///run/vnc/` (a directory: any socket inside it), `unix:///run/app.sock` (that socket);
///   `unix-dgram://` alike. `unix:/run/vnc/` is read the same way.
/// A host name not listed by name is allowed only as far as what it resolves to: `PeerConnector`
/// connects to no address outside the address entries (`PeerChoice.addressCheck`), so a name
/// that resolves somewhere else — now, or after a DNS change — is refused with 403.
struct PeerAllowList {
    enum Entry: Equatable {
        case network(scheme: String, range: AddressRange, ports: ClosedRange<Int>)
        case host(scheme: String, name: String, ports: ClosedRange<Int>)
        case socketDirectory(scheme: String, path: String)
        case socket(scheme: String, path: String)
        /// `exec:///usr/bin/prog`: that program, with any arguments.
        case program(path: String)
    }

    private(set) var entries: [Entry] = []

    enum Decision {
        case allowed
        /// Allowed only for resolved addresses that pass the check.
        case allowedIfResolvedInside(([UInt8]) -> Bool)
        case refused(String)
    }

    mutating func add(_ text: String) throws(BackendError) {
        guard let entry = Self.parse(text) else {
            throw BackendError("allow entry '\(text)' is not SCHEME://ADDRESS[/LENGTH]:PORTS, SCHEME://HOST:PORTS (PORTS: N, N-M or *) or unix:///DIR/")
        }
        entries.append(entry)
    }

    static func parse(_ text: String) -> Entry? {
        guard let separator = text.firstIndex(of: ":") else { return nil }
        let scheme = text[..<separator].lowercased()
        var rest = text[text.index(after: separator)...]
        switch scheme {
        case "exec":
            guard rest.hasPrefix("///"), !rest.contains("?"), normalized(String(rest.dropFirst(2))) != nil else { return nil }
            return .program(path: String(rest.dropFirst(2)))
        case "unix", "unix-dgram":
            if rest.hasPrefix("//") { rest = rest.dropFirst(2) }
            let path = String(rest)
            guard path.hasPrefix("/") || path.hasPrefix("@"), normalized(path) != nil else { return nil }
            return path.hasSuffix("/") ? .socketDirectory(scheme: scheme, path: path) : .socket(scheme: scheme, path: path)
        case "tcp", "udp", "tls":
            guard rest.hasPrefix("//") else { return nil }
            rest = rest.dropFirst(2)
            guard let colon = rest.lastIndex(of: ":"), let ports = portRange(rest[rest.index(after: colon)...]) else { return nil }
            var host = String(rest[..<colon])
            if host.hasPrefix("[") {
                // [v6] or [v6]/length
                guard let close = host.firstIndex(of: "]") else { return nil }
                host = String(host[host.index(after: host.startIndex)..<close]) + String(host[host.index(after: close)...])
            }
            if let range = AddressRange.parse(host) { return .network(scheme: scheme, range: range, ports: ports) }
            // A name has a letter: "300.0.0.1" is a mistyped address, not a host to resolve.
            guard !host.isEmpty, host.contains(where: \.isLetter),
                  host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_") }) else { return nil }
            return .host(scheme: scheme, name: canonicalName(host), ports: ports)
        default:
            return nil
        }
    }

    private static func portRange(_ text: Substring) -> ClosedRange<Int>? {
        if text == "*" { return 1...65535 }
        let parts = text.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard let low = Int(parts[0]), (1...65535).contains(low) else { return nil }
        guard parts.count == 2 else { return low...low }
        guard let high = Int(parts[1]), (low...65535).contains(high) else { return nil }
        return low...high
    }

    private static func canonicalName(_ name: String) -> String {
        let lower = name.lowercased()
        return lower.hasSuffix(".") ? String(lower.dropLast()) : lower
    }

    /// A socket path without `.` or `..` components or empty ones (`//`), or nil.
    static func normalized(_ path: String) -> String? {
        if path.hasPrefix("@") { return path }
        let components = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        for (index, component) in components.enumerated() {
            if component == "." || component == ".." { return nil }
            if component.isEmpty && index != components.count - 1 { return nil }
        }
        return path
    }

    func decide(_ address: PeerAddress) -> Decision {
        switch address {
        case .echo:
            return .refused("echo:// is not in the allow-list")
        case .program(let path, _):
            return entries.contains(.program(path: path)) ? .allowed : .refused("exec://\(path) is not in the allow-list")
        case .fifo, .fifoOut, .standardInput:
            return .refused("\(address.scheme):// peers are not for tokens to name")
        case .tcp(let host, let port), .tls(let host, let port), .udp(let host, let port):
            let scheme = address.scheme
            guard let number = Int(port) else { return .refused("port '\(LogText.capped(port, to: 32))' is not a number") }
            if let ip = AddressRange.ipBytes(host, family: AF_INET) ?? AddressRange.ipBytes(host, family: AF_INET6) {
                return inside(ip, scheme: scheme, port: number) ? .allowed : .refused("\(address) is not in the allow-list")
            }
            let name = Self.canonicalName(host)
            if entries.contains(where: { if case .host(scheme, name, let ports) = $0 { ports.contains(number) } else { false } }) {
                return .allowed
            }
            let hasNetworks = entries.contains { if case .network(scheme, _, let ports) = $0 { ports.contains(number) } else { false } }
            guard hasNetworks else { return .refused("\(address) is not in the allow-list") }
            return .allowedIfResolvedInside { self.inside($0, scheme: scheme, port: number) }
        case .unixStream(let path), .unixDatagram(let path):
            let scheme = address.scheme
            guard let path = Self.normalized(path) else { return .refused("socket path with . or .. components") }
            let allowed = entries.contains {
                switch $0 {
                case .socket(scheme, let exact): exact == path
                case .socketDirectory(scheme, let directory): path.hasPrefix(directory) && path.count > directory.count && !path.hasSuffix("/")
                default: false
                }
            }
            return allowed ? .allowed : .refused("\(address) is not in the allow-list")
        }
    }

    private func inside(_ ip: [UInt8], scheme: String, port: Int) -> Bool {
        entries.contains {
            if case .network(scheme, let range, let ports) = $0 { ports.contains(port) && range.contains(ip) } else { false }
        }
    }
}

extension PeerAddress {
    /// The scheme as written in addresses and allow-list entries.
    var scheme: String {
        switch self {
        case .echo: "echo"
        case .tcp: "tcp"
        case .tls: "tls"
        case .udp: "udp"
        case .unixStream: "unix"
        case .unixDatagram: "unix-dgram"
        case .program: "exec"
        case .fifo: "fifo"
        case .fifoOut: "fifo-out"
        case .standardInput: "stdin"
        }
    }
}
