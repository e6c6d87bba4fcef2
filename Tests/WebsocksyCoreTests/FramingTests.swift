import CWebsocksy
import Testing
@testable import WebsocksyCore

/// Drives a framing function the way the core does: whole buffer in, frames out, cleanup at the end.
private final class FramingDriver {
    let framer: PeerFramer
    var buffer: [UInt8] = []
    var frames: [(Opcode?, [UInt8])] = []

    init(_ name: String, config: String? = nil) {
        framer = PeerFramer(function: FramingRegistry.lookup(name)!, config: config.map { FramingConfig($0) })
    }

    /// One read of `bytes`; returns the frames it produced.
    @discardableResult
    func read(_ bytes: [UInt8]) -> [(Opcode?, [UInt8])] {
        buffer += bytes
        var produced: [(Opcode?, [UInt8])] = []
        var last = bytes.count
        loop: while !buffer.isEmpty {
            let step = buffer.withUnsafeMutableBytes { framer.next($0, lastRead: min(last, $0.count)) }
            switch step {
            case .needMore: break loop
            case .failed(let why): Issue.record("framing failed: \(why)"); break loop
            case .frame(let n, let opcode):
                produced.append((opcode, Array(buffer[0..<n])))
                buffer.removeFirst(n)
                last = max(0, last - n)
            }
        }
        frames += produced
        return produced
    }
}

private func kinds(_ frames: [(Opcode?, [UInt8])]) -> [String] {
    frames.map { ($0.0.map { $0 == .text ? "t" : "b" } ?? "discard") + ":" + String(decoding: $0.1, as: UTF8.self) }
}

@Suite struct FramingTests {
    @Test func autoPicksTextOrBinary() {
        let d = FramingDriver("auto")
        #expect(kinds(d.read(text("hello"))) == ["t:hello"])
        let binary = d.read([0xFF, 0x41])
        #expect(binary.count == 1 && binary[0].0 == .binary && binary[0].1 == [0xFF, 0x41])
    }

    @Test func autoHoldsBackACharacterSplitAcrossReads() {
        let d = FramingDriver("auto")
        #expect(kinds(d.read(text("ab") + [0xE2, 0x82])) == ["t:ab"])
        #expect(kinds(d.read([0xAC])) == ["t:€"])
        #expect(d.read([0xF0]).isEmpty)  // only a partial character so far
        #expect(kinds(d.read([0x9F, 0x98, 0x80])) == ["t:😀"])
    }

    @Test func binaryTakesEverything() {
        let d = FramingDriver("binary")
        let out = d.read(text("any\nthing"))
        #expect(out.count == 1 && out[0].0 == .binary && out[0].1 == text("any\nthing"))
    }

    @Test func separatorFindsSeveralPerReadAndSplitsAcrossReads() {
        let d = FramingDriver("separator", config: "\\r\\n")
        #expect(kinds(d.read(text("one\r\ntwo\r\nthr"))) == ["b:one\r\n", "b:two\r\n"])
        #expect(d.read(text("ee\r")).isEmpty)
        #expect(kinds(d.read(text("\nfour"))) == ["b:three\r\n"])
        #expect(d.buffer == text("four"))
    }

    @Test func separatorSplitAtEveryPosition() {
        let stream = text("alpha||beta||||gamma||")
        for cut in 0...stream.count {
            let d = FramingDriver("separator", config: "||")
            d.read(Array(stream[0..<cut]))
            d.read(Array(stream[cut...]))
            #expect(kinds(d.frames) == ["b:alpha||", "b:beta||", "b:||", "b:gamma||"], "cut at \(cut)")
        }
    }

    @Test func separatorEscapes() throws {
        #expect(try SeparatorSpec.parse("\\r\\t\\n\\0\\f\\\\") == [0x0D, 0x09, 0x0A, 0x00, 0x0C, 0x5C])
        #expect(try SeparatorSpec.parse("\\x00\\xfF;") == [0x00, 0xFF, 0x3B])
        for bad in ["", "\\", "\\q", "\\x", "\\x4", "\\xzz"] {
            #expect(throws: FramingConfigError.self) { _ = try SeparatorSpec.parse(bad) }
        }
        let d = FramingDriver("separator", config: "\\x00")
        #expect(d.read([1, 2, 0, 3, 0]).map(\.1) == [[1, 2, 0], [3, 0]])
    }

