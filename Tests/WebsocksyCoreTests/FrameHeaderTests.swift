import Testing
@testable import WebsocksyCore

@Suite struct FrameHeaderTests {
    private func encode(_ opcode: Opcode, length: Int, fin: Bool = true) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 10)
        let n = out.withUnsafeMutableBytes { FrameHeader.encodeServerHeader(fin: fin, opcode: opcode, length: length, into: $0.baseAddress!) }
        return Array(out[0..<n])
    }

    @Test func everyLengthForm() {
        #expect(encode(.text, length: 0) == [0x81, 0x00])
        #expect(encode(.text, length: 125) == [0x81, 125])
        #expect(encode(.binary, length: 126) == [0x82, 126, 0x00, 0x7E])
        #expect(encode(.binary, length: 65535) == [0x82, 126, 0xFF, 0xFF])
        #expect(encode(.binary, length: 65536) == [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0])
        #expect(encode(.binary, length: 1 << 32) == [0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0])
        #expect(encode(.close, length: 2) == [0x88, 0x02])
        #expect(encode(.continuation, length: 3, fin: false) == [0x00, 0x03])
    }

    /// RFC 6455 §5.7: "A single-frame masked text message" containing "Hello".
    @Test func parsesRFCMaskedHello() {
        let bytes: [UInt8] = [0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]
        let result = bytes.withUnsafeBytes { FrameHeader.parse($0) }
        guard case .header(let h, let size) = result else { Issue.record("no header"); return }
        #expect(size == 6)
        #expect(h.fin && h.masked && h.opcode == .text && h.payloadLength == 5 && h.rsv == 0)
    }

    @Test(arguments: [0, 125, 126, 65535, 65536, 1 << 32])
    func parsesEveryLengthForm(length: Int) {
        var bytes = clientFrame(2, [])
        // Rebuild the length field for `length` without a payload: only the header is parsed.
        bytes = [0x82]
        if length < 126 { bytes.append(0x80 | UInt8(length)) }
        else if length <= 0xFFFF { bytes += [0x80 | 126, UInt8(length >> 8), UInt8(length & 0xFF)] }
        else { bytes.append(0x80 | 127); for s in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((length >> s) & 0xFF)) } }
        bytes += [1, 2, 3, 4]
        for cut in 0..<bytes.count {
            #expect(bytes[0..<cut].withUnsafeBytes { FrameHeader.parse($0) } == .incomplete)
        }
        guard case .header(let h, let size) = bytes.withUnsafeBytes({ FrameHeader.parse($0) }) else { Issue.record("no header"); return }
        #expect(h.payloadLength == UInt64(length))
        #expect(size == bytes.count)
    }

    @Test func rejects64BitLengthWithTopBit() {
        let bytes: [UInt8] = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]
        #expect(bytes.withUnsafeBytes { FrameHeader.parse($0) } == .invalidLength)
    }
}

@Suite struct MaskingTests {
    @Test func rfcExample() {
        var payload: [UInt8] = [0x7F, 0x9F, 0x4D, 0x51, 0x58]
        let key = UInt32(0x37) | UInt32(0xFA) << 8 | UInt32(0x21) << 16 | UInt32(0x3D) << 24
        payload.withUnsafeMutableBytes { Masking.apply(key: key, offset: 0, to: $0) }
        #expect(payload == text("Hello"))
    }

    /// Every length up to 40 and every starting offset, against a byte-by-byte reference.
    @Test func matchesBytewiseReferenceAtEveryOffset() {
        let keyBytes: [UInt8] = [0xA1, 0x07, 0x5C, 0xF0]
        let key = keyBytes.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
        for length in 0...40 {
            for offset in 0..<8 {
                let data = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
                var masked = data
                masked.withUnsafeMutableBytes { Masking.apply(key: key, offset: offset, to: $0) }
                let expected = data.enumerated().map { $0.element ^ keyBytes[($0.offset + offset) % 4] }
                #expect(masked == expected, "length \(length) offset \(offset)")
            }
        }
    }
}
