/// Where a connection's data goes: websocksy's peer address schemes plus the built-in echo peer.
public enum PeerAddress: Equatable, Sendable, CustomStringConvertible {
    /// The built-in echo peer: every message goes back to the client with its opcode unchanged.
    case echo
    case tcp(host: String, port: String)
    /// TCP with a TLS client session (certificate and name verified unless turned off).
    case tls(host: String, port: String)
    case udp(host: String, port: String)
    /// A Unix stream socket; a path starting with `@` names a Linux abstract socket.
    case unixStream(path: String)
    case unixDatagram(path: String)
    /// A program started for the connection (`exec:///PATH?ARG&ARG`): its stdin and stdout are the
    /// peer. Arguments are percent-decoded (`%20` a space, `%26` an `&`); no shell is involved.
    case program(path: String, arguments: [String])
    /// A named pipe read for what clients get (`fifo://PATH`), created when missing; with `?out=PATH`
    /// what clients send is written into a second one. Always shared by all its clients.
    case fifo(path: String, out: String?)
    /// Only a named pipe for what clients send (`fifo-out://PATH`, gwsocket's `--pipeout`).
    case fifoOut(path: String)
    /// The gateway's standard input (`stdin://`), for a gateway at the end of a pipeline. Shared.
    case standardInput

    /// Parses `scheme://rest`. `defaultPort` fills in a missing port for tcp and udp. A host without a
    /// scheme is taken as TCP (as websocksy does); `assumedTCP` reports that so the caller can warn.
    public static func parse(_ text: String, defaultPort: String? = nil, assumedTCP: inout Bool) throws(PeerAddressError) -> PeerAddress {
        assumedTCP = false
        let scheme: String
        let rest: Substring
        if let separator = text.firstRange(of: "://") {
            scheme = text[..<separator.lowerBound].lowercased()
            rest = text[separator.upperBound...]
        } else {
            scheme = "tcp"
            rest = text[...]
            assumedTCP = true
        }
        switch scheme {
        case "echo":
            guard rest.isEmpty || rest == "/" else { throw PeerAddressError("echo:// takes no address, got '\(text)'") }
            return .echo
        case "tcp", "tls", "udp":
            let (host, port) = try splitHostPort(rest, defaultPort: defaultPort, whole: text)
            switch scheme {
            case "tcp": return .tcp(host: host, port: port)
            case "tls": return .tls(host: host, port: port)
            default: return .udp(host: host, port: port)
            }
        case "exec":
            let path = rest.prefix { $0 != "?" }
            guard path.hasPrefix("/"), path.count > 1 else { throw PeerAddressError("exec:// needs an absolute program path, e.g. exec:///usr/bin/cat, got '\(text)'") }
            var arguments: [String] = []
            if path.endIndex < rest.endIndex {
                for item in rest[rest.index(after: path.endIndex)...].split(separator: "&", omittingEmptySubsequences: false) {
                    guard let argument = percentDecoded(item) else { throw PeerAddressError("bad %-escape in the arguments of '\(text)'") }
                    arguments.append(argument)
                }
            }
            return .program(path: String(path), arguments: arguments)
        case "fifo", "fifo-out":
            let path = rest.prefix { $0 != "?" }
            guard path.hasPrefix("/") || !path.isEmpty else { throw PeerAddressError("'\(text)' has no FIFO path") }
            var out: String?
            if path.endIndex < rest.endIndex {
                let option = rest[rest.index(after: path.endIndex)...]
                guard scheme == "fifo", option.hasPrefix("out="), option.count > 4 else {
                    throw PeerAddressError("fifo:// takes one option, ?out=PATH, got '\(text)'")
                }
                out = String(option.dropFirst(4))
            }
            return scheme == "fifo" ? .fifo(path: String(path), out: out) : .fifoOut(path: String(path))
        case "stdin":
            guard rest.isEmpty || rest == "/" else { throw PeerAddressError("stdin:// takes no address, got '\(text)'") }
            return .standardInput
        case "unix", "unix-dgram":
            guard !rest.isEmpty else { throw PeerAddressError("'\(text)' has no socket path") }
            guard rest.utf8.count < 108 else { throw PeerAddressError("socket path in '\(text)' is longer than 107 bytes") }
            return scheme == "unix" ? .unixStream(path: String(rest)) : .unixDatagram(path: String(rest))
        default:
            throw PeerAddressError("unsupported peer scheme '\(scheme)://' in '\(text)' (supported: tcp, tls, udp, unix, unix-dgram, exec, fifo, fifo-out, stdin, echo)")
        }
    }

