import Glibc
import Testing
@testable import WebsocksyCore

@Suite struct ProxyProtocolTests {
    static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    static let http = text("GET / HTTP/1.1\r\nHost: a\r\n\r\n")

    private func parse(_ bytes: [UInt8]) -> ProxyProtocolParse {
        bytes.withUnsafeBytes { ProxyProtocol.parse($0) }
    }

    private func parse(_ line: String) -> ProxyProtocolParse { parse(text(line)) }

    private func isInvalid(_ result: ProxyProtocolParse) -> Bool {
        if case .invalid = result { return true }
        return false
    }

    /// A v2 header: signature, version/command, family/transport, the body's length, the body.
    private static func v2(_ versionCommand: UInt8, _ family: UInt8, _ body: [UInt8], length: Int? = nil) -> [UInt8] {
        let n = length ?? body.count
        return signature + [versionCommand, family, UInt8(n >> 8), UInt8(n & 0xFF)] + body
    }

    private static let inetBody: [UInt8] = [192, 0, 2, 1, 198, 51, 100, 2, 0xC7, 0x38, 0x01, 0xBB]  // ports 51000, 443
    private static let inet6Body: [UInt8] = [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [1]
        + [UInt8](repeating: 0, count: 15) + [1] + [0xC7, 0x38, 0x01, 0xBB]

    private func address(_ ip: [UInt8], _ port: UInt16) -> ProxiedAddress { ProxiedAddress(ip: ip, port: port) }

    private func header(_ version: Int, _ source: ProxiedAddress?, _ destination: ProxiedAddress?, consumed: Int) -> ProxyProtocolParse {
        .header(ProxyProtocolHeader(version: version, source: source, destination: destination), consumed: consumed)
    }

    /// Headers of every kind, each valid on its own.
    static let validHeaders: [[UInt8]] = [
        text("PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\n"),
        text("PROXY TCP6 2001:db8::1 ::1 51000 443\r\n"),
        text("PROXY TCP6 ::ffff:203.0.113.7 ::ffff:10.0.0.1 0 65535\r\n"),
        text("PROXY UNKNOWN\r\n"),
        text("PROXY UNKNOWN ffff:f:f:f:f:f:f:f ffff:f:f:f:f:f:f:f 65535 65535\r\n"),
        v2(0x21, 0x11, inetBody),
        v2(0x21, 0x21, inet6Body),
        v2(0x21, 0x12, inetBody),
        v2(0x20, 0x00, []),
        v2(0x20, 0x11, inetBody),
        v2(0x21, 0x00, []),
        v2(0x21, 0x31, [UInt8](repeating: 0x61, count: 216)),
        v2(0x21, 0x11, inetBody + [0x01, 0x00, 0x02, 0x68, 0x32, 0x04, 0x00, 0x00]),
    ]

    // MARK: - Version 1

    @Test func v1TCP4() {
        let line = "PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\n"
        let result = parse(line)
        #expect(result == header(1, address([192, 0, 2, 1], 51000), address([198, 51, 100, 2], 443), consumed: line.utf8.count))
        guard case .header(let h, _) = result else { return }
        #expect(h.source?.description == "192.0.2.1:51000")
        #expect(h.destination?.description == "198.51.100.2:443")
    }

    @Test func v1TCP6() {
        let line = "PROXY TCP6 2001:db8::1 ::1 51000 443\r\n"
        guard case .header(let h, let consumed) = parse(line) else { Issue.record("not a header"); return }
        #expect(consumed == line.utf8.count)
        #expect(h.version == 1)
        #expect(h.source?.ip == [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [1])
        #expect(h.source?.description == "[2001:db8::1]:51000")
        #expect(h.destination?.description == "[::1]:443")
    }

    /// The gateway logs an IPv4 client on a dual-stack socket as IPv4; a proxied one reads the same.
    @Test func v1MappedAddressReadsAsIPv4() {
        guard case .header(let h, _) = parse("PROXY TCP6 ::ffff:203.0.113.7 ::1 51000 80\r\n") else {
            Issue.record("not a header"); return
        }
        #expect(h.source?.ip.count == 16)
        #expect(h.source?.description == "203.0.113.7:51000")
    }

    @Test func v1Unknown() {
        #expect(parse("PROXY UNKNOWN\r\n") == header(1, nil, nil, consumed: 15))
        // Everything after UNKNOWN is ignored, up to the 107-byte limit.
        let longest = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
        #expect(longest.utf8.count == 107)
        #expect(parse(longest) == header(1, nil, nil, consumed: 107))
        #expect(parse("PROXY UNKNOWN  what ever\r\n") == header(1, nil, nil, consumed: 26))
        #expect(isInvalid(parse("PROXY UNKNOWNX\r\n")))
        #expect(isInvalid(parse("PROXY unknown\r\n")))
    }

    @Test func v1PortLimits() {
        #expect(parse("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n")
            == header(1, address([0, 0, 0, 0], 0), address([255, 255, 255, 255], 65535), consumed: 44))
        for port in ["65536", "99999", "123456", "+80", "-1", "080", "00", "8O", "0x50", " 80"] {
            #expect(isInvalid(parse("PROXY TCP4 1.2.3.4 5.6.7.8 \(port) 80\r\n")), "source port \(port)")
            #expect(isInvalid(parse("PROXY TCP4 1.2.3.4 5.6.7.8 80 \(port)\r\n")), "destination port \(port)")
        }
    }