    @Test func newlineVariants() throws {
        #expect(try SeparatorSpec.newline(nil) == [0x0D, 0x0A])
        #expect(try SeparatorSpec.newline("LF") == [0x0A])
        #expect(try SeparatorSpec.newline("lfcr") == [0x0A, 0x0D])
        #expect(try SeparatorSpec.newline("cr") == [0x0D])
        #expect(throws: FramingConfigError.self) { _ = try SeparatorSpec.newline("crcr") }
        let d = FramingDriver("newline", config: "lf")
        let out = d.read(text("κόσμε\n") + [0xFF, 0x0A])
        #expect(out.count == 2 && out[0].0 == .text && out[1].0 == .binary)
        let crlf = FramingDriver("newline")
        #expect(kinds(crlf.read(text("a\nb\r\n"))) == ["t:a\nb\r\n"])
    }

    @Test func registryLookup() {
        #expect(FramingRegistry.lookup("auto") != nil)
        #expect(FramingRegistry.lookup(nil) != nil)
        #expect(FramingRegistry.lookup("nosuch") == nil)
        #expect(Set(FramingRegistry.names).isSuperset(of: ["auto", "binary", "separator", "newline"]))
    }

    @Test func incompleteTailLength() {
        #expect([UInt8]([0x61]).withUnsafeBytes { UTF8Validator.incompleteTailLength($0) } == 0)
        #expect([UInt8]([0x61, 0xE2]).withUnsafeBytes { UTF8Validator.incompleteTailLength($0) } == 1)
        #expect([UInt8]([0xE2, 0x82]).withUnsafeBytes { UTF8Validator.incompleteTailLength($0) } == 2)
        #expect([UInt8]([0xE2, 0x82, 0xAC]).withUnsafeBytes { UTF8Validator.incompleteTailLength($0) } == 0)
        #expect([UInt8]([0xF0, 0x9F, 0x98]).withUnsafeBytes { UTF8Validator.incompleteTailLength($0) } == 3)
    }
}

@Suite struct PeerAddressTests {
    @Test func schemes() throws {
        #expect(try PeerAddress.parse("tcp://example.org:5900") == .tcp(host: "example.org", port: "5900"))
        #expect(try PeerAddress.parse("udp://10.0.0.1:53") == .udp(host: "10.0.0.1", port: "53"))
        #expect(try PeerAddress.parse("tcp://[::1]:5900") == .tcp(host: "::1", port: "5900"))
        #expect(try PeerAddress.parse("tcp://[fe80::1]", defaultPort: "22") == .tcp(host: "fe80::1", port: "22"))
        #expect(try PeerAddress.parse("tcp://host", defaultPort: "80") == .tcp(host: "host", port: "80"))
        #expect(try PeerAddress.parse("unix:///run/app.sock") == .unixStream(path: "/run/app.sock"))
        #expect(try PeerAddress.parse("unix-dgram://@abstract") == .unixDatagram(path: "@abstract"))
        #expect(try PeerAddress.parse("ECHO://") == .echo)
    }

    @Test func noSchemeIsTCP() throws {
        var assumed = false
        #expect(try PeerAddress.parse("localhost:23", assumedTCP: &assumed) == .tcp(host: "localhost", port: "23"))
        #expect(assumed)
    }

    @Test(arguments: ["tcp://host", "tcp://:80", "tcp://::1:80", "tcp://[::1", "tcp://[::1]x", "tcp://h:0",
                      "tcp://h:70000", "unix://", "gopher://x:1", "echo://x"])
    func invalid(_ text: String) {
        #expect(throws: PeerAddressError.self) { _ = try PeerAddress.parse(text) }
    }

    @Test func unixAddressLengths() {
        let path = SocketAddress.unix("/tmp/x", socketType: 1)
        #expect(path.length == 2 + 6 + 1)  // family, path, terminating NUL
        let abstract = SocketAddress.unix("@x", socketType: 1)
        #expect(abstract.length == 2 + 2)  // family, NUL, name: no terminator
    }
}
