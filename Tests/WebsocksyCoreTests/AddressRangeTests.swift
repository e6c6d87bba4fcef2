import Glibc
import Testing
@testable import WebsocksyCore

@Suite struct AddressRangeTests {
    private func range(_ text: String) -> AddressRange {
        guard let range = AddressRange.parse(text) else {
            Issue.record("\(text) did not parse")
            return AddressRange.parse("255.255.255.255")!
        }
        return range
    }

    private func v6(_ text: String) -> [UInt8] { AddressRange.ipBytes(text, family: AF_INET6)! }

    private func mapped(_ ip: [UInt8]) -> [UInt8] { AddressRange.mappedPrefix + ip }

    @Test func ipv4Network() {
        let r = range("10.0.0.0/8")
        #expect(r.description == "10.0.0.0/8")
        #expect(r.contains([10, 0, 0, 0]))
        #expect(r.contains([10, 255, 255, 255]))
        #expect(!r.contains([11, 0, 0, 0]))
        #expect(!r.contains([9, 255, 255, 255]))
    }

    /// Lengths that do not fall on a byte boundary.
    @Test func ipv4OddLengths() {
        let r = range("192.168.0.0/23")
        #expect(r.contains([192, 168, 1, 255]))
        #expect(!r.contains([192, 168, 2, 0]))
        let one = range("128.0.0.0/1")
        #expect(one.contains([255, 1, 1, 1]))
        #expect(!one.contains([127, 255, 255, 255]))
        let thirtyOne = range("203.0.113.6/31")
        #expect(thirtyOne.contains([203, 0, 113, 6]) && thirtyOne.contains([203, 0, 113, 7]))
        #expect(!thirtyOne.contains([203, 0, 113, 8]) && !thirtyOne.contains([203, 0, 113, 5]))
    }

    @Test func singleHosts() {
        let host = range("192.168.1.5")
        #expect(host == range("192.168.1.5/32"))
        #expect(host.description == "192.168.1.5")
        #expect(host.contains([192, 168, 1, 5]))
        #expect(!host.contains([192, 168, 1, 4]))
        #expect(!host.contains([192, 168, 1, 6]))
        let loopback = range("::1")
        #expect(loopback == range("::1/128"))
        #expect(loopback.description == "::1")
        #expect(loopback.contains(v6("::1")))
        #expect(!loopback.contains(v6("::2")))
        #expect(!loopback.contains(v6("::")))
        #expect(!loopback.contains([127, 0, 0, 1]))
    }

    @Test func zeroLength() {
        let allV4 = range("0.0.0.0/0")
        #expect(allV4.contains([0, 0, 0, 0]) && allV4.contains([255, 255, 255, 255]))
        #expect(allV4.contains(mapped([8, 8, 8, 8])))
        #expect(!allV4.contains(v6("2001:db8::1")))
        // The whole IPv6 space holds the mapped IPv4 space too.
        let all = range("::/0")
        #expect(all.description == "::/0")
        #expect(all.contains(v6("2001:db8::1")) && all.contains(v6("::")))
        #expect(all.contains([8, 8, 8, 8]))
    }

    @Test func ipv6Network() {
        let r = range("fd00::/8")
        #expect(r.description == "fd00::/8")
        #expect(r.contains(v6("fd12:3456::1")))
        #expect(!r.contains(v6("fe00::1")))
        #expect(!r.contains([10, 0, 0, 1]))
        let doc = range("2001:db8::/33")
        #expect(doc.contains(v6("2001:db8:7fff::1")))
        #expect(!doc.contains(v6("2001:db8:8000::")))
        let last = range("2001:db8::fffe/127")
        #expect(last.contains(v6("2001:db8::ffff")))
        #expect(!last.contains(v6("2001:db8::1:0")))
    }

    /// A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; either spelling of the range and
    /// of the address matches the other.
    @Test func mappedAddresses() {
        let v4 = range("10.0.0.0/8")
        #expect(v4.contains(mapped([10, 1, 2, 3])))
        #expect(!v4.contains(mapped([11, 1, 2, 3])))
        #expect(!v4.contains(v6("::10.1.2.3")))  // IPv4-compatible, not mapped
        let written6 = range("::ffff:10.0.0.0/104")
        #expect(written6 == v4)
        #expect(written6.description == "10.0.0.0/8")
        #expect(written6.contains([10, 1, 2, 3]))
        #expect(written6.contains(mapped([10, 1, 2, 3])))
        #expect(range("::ffff:0:0/96") == range("0.0.0.0/0"))
        #expect(range("::ffff:192.0.2.1") == range("192.0.2.1"))
        // Just wider than the mapped block: stays IPv6 and still holds IPv4 clients.
        let wider = range("::fffe:0:0/95")
        #expect(wider.contains([1, 2, 3, 4]))
        #expect(wider.contains(v6("::fffe:1:1")))
        #expect(!wider.contains(v6("::1:0:0:0")))
    }

