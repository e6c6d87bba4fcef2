import Glibc

/// Version 1: one text line, "PROXY TCP4 src dst sport dport\r\n" (or TCP6, or UNKNOWN).
///
/// Validation is strict because the line decides who the client is: single spaces, exactly the
/// fields the protocol names, addresses of the announced family only, ports in plain decimal
/// without sign or leading zero (the spec's examples never pad; a padded port hints at a forged or
/// broken sender). IPv4 octets with leading zeros are refused too, by inet_pton.
extension ProxyProtocol {
    /// The longest line, CRLF included: "PROXY UNKNOWN" with two full IPv6 addresses and ports.
    static let v1MaximumLength = 107

    /// `bytes` starts with "PROXY ".
    static func parseV1(_ bytes: UnsafeRawBufferPointer) -> ProxyProtocolParse {
        let cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n")
        var lineEnd: Int?
        for i in v1Signature.count..<min(bytes.count, v1MaximumLength) {
            if bytes[i] == lf { return .invalid("LF without CR") }
            guard bytes[i] == cr else { continue }
            guard i + 1 < v1MaximumLength else { return .invalid("no CRLF within \(v1MaximumLength) bytes") }
            guard i + 1 < bytes.count else { return .incomplete }
            guard bytes[i + 1] == lf else { return .invalid("CR without LF") }
            lineEnd = i
            break
        }
        guard let lineEnd else {
            return bytes.count >= v1MaximumLength ? .invalid("no CRLF within \(v1MaximumLength) bytes") : .incomplete
        }
        let line = UnsafeRawBufferPointer(rebasing: bytes[v1Signature.count..<lineEnd])
        do {
            let header = try parseV1Line(line)
            return .header(header, consumed: lineEnd + 2)
        } catch {
            return .invalid(error.reason)
        }
    }

    /// The line between "PROXY " and CRLF.
    private static func parseV1Line(_ line: UnsafeRawBufferPointer) throws(Malformed) -> ProxyProtocolHeader {
        let space = UInt8(ascii: " ")
        // UNKNOWN: the sender could not tell; whatever follows it is to be ignored (spec §2.1).
        let unknown = Array("UNKNOWN".utf8)
        if line.starts(with: unknown), line.count == unknown.count || line[unknown.count] == space {
            return ProxyProtocolHeader(version: 1, source: nil, destination: nil)
        }
        let fields = line.split(separator: space, omittingEmptySubsequences: false)
        guard !fields.contains(where: \.isEmpty) else { throw Malformed("extra spaces") }
        let family: Int32
        switch String(decoding: fields[0], as: UTF8.self) {
        case "TCP4": family = AF_INET
        case "TCP6": family = AF_INET6
        default: throw Malformed("unknown protocol")
        }
        guard fields.count == 5 else { throw Malformed(fields.count < 5 ? "missing fields" : "extra fields") }
        let source = try v1Address(fields[1], family: family)
        let destination = try v1Address(fields[2], family: family)
        let sourcePort = try v1Port(fields[3])
        let destinationPort = try v1Port(fields[4])
        return ProxyProtocolHeader(version: 1,
                                   source: ProxiedAddress(ip: source, port: sourcePort),
                                   destination: ProxiedAddress(ip: destination, port: destinationPort))
    }

    private static func v1Address(_ field: Slice<UnsafeRawBufferPointer>, family: Int32) throws(Malformed) -> [UInt8] {
        // Only address characters reach inet_pton: a NUL would cut the C string short.
        let allowed: (UInt8) -> Bool = family == AF_INET
            ? { $0 == UInt8(ascii: ".") || isDigit($0) }
            : { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: ":") || isHexDigit($0) }
        guard field.count < Int(INET6_ADDRSTRLEN), field.allSatisfy(allowed),
              let ip = AddressRange.ipBytes(String(decoding: field, as: UTF8.self), family: family) else {
            throw Malformed(family == AF_INET ? "bad IPv4 address" : "bad IPv6 address")
        }
        return ip
    }

    private static func v1Port(_ field: Slice<UnsafeRawBufferPointer>) throws(Malformed) -> UInt16 {
        guard field.count <= 5, field.allSatisfy(isDigit),
              field.count == 1 || field.first != UInt8(ascii: "0") else { throw Malformed("bad port") }
        let value = field.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        guard let port = UInt16(exactly: value) else { throw Malformed("bad port") }
        return port
    }

    private static func isDigit(_ b: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) }

    private static func isHexDigit(_ b: UInt8) -> Bool {
        isDigit(b) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(b) || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(b)
    }
}
