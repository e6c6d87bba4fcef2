import CWebsocksy
import Testing
@testable import WebsocksyCore

/// A framing plugin that lies: everything is text, valid UTF-8 or not.
private let liar: ws_framing = { data, length, _, opcode, _, _ in
    guard data != nil else { return 0 }
    opcode!.pointee = ws_frame_text
    return Int64(length)
}

private func step(_ framer: PeerFramer, _ bytes: [UInt8]) -> PeerFramer.Step {
    var copy = bytes
    return copy.withUnsafeMutableBytes { framer.next($0, lastRead: $0.count) }
}

private func remainder(_ framer: PeerFramer, _ bytes: [UInt8]) -> Opcode? {
    bytes.withUnsafeBytes { framer.remainderAtClose($0) }
}

private func builtin(_ name: String, config: String? = nil, datagram: Bool = false) -> PeerFramer {
    PeerFramer(function: FramingRegistry.lookup(name)!, config: config.map { FramingConfig($0) }, datagram: datagram)
}

@Suite struct FramerEdgeTests {
    /// On a stream `auto` holds back a cut-off character; on a datagram peer that would join the
    /// next datagram, so each datagram is framed whole.
    @Test func autoFramesAWholeDatagram() {
        #expect(step(builtin("auto"), text("ab") + [0xE2, 0x82]) == .frame(length: 2, opcode: .text))
        #expect(step(builtin("auto", datagram: true), text("ab") + [0xE2, 0x82]) == .frame(length: 4, opcode: .binary))
        #expect(step(builtin("auto", datagram: true), [0xF0]) == .frame(length: 1, opcode: .binary))
        #expect(step(builtin("auto", datagram: true), text("κόσμε")) == .frame(length: text("κόσμε").count, opcode: .text))
        #expect(step(builtin("newline", config: "lf", datagram: true), text("a\nb")) == .frame(length: 2, opcode: .text))
    }

    @Test func pluginTextThatIsNotUTF8GoesOutAsBinary() {
        FramingRegistry.register("test-liar", liar)
        let framer = PeerFramer(function: liar, config: nil)
        #expect(step(framer, text("fine")) == .frame(length: 4, opcode: .text))
        #expect(step(framer, text("{\"name\":\"") + [0xFF, 0xFE] + text("\"}")) == .frame(length: 13, opcode: .binary))
        #expect(step(framer, [0xED, 0xA0, 0x80]) == .frame(length: 3, opcode: .binary))  // a surrogate
        #expect(FramingRegistry.name(of: liar) == "test-liar")
    }

    @Test func remainderAtClose() {
        #expect(remainder(PeerFramer(function: liar, config: nil), text("ij")) == nil)
        #expect(remainder(builtin("newline"), text("last line")) == .text)
        #expect(remainder(builtin("newline"), [0xFF]) == .binary)
        #expect(remainder(builtin("auto"), [0xE2, 0x82]) == .binary)
        #expect(remainder(builtin("separator", config: "\\0"), text("record")) == .binary)
        #expect(remainder(builtin("binary"), text("x")) == .binary)
    }

    @Test func builtinsAreKnownByAddress() {
        #expect(BuiltinFraming.kind(of: FramingRegistry.lookup("auto")!) == .textWhenValid)
        #expect(BuiltinFraming.kind(of: FramingRegistry.lookup("separator")!) == .binary)
        #expect(BuiltinFraming.kind(of: liar) == nil)
        #expect(FramingRegistry.name(of: FramingRegistry.lookup("newline")!) == "newline")
    }
}