    public static func parse(_ text: String, defaultPort: String? = nil) throws(PeerAddressError) -> PeerAddress {
        var assumed = false
        return try parse(text, defaultPort: defaultPort, assumedTCP: &assumed)
    }

    /// `host[:port]` or `[v6][:port]`.
    private static func splitHostPort(_ s: Substring, defaultPort: String?, whole: String) throws(PeerAddressError) -> (String, String) {
        var host: Substring
        var port: Substring?
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { throw PeerAddressError("unterminated IPv6 literal in '\(whole)'") }
            host = s[s.index(after: s.startIndex)..<close]
            let after = s[s.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw PeerAddressError("unexpected text after ']' in '\(whole)'") }
                port = after.dropFirst()
            }
        } else if let colon = s.lastIndex(of: ":") {
            guard s.firstIndex(of: ":") == colon else {
                throw PeerAddressError("IPv6 addresses need brackets, e.g. tcp://[::1]:5900, in '\(whole)'")
            }
            host = s[..<colon]
            port = s[s.index(after: colon)...]
        } else {
            host = s
        }
        if host.hasSuffix("/") { host = host.dropLast() }
        guard !host.isEmpty else { throw PeerAddressError("'\(whole)' has no host") }
        guard let chosen = port.map(String.init) ?? defaultPort, !chosen.isEmpty else {
            throw PeerAddressError("'\(whole)' has no port and no port option is set")
        }
        if let number = Int(chosen) {
            guard (1...65535).contains(number) else { throw PeerAddressError("port \(chosen) out of range in '\(whole)'") }
        }
        return (String(host), chosen)
    }

    var isDatagram: Bool {
        switch self {
        case .udp, .unixDatagram: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .echo: "echo://"
        case .tcp(let h, let p): h.contains(":") ? "tcp://[\(h)]:\(p)" : "tcp://\(h):\(p)"
        case .tls(let h, let p): h.contains(":") ? "tls://[\(h)]:\(p)" : "tls://\(h):\(p)"
        case .udp(let h, let p): h.contains(":") ? "udp://[\(h)]:\(p)" : "udp://\(h):\(p)"
        case .unixStream(let path): "unix://\(path)"
        case .unixDatagram(let path): "unix-dgram://\(path)"
        case .program(let path, let arguments):
            "exec://\(path)" + (arguments.isEmpty ? "" : "?" + arguments.map(Self.percentEncoded).joined(separator: "&"))
        case .fifo(let path, let out): "fifo://\(path)" + (out.map { "?out=\($0)" } ?? "")
        case .fifoOut(let path): "fifo-out://\(path)"
        case .standardInput: "stdin://"
        }
    }

    /// Peers that exist once, whatever the number of clients: always shared.
    var isInherentlyShared: Bool {
        switch self {
        case .fifo, .fifoOut, .standardInput: true
        default: false
        }
    }

    /// `%XX` escapes decoded (`+` stays a plus: these are program arguments, not a form).
    static func percentDecoded(_ text: Substring) -> String? {
        PercentEncoding.decode(text, plusIsSpace: false)
    }


    /// An argument as `description` writes it: bytes that would change its meaning or a log line escaped.
    private static func percentEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            if byte > 0x20 && byte < 0x7F && byte != UInt8(ascii: "%") && byte != UInt8(ascii: "&") {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded
            }
        }
        return out
    }
}

public struct PeerAddressError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}

private extension String {
    var leftPadded: String { count == 1 ? "0" + self : self }
}
