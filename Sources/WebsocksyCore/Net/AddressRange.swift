import Glibc

/// A block of IP addresses written in CIDR form, for lists of trusted sources.
///
/// IPv4 and IPv4-mapped IPv6 are one address space here: a client on a dual-stack socket shows up as
/// `::ffff:a.b.c.d`, and a list written with IPv4 ranges must still match it. So a range inside
/// `::ffff:0:0/96` is kept as the IPv4 range it denotes, and addresses are unmapped before matching.
///
/// A range whose address has bits set past the prefix ("10.0.0.1/8") is refused: in a list that
/// grants trust, it is more likely a typo for a host or a wrong length than a deliberate network.
struct AddressRange: Equatable, CustomStringConvertible {
    /// The network address, 4 or 16 bytes, host bits clear.
    private(set) var network: [UInt8]
    private(set) var prefixLength: Int

    /// "10.0.0.0/8", "192.168.1.5", "::1", "fd00::/8", "::ffff:10.0.0.0/104"; nil when the address is
    /// not numeric, the length is not plain decimal (no sign, no leading zero) or out of range for the
    /// family, or host bits are set.
    static func parse(_ text: String) -> AddressRange? {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let address = String(parts[0])
        guard let ip = ipBytes(address, family: AF_INET) ?? ipBytes(address, family: AF_INET6) else { return nil }
        var length = ip.count * 8
        if parts.count == 2 {
            guard let n = decimal(parts[1], maximum: ip.count * 8) else { return nil }
            length = n
        }
        guard hostBitsClear(ip, length) else { return nil }
        if ip.count == 16, length >= 96, Array(ip[0..<12]) == mappedPrefix {
            return AddressRange(network: Array(ip[12...]), prefixLength: length - 96)
        }
        return AddressRange(network: ip, prefixLength: length)
    }

    /// Whether `ip` (4 or 16 bytes) lies in the range; IPv4 and IPv4-mapped IPv6 match each other.
    func contains(_ ip: [UInt8]) -> Bool {
        let ip = Self.unmapped(ip)
        let candidate: [UInt8]
        switch (network.count, ip.count) {
        case (4, 4), (16, 16): candidate = ip
        case (16, 4): candidate = Self.mapped(ip)  // "::/0" or "::ffff:0:0/95" reach into IPv4
        default: return false
        }
        var bits = prefixLength, i = 0
        while bits >= 8 {
            if candidate[i] != network[i] { return false }
            bits -= 8
            i += 1
        }
        guard bits > 0 else { return true }
        let mask = UInt8(truncatingIfNeeded: 0xFF00 >> bits)
        return candidate[i] & mask == network[i]
    }

    /// "10.0.0.0/8"; a single host without its length, as it is usually written.
    var description: String {
        let family = network.count == 4 ? AF_INET : AF_INET6
        let text = withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(INET6_ADDRSTRLEN)) { buffer in
            network.withUnsafeBytes { inet_ntop(family, $0.baseAddress, buffer.baseAddress, socklen_t(buffer.count)) }
                .map { String(cString: $0) } ?? "?"
        }
        return prefixLength == network.count * 8 ? text : "\(text)/\(prefixLength)"
    }

    // MARK: - IP address helpers

    /// The first 12 bytes of an IPv4-mapped IPv6 address (RFC 4291 §2.5.5.2).
    static let mappedPrefix: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]

    /// The address of an accepted socket: 4 bytes for AF_INET, 16 for AF_INET6, nil otherwise.
    static func ipBytes(_ storage: sockaddr_storage) -> [UInt8]? {
        let family = Int32(storage.ss_family)
        return withUnsafeBytes(of: storage) { raw in
            switch family {
            case AF_INET:
                let address = raw.load(as: sockaddr_in.self).sin_addr
                return withUnsafeBytes(of: address) { Array($0) }
            case AF_INET6:
                let address = raw.load(as: sockaddr_in6.self).sin6_addr
                return withUnsafeBytes(of: address) { Array($0) }
            default:
                return nil
            }
        }
    }

    /// A numeric address of one family through inet_pton: dotted quad for AF_INET (glibc refuses
    /// leading zeros, which inet_aton would read as octal), RFC 4291 text for AF_INET6.
    static func ipBytes(_ text: String, family: Int32) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: family == AF_INET ? 4 : 16)
        let ok = bytes.withUnsafeMutableBytes { buffer in
            text.withCString { inet_pton(family, $0, buffer.baseAddress) }
        }
        return ok == 1 ? bytes : nil
    }

    /// `::ffff:a.b.c.d` → `a.b.c.d`; any other address unchanged.
    static func unmapped(_ ip: [UInt8]) -> [UInt8] {
        ip.count == 16 && ip[0..<12].elementsEqual(mappedPrefix) ? Array(ip[12...]) : ip
    }

    /// `a.b.c.d` → `::ffff:a.b.c.d`; a 16-byte address unchanged.
    static func mapped(_ ip: [UInt8]) -> [UInt8] {
        ip.count == 4 ? mappedPrefix + ip : ip
    }

    /// A plain decimal number up to `maximum`: digits only, no leading zero.
    private static func decimal(_ text: Substring, maximum: Int) -> Int? {
        guard !text.isEmpty, text.count <= 3, text == "0" || !text.hasPrefix("0"),
              text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
              let value = Int(text), value <= maximum else { return nil }
        return value
    }

    private static func hostBitsClear(_ ip: [UInt8], _ length: Int) -> Bool {
        for i in 0..<ip.count {
            let kept = min(max(length - i * 8, 0), 8)
            let mask = UInt8(truncatingIfNeeded: 0xFF00 >> kept)
            if ip[i] & ~mask != 0 { return false }
        }
        return true
    }
}

/// A list of ranges, such as the trusted sources allowed to send a PROXY header.
struct AddressRangeList {
    private(set) var ranges: [AddressRange]

    init(_ ranges: [AddressRange]) { self.ranges = ranges }

    var isEmpty: Bool { ranges.isEmpty }

    /// Linear: lists are a handful of entries, checked once per accepted connection.
    func contains(_ ip: [UInt8]) -> Bool {
        ranges.contains { $0.contains(ip) }
    }
}