    /// Addresses must be of the announced family; IPv4 octets with leading zeros are refused (they
    /// read as octal to inet_aton, so two parsers could disagree about the client).
    @Test func v1BadAddresses() {
        let bad = [
            "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
            "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
            "PROXY TCP4 1.2.3.4 5.6.7.010 1 2\r\n",
            "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
            "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",
            "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            "PROXY TCP4 ::ffff:1.2.3.4 5.6.7.8 1 2\r\n",
            "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            "PROXY TCP6 ::1 1.2.3.4 1 2\r\n",
            "PROXY TCP6 2001:db8:::1 ::1 1 2\r\n",
            "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
            "PROXY TCP6 [::1] ::1 1 2\r\n",
            "PROXY TCP4 localhost 5.6.7.8 1 2\r\n",
            "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        ]
        for line in bad { #expect(isInvalid(parse(line)), "\(line.debugDescription)") }
        // A NUL inside an address must not cut it short to something valid.
        #expect(isInvalid(parse(text("PROXY TCP4 1.2.3.4") + [0] + text("9 5.6.7.8 1 2\r\n"))))
    }

    @Test func v1FieldsAndSpaces() {
        let bad = [
            "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            "PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n",
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            "PROXY TCP4\r\n",
            "PROXY \r\n",
            "PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n",
        ]
        for line in bad { #expect(isInvalid(parse(line)), "\(line.debugDescription)") }
    }

    @Test func v1LineEnds() {
        #expect(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n") == .invalid("LF without CR"))
        #expect(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX") == .invalid("CR without LF"))
        #expect(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n") == .invalid("CR without LF"))
        // A bare LF is refused as soon as it arrives, not when the line would end.
        #expect(isInvalid(parse("PROXY TCP4 1.2.3.4\n")))
        #expect(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r") == .incomplete)
    }

    @Test func v1LineLimit() {
        let filler = String(repeating: "x", count: 101)
        #expect(parse("PROXY " + filler) == .invalid("no CRLF within 107 bytes"))    // 107 bytes, no CRLF
        #expect(parse("PROXY " + filler.dropLast()) == .incomplete)                   // 106 bytes
        #expect(parse("PROXY UNKNOWN " + String(repeating: "x", count: 91) + "\r") == .incomplete)   // CR as byte 106
        #expect(isInvalid(parse("PROXY UNKNOWN " + String(repeating: "x", count: 92) + "\r\n")))    // 108 bytes
        #expect(isInvalid(parse("PROXY UNKNOWN " + String(repeating: "x", count: 92) + "\r")))      // CR as byte 107
        #expect(parse("PROXY UNKNOWN " + String(repeating: "x", count: 91) + "\r\n") == header(1, nil, nil, consumed: 107))
    }

    // MARK: - Deciding between PROXY and plain HTTP

    @Test func absentAsSoonAsNoSignatureFits() {
        #expect(parse([UInt8]()) == .incomplete)
        #expect(parse("G") == .absent)
        #expect(parse("GET / HTTP/1.1\r\n") == .absent)
        #expect(parse("P") == .incomplete)
        #expect(parse("PROXY") == .incomplete)
        #expect(parse("PROXX") == .absent)
        #expect(parse("PROXY\r\n") == .absent)
        #expect(parse("POST / HTTP/1.1\r\n") == .absent)
        #expect(parse("proxy TCP4") == .absent)
        #expect(parse("\r\n") == .incomplete)
        #expect(parse("\r\n\r\nGET") == .absent)
        #expect(parse(Array(Self.signature.dropLast()) + [0x0B]) == .absent)
        for n in 0..<Self.signature.count { #expect(parse(Array(Self.signature[0..<n])) == .incomplete) }
        #expect(parse(Self.signature) == .incomplete)
        #expect(parse([0x16, 0x03, 0x01]) == .absent)  // a TLS ClientHello
    }

    /// Every strict prefix of a header waits for more; the whole header is one decision; bytes after
    /// it are left for the HTTP parser.
    @Test func everyPrefixIsIncomplete() {
        for bytes in Self.validHeaders {
            guard case .header(let h, let consumed) = parse(bytes) else {
                Issue.record("not a header: \(bytes)"); continue
            }
            #expect(consumed == bytes.count)
            for n in 0..<bytes.count {
                #expect(parse(Array(bytes[0..<n])) == .incomplete, "prefix \(n) of \(bytes)")
            }
            #expect(parse(bytes + Self.http) == .header(h, consumed: bytes.count))
            #expect(parse(bytes + bytes) == .header(h, consumed: bytes.count))
        }
    }

    // MARK: - Version 2

    @Test func v2Inet() {
        let bytes = Self.v2(0x21, 0x11, Self.inetBody)
        #expect(bytes.count == 28)
        let result = parse(bytes + Self.http)
        #expect(result == header(2, address([192, 0, 2, 1], 51000), address([198, 51, 100, 2], 443), consumed: 28))
        guard case .header(let h, _) = result else { return }
        #expect(h.source?.description == "192.0.2.1:51000")
    }

    @Test func v2Inet6() {
        let result = parse(Self.v2(0x21, 0x21, Self.inet6Body))
        let ip = [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [1]
        #expect(result == header(2, address(ip, 51000), address([UInt8](repeating: 0, count: 15) + [1], 443), consumed: 52))
        guard case .header(let h, _) = result else { return }
        #expect(h.source?.description == "[2001:db8::1]:51000")
        #expect(h.destination?.description == "[::1]:443")
    }

    /// LOCAL (health checks from the proxy itself) keeps the connection's own address, whatever
    /// family and block it carries.
    @Test func v2Local() {
        #expect(parse(Self.v2(0x20, 0x00, [])) == header(2, nil, nil, consumed: 16))
        #expect(parse(Self.v2(0x20, 0x11, Self.inetBody)) == header(2, nil, nil, consumed: 28))
        #expect(parse(Self.v2(0x20, 0xFF, [1, 2, 3])) == header(2, nil, nil, consumed: 19))
    }

    @Test func v2FamiliesNotCarried() {
        #expect(parse(Self.v2(0x21, 0x00, [])) == header(2, nil, nil, consumed: 16))
        #expect(parse(Self.v2(0x21, 0x00, [9, 9, 9])) == header(2, nil, nil, consumed: 19))
        let paths = [UInt8](repeating: 0, count: 216)
        #expect(parse(Self.v2(0x21, 0x31, paths)) == header(2, nil, nil, consumed: 232))
        #expect(parse(Self.v2(0x21, 0x32, paths + [0x04, 0x00, 0x01, 0xAA])) == header(2, nil, nil, consumed: 236))
        #expect(isInvalid(parse(Self.v2(0x21, 0x31, [UInt8](repeating: 0, count: 215)))))
    }

    @Test func v2TLVsAreSkipped() {
        let alpn: [UInt8] = [0x01, 0x00, 0x02, 0x68, 0x32]
        let authority: [UInt8] = [0x02, 0x00, 0x0B] + text("example.com")
        let noop: [UInt8] = [0x04, 0x00, 0x00]
        let bytes = Self.v2(0x21, 0x11, Self.inetBody + alpn + authority + noop)
        let expected = header(2, address([192, 0, 2, 1], 51000), address([198, 51, 100, 2], 443), consumed: bytes.count)
        #expect(parse(bytes + Self.http) == expected)
        let inet6 = Self.v2(0x21, 0x21, Self.inet6Body + alpn)
        guard case .header(let h, let consumed) = parse(inet6) else { Issue.record("not a header"); return }
        #expect(consumed == 57)
        #expect(h.destination?.port == 443)
    }

    @Test func v2TLVsMustFit() {
        #expect(parse(Self.v2(0x21, 0x11, Self.inetBody + [0x01, 0x00, 0x03, 0x68, 0x32])) == .invalid("TLV overruns the header"))
        #expect(isInvalid(parse(Self.v2(0x21, 0x11, Self.inetBody + [0x01]))))
        #expect(isInvalid(parse(Self.v2(0x21, 0x11, Self.inetBody + [0x01, 0x00]))))
        #expect(isInvalid(parse(Self.v2(0x21, 0x11, Self.inetBody + [0x04, 0x00, 0x00, 0x01]))))
    }

    @Test func v2AddressBlockTooShort() {
        #expect(parse(Self.v2(0x21, 0x11, Array(Self.inetBody[0..<11]))) == .invalid("address block too short"))
        #expect(parse(Self.v2(0x21, 0x11, [])) == .invalid("address block too short"))
        #expect(parse(Self.v2(0x21, 0x21, Self.inetBody)) == .invalid("address block too short"))
        #expect(parse(Self.v2(0x21, 0x21, Array(Self.inet6Body[0..<35]))) == .invalid("address block too short"))
    }

    @Test func v2Truncated() {
        let bytes = Self.v2(0x21, 0x21, Self.inet6Body)
        for n in [13, 14, 15, 16, 17, 40, 51] { #expect(parse(Array(bytes[0..<n])) == .incomplete) }
        // A length promising more than is sent stays incomplete: the handshake timeout ends it.
        #expect(parse(Self.v2(0x21, 0x11, Self.inetBody, length: 13)) == .incomplete)
    }

    @Test func v2VersionAndCommand() {
        // Refused as soon as the version/command byte arrives.
        for byte: UInt8 in [0x11, 0x31, 0x01, 0xF1, 0x10] {
            #expect(parse(Self.signature + [byte]) == .invalid("version \(byte >> 4) is not 2"))
        }
        for byte: UInt8 in [0x22, 0x2F, 0x23] {
            #expect(parse(Self.signature + [byte]) == .invalid("unknown command"))
            #expect(isInvalid(parse(Self.v2(byte, 0x11, Self.inetBody))))
        }
    }

    @Test func v2UnknownFamilyOrTransport() {
        for family: UInt8 in [0x01, 0x02, 0x10, 0x13, 0x20, 0x30, 0x33, 0x41, 0xFF] {
            #expect(parse(Self.signature + [0x21, family]) == .invalid("unknown address family or transport"), "\(family)")
            #expect(isInvalid(parse(Self.v2(0x21, family, Self.inet6Body))))
        }
    }

    /// The limit is checked on the length field alone, before the body arrives.
    @Test func v2Oversize() {
        let longest = ProxyProtocol.maximumLength - 16
        #expect(parse(Self.v2(0x21, 0x11, [], length: longest + 1)) == .invalid("header longer than 4096 bytes"))
        #expect(parse(Self.v2(0x21, 0x11, [], length: 0xFFFF)) == .invalid("header longer than 4096 bytes"))
        #expect(parse(Self.v2(0x20, 0x00, [], length: longest + 1)) == .invalid("header longer than 4096 bytes"))
        let padding = longest - Self.inetBody.count - 3
        let bytes = Self.v2(0x21, 0x11, Self.inetBody + [0x04, UInt8(padding >> 8), UInt8(padding & 0xFF)]
            + [UInt8](repeating: 0, count: padding))
        #expect(bytes.count == ProxyProtocol.maximumLength)
        #expect(parse(Array(bytes.dropLast())) == .incomplete)
        guard case .header(_, let consumed) = parse(bytes) else { Issue.record("not a header"); return }
        #expect(consumed == 4096)
    }

    // MARK: - Encoding

    @Test func encodeV2Inet() {
        let source = address([192, 0, 2, 1], 51000), destination = address([198, 51, 100, 2], 443)
        let bytes = ProxyProtocol.encodeV2(source: source, destination: destination)
        #expect(bytes == Self.v2(0x21, 0x11, Self.inetBody))
        #expect(parse(bytes) == header(2, source, destination, consumed: 28))
    }

    @Test func encodeV2Inet6() {
        let source = address([0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [1], 51000)
        let destination = address([UInt8](repeating: 0, count: 15) + [1], 443)
        let bytes = ProxyProtocol.encodeV2(source: source, destination: destination)
        #expect(bytes == Self.v2(0x21, 0x21, Self.inet6Body))
        #expect(parse(bytes) == header(2, source, destination, consumed: 52))
    }

    /// One IPv4 end and one IPv6 end: both go as INET6, the IPv4 one mapped, and it still reads as IPv4.
    @Test func encodeV2MixedFamilies() {
        let source = address([203, 0, 113, 7], 51000)
        let destination = address([0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [2], 8001)
        let bytes = ProxyProtocol.encodeV2(source: source, destination: destination)
        #expect(bytes.count == 52)
        #expect(bytes[13] == 0x21)
        guard case .header(let h, let consumed) = parse(bytes + Self.http) else { Issue.record("not a header"); return }
        #expect(consumed == 52)
        #expect(h.source?.ip == AddressRange.mappedPrefix + [203, 0, 113, 7])
        #expect(h.source?.description == "203.0.113.7:51000")
        #expect(h.destination == destination)
        let reversed = ProxyProtocol.encodeV2(source: destination, destination: source)
        guard case .header(let r, _) = parse(reversed) else { Issue.record("not a header"); return }
        #expect(r.destination?.description == "203.0.113.7:51000")
    }

    @Test func encodeV2RoundTripsPorts() {
        for port: UInt16 in [0, 1, 255, 256, 8001, 65535] {
            let a = address([10, 0, 0, 1], port), b = address([10, 0, 0, 2], ~port)
            #expect(parse(ProxyProtocol.encodeV2(source: a, destination: b)) == header(2, a, b, consumed: 28))
        }
    }

    // MARK: - Socket addresses

    @Test func addressOfSocketAddress() {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { raw in
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = UInt16(51000).bigEndian
            sin.sin_addr.s_addr = UInt32(0xC000_0201).bigEndian
            raw.storeBytes(of: sin, as: sockaddr_in.self)
        }
        #expect(ProxyProtocol.address(of: storage) == address([192, 0, 2, 1], 51000))
        #expect(ProxyProtocol.address(of: storage)?.description == "192.0.2.1:51000")

        storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { raw in
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = UInt16(443).bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: AddressRange.mappedPrefix + [10, 1, 2, 3]) }
            raw.storeBytes(of: sin6, as: sockaddr_in6.self)
        }
        #expect(ProxyProtocol.address(of: storage) == address(AddressRange.mappedPrefix + [10, 1, 2, 3], 443))
        #expect(ProxyProtocol.address(of: storage)?.description == "10.1.2.3:443")

        storage = sockaddr_storage()
        storage.ss_family = sa_family_t(AF_UNIX)
        #expect(ProxyProtocol.address(of: storage) == nil)
    }

    // MARK: - Robustness

    /// Deterministic mutations of valid headers. Whatever the bytes, parsing must not crash, a
    /// decision once made must not change as more bytes arrive, and a header never claims more
    /// bytes than it was given.
    @Test func mutationsNeverCrashAndDecisionsHold() {
        var random = SplitMix(seed: 0x5EED)
        var decided = [0, 0, 0, 0]  // absent, invalid, header, incomplete
        for round in 0..<4000 {
            var bytes = Self.validHeaders[round % Self.validHeaders.count] + Self.http
            for _ in 0...random.below(3) {
                let at = random.below(bytes.count)
                switch random.below(6) {
                case 0: bytes[at] ^= UInt8(1 << random.below(8))
                case 1: bytes[at] = UInt8(random.below(256))
                case 2: bytes.removeSubrange(at...)
                case 3: bytes.insert(UInt8(random.below(256)), at: at)
                case 4: bytes.remove(at: at)
                default:  // the v2 length field, or the v1 byte at 14
                    if bytes.count > 15 { bytes[14] = UInt8(random.below(256)); bytes[15] = UInt8(random.below(256)) }
                }
                if bytes.isEmpty { bytes = [0x50] }
            }
            let full = parse(bytes)
            switch full {
            case .absent: decided[0] += 1
            case .invalid: decided[1] += 1
            case .header(_, let consumed):
                decided[2] += 1
                #expect(consumed > 0 && consumed <= bytes.count)
            case .incomplete: decided[3] += 1
            }
            var first: ProxyProtocolParse?
            for n in 0...bytes.count {
                let result = parse(Array(bytes[0..<n]))
                if let first {
                    #expect(result == first, "round \(round): \(bytes) at \(n)")
                } else if result != .incomplete {
                    first = result
                    #expect(result == full, "round \(round): \(bytes) at \(n)")
                }
                if case .header(_, let consumed) = result { #expect(consumed <= n) }
            }
        }
        // The mutations reach every outcome, so the checks above are not vacuous.
        #expect(decided.allSatisfy { $0 > 50 }, "\(decided)")
    }
}

/// A small deterministic generator (SplitMix64), so failures reproduce.
private struct SplitMix {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(next() % UInt64(n)) }
}
