import Testing
@testable import WebsocksyCore

@Suite struct UTF8ValidatorTests {
    static let valid: [[UInt8]] = [
        [], text("plain ASCII text that is longer than eight bytes"),
        text("κόσμε"), [0xC2, 0x80], [0xDF, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80],
        [0xEF, 0xBF, 0xBF], [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF], text("Hello-µ@ßöäüàá-UTF-8!!"),
        [0xF0, 0x9F, 0x98, 0x80] + text("abcdefgh") + [0xE2, 0x82, 0xAC],
    ]
    static let invalid: [[UInt8]] = [
        [0x80], [0xBF], [0xC0, 0x80], [0xC1, 0xBF],                  // lone continuation, overlong 2-byte
        [0xE0, 0x80, 0x80], [0xE0, 0x9F, 0xBF],                      // overlong 3-byte
        [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF],                      // UTF-16 surrogates
        [0xF0, 0x80, 0x80, 0x80], [0xF0, 0x8F, 0xBF, 0xBF],          // overlong 4-byte
        [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80],          // above U+10FFFF
        [0xFE], [0xFF], [0xC2, 0x41], [0xE2, 0x82, 0x41],
        text("κόσμε") + [0xED, 0xA0, 0x80] + text("edited"),
    ]
    static let truncated: [[UInt8]] = [[0xC2], [0xE2, 0x82], [0xF0, 0x9F, 0x98], text("abc") + [0xF4, 0x8F]]

    @Test(arguments: valid) func acceptsValid(_ bytes: [UInt8]) {
        #expect(bytes.withUnsafeBytes { UTF8Validator.isValid($0) })
    }

    @Test(arguments: invalid) func rejectsInvalid(_ bytes: [UInt8]) {
        #expect(!bytes.withUnsafeBytes { UTF8Validator.isValid($0) })
    }

    @Test(arguments: truncated) func truncatedIsIncompleteNotInvalid(_ bytes: [UInt8]) {
        var v = UTF8Validator()
        #expect(bytes.withUnsafeBytes { v.validate($0) })
        #expect(!v.isComplete)
    }

    /// Split at every position into two and into single bytes, the result must not change.
    @Test func splitAtEveryPosition() {
        for bytes in Self.valid + Self.invalid {
            let whole = bytes.withUnsafeBytes { UTF8Validator.isValid($0) }
            for cut in 0...bytes.count {
                var v = UTF8Validator()
                let ok = bytes[0..<cut].withUnsafeBytes { v.validate($0) } && bytes[cut...].withUnsafeBytes { v.validate($0) }
                #expect((ok && v.isComplete) == whole, "\(bytes) cut at \(cut)")
            }
            var v = UTF8Validator()
            let ok = bytes.allSatisfy { b in [b].withUnsafeBytes { v.validate($0) } }
            #expect((ok && v.isComplete) == whole)
        }
    }

    /// Fails at the first impossible byte, not at the end (fail fast, RFC 6455 §8.1).
    @Test func failsFast() {
        var v = UTF8Validator()
        #expect([UInt8]([0xCE, 0xBA]).withUnsafeBytes { v.validate($0) })
        #expect(![UInt8]([0xF5]).withUnsafeBytes { v.validate($0) })
    }

    /// Every code point boundary: all 1,112,064 scalars encode to valid UTF-8.
    @Test func everyScalarIsValid() {
        var all: [UInt8] = []
        for value in UInt32(0)...0x10FFFF {
            guard let scalar = Unicode.Scalar(value) else { continue }
            Unicode.UTF8.encode(scalar) { all.append($0) }
        }
        #expect(all.withUnsafeBytes { UTF8Validator.isValid($0) })
    }
}
