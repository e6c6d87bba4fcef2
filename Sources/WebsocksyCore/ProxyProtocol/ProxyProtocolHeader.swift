import Glibc

/// An address carried by a PROXY header.
public struct ProxiedAddress: Equatable, CustomStringConvertible, Sendable {
    /// 4 or 16 bytes, network order.
    public var ip: [UInt8]
    public var port: UInt16

    /// "203.0.113.7:51000" or "[2001:db8::1]:51000", IPv4-mapped IPv6 shown as IPv4: formatted by
    /// `SocketOptions.describe`, so a proxied client reads the same as a direct one in the logs.
    public var description: String {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { raw in
            if ip.count == 4 {
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = port.bigEndian
                withUnsafeMutableBytes(of: &address.sin_addr) { $0.copyBytes(from: ip) }
                raw.storeBytes(of: address, as: sockaddr_in.self)
            } else if ip.count == 16 {
                var address = sockaddr_in6()
                address.sin6_family = sa_family_t(AF_INET6)
                address.sin6_port = port.bigEndian
                withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyBytes(from: ip) }
                raw.storeBytes(of: address, as: sockaddr_in6.self)
            }
        }
        return SocketOptions.describe(&storage)
    }
}

public struct ProxyProtocolHeader: Equatable, Sendable {
    /// 1 (text) or 2 (binary).
    public var version: Int
    /// nil for v1 "UNKNOWN", v2 LOCAL, or v2 families not carried (UNSPEC, AF_UNIX): the connection's
    /// own address stands.
    public var source: ProxiedAddress?
    public var destination: ProxiedAddress?
}

public enum ProxyProtocolParse: Equatable, Sendable {
    /// More bytes are needed to decide, or to finish the header.
    case incomplete
    /// The bytes cannot be the start of a PROXY header (e.g. "GET /"): plain HTTP follows.
    case absent
    /// A PROXY header, malformed: the connection gets 400. The string says why in a few words.
    case invalid(String)
    /// A whole header; `consumed` bytes belong to it, whatever follows is the client's.
    case header(ProxyProtocolHeader, consumed: Int)
}

/// The PROXY protocol, versions 1 and 2 (HAProxy's proxy-protocol.txt), without I/O.
///
/// A load balancer in front of the gateway sends one header before the client's bytes, naming the
/// client it accepted. `parse` is given everything received so far and says whether a header is
/// there, still arriving, malformed or absent; the caller keeps the bytes after `consumed`.
public enum ProxyProtocol {
    /// Longest header accepted, in bytes. A v2 header is 16 bytes plus an address block of at most
    /// 216 (AF_UNIX) plus TLVs; the TLVs proxies send (ALPN, SNI authority up to 255 bytes, unique ID
    /// up to 128, SSL details, cloud endpoint IDs) stay well under 1 KiB. 4 KiB leaves room for them
    /// all while keeping a hostile length field (up to 64 KiB) from holding buffers open, and it is
    /// a quarter of the handshake parser's default limit, so the per-connection bound hardly moves.
    static let maximumLength = 4096

    /// "PROXY " opens a version 1 line.
    static let v1Signature: [UInt8] = Array("PROXY ".utf8)
    /// Opens a version 2 header: chosen so that no text protocol can start with it.
    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    /// Why a header that started like a PROXY header was refused.
    struct Malformed: Error {
        var reason: String
        init(_ reason: String) { self.reason = reason }
    }

    /// Looks at the start of a connection's bytes. `.absent` comes as soon as a prefix matches
    /// neither signature, so plain HTTP is never held back waiting for more bytes.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> ProxyProtocolParse {
        if startsLike(bytes, v1Signature) {
            return bytes.count < v1Signature.count ? .incomplete : parseV1(bytes)
        }
        if startsLike(bytes, v2Signature) {
            return bytes.count < v2Signature.count ? .incomplete : parseV2(bytes)
        }
        return .absent
    }

    /// The address of a sockaddr_storage (AF_INET / AF_INET6) as a ProxiedAddress; nil for other families.
    static func address(of storage: sockaddr_storage) -> ProxiedAddress? {
        guard let ip = AddressRange.ipBytes(storage) else { return nil }
        let port = withUnsafeBytes(of: storage) { raw in
            ip.count == 4 ? raw.load(as: sockaddr_in.self).sin_port : raw.load(as: sockaddr_in6.self).sin6_port
        }
        return ProxiedAddress(ip: ip, port: UInt16(bigEndian: port))
    }

    /// Whether `bytes` and `signature` agree on their common length.
    private static func startsLike(_ bytes: UnsafeRawBufferPointer, _ signature: [UInt8]) -> Bool {
        let n = min(bytes.count, signature.count)
        return bytes[0..<n].elementsEqual(signature[0..<n])
    }
}