    @Test func edgeLengths() {
        #expect(AddressRange.parse("10.0.0.0/32") != nil)
        #expect(AddressRange.parse("10.0.0.0/33") == nil)
        #expect(AddressRange.parse("::/128") != nil)
        #expect(AddressRange.parse("::/129") == nil)
        #expect(AddressRange.parse("::ffff:0.0.0.0/128") == range("0.0.0.0"))
    }

    /// Host bits past the prefix are refused: "10.0.0.1/8" is more likely a mistake than a network.
    @Test func hostBitsRefused() {
        for text in ["10.0.0.1/8", "192.168.1.5/24", "192.168.1.0/23", "128.0.0.0/0", "fd00::1/8", "::1/127", "::ffff:10.0.0.1/104"] {
            #expect(AddressRange.parse(text) == nil, "\(text)")
        }
    }

    @Test func malformed() {
        let bad = [
            "", "/", "/8", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/08", "10.0.0.0/8/8",
            "10.0.0.0/8 ", " 10.0.0.0/8", "10.0.0.0 /8", "10.0.0.0/ 8", "10.0.0.0/0x8", "10.0.0.0/1000",
            "10.0.0", "10.0.0.0.0", "1.2.3.256", "010.0.0.0/8", "10.0.0.0/8a", "localhost", "*",
            "fe80::1%eth0", "[::1]", "::1/", "2001:db8:::/48", "fd00::/8::", "10.0.0.0-10.0.0.255",
        ]
        for text in bad { #expect(AddressRange.parse(text) == nil, "\(text.debugDescription)") }
    }

    @Test func otherLengthsNeverMatch() {
        let all = range("::/0"), allV4 = range("0.0.0.0/0")
        for ip: [UInt8] in [[], [1, 2, 3], [1, 2, 3, 4, 5], [UInt8](repeating: 0, count: 15), [UInt8](repeating: 0, count: 17)] {
            #expect(!all.contains(ip) && !allV4.contains(ip))
        }
    }

    @Test func lists() {
        let empty = AddressRangeList([])
        #expect(empty.isEmpty)
        #expect(!empty.contains([127, 0, 0, 1]))
        let list = AddressRangeList([range("127.0.0.1"), range("::1"), range("10.0.0.0/8")])
        #expect(!list.isEmpty)
        #expect(list.contains([127, 0, 0, 1]))
        #expect(list.contains(mapped([127, 0, 0, 1])))
        #expect(list.contains(v6("::1")))
        #expect(list.contains([10, 9, 8, 7]))
        #expect(!list.contains([127, 0, 0, 2]))
        #expect(!list.contains(v6("::2")))
    }

    @Test func socketAddresses() {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { raw in
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            raw.storeBytes(of: sin, as: sockaddr_in.self)
        }
        #expect(AddressRange.ipBytes(storage) == [127, 0, 0, 1])

        storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { raw in
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: v6("2001:db8::7")) }
            raw.storeBytes(of: sin6, as: sockaddr_in6.self)
        }
        #expect(AddressRange.ipBytes(storage) == v6("2001:db8::7"))

        storage = sockaddr_storage()
        storage.ss_family = sa_family_t(AF_UNIX)
        #expect(AddressRange.ipBytes(storage) == nil)
    }

    @Test func numericAddressText() {
        #expect(AddressRange.ipBytes("192.0.2.1", family: AF_INET) == [192, 0, 2, 1])
        #expect(AddressRange.ipBytes("192.0.2.01", family: AF_INET) == nil)
        #expect(AddressRange.ipBytes("::1", family: AF_INET) == nil)
        #expect(AddressRange.ipBytes("192.0.2.1", family: AF_INET6) == nil)
        #expect(AddressRange.ipBytes("::ffff:192.0.2.1", family: AF_INET6) == mapped([192, 0, 2, 1]))
    }
}
