/// Incremental UTF-8 validation (RFC 3629) for text messages (RFC 6455 §8.1), fed chunk by chunk so
/// a message split across fragments or reads is checked as it arrives and fails at the first bad byte.
/// Overlong forms, surrogates (U+D800–DFFF) and code points above U+10FFFF are rejected by narrowing
/// the allowed range of the first continuation byte, as in the table of RFC 3629 §4.
public struct UTF8Validator: Sendable {
    /// Continuation bytes still expected for the current sequence.
    @usableFromInline var pending: UInt8 = 0
    @usableFromInline var lower: UInt8 = 0x80
    @usableFromInline var upper: UInt8 = 0xBF

    public init() {}

    /// True when the bytes so far end on a character boundary.
    @inlinable public var isComplete: Bool { pending == 0 }

    public mutating func reset() { self = UTF8Validator() }

    /// Feeds more bytes; false as soon as they cannot be (part of) valid UTF-8.
    @inlinable
    public mutating func validate(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let count = bytes.count
        var i = 0
        while i < count {
            if pending == 0 {
                // ASCII fast path: eight bytes at a time while no byte has its high bit set.
                while i + 8 <= count,
                      base.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
                    i += 8
                }
                if i == count { break }
                let b = base.load(fromByteOffset: i, as: UInt8.self)
                i += 1
                switch b {
                case 0x00...0x7F: continue
                case 0xC2...0xDF: pending = 1; lower = 0x80; upper = 0xBF
                case 0xE0: pending = 2; lower = 0xA0; upper = 0xBF
                case 0xE1...0xEC, 0xEE...0xEF: pending = 2; lower = 0x80; upper = 0xBF
                case 0xED: pending = 2; lower = 0x80; upper = 0x9F
                case 0xF0: pending = 3; lower = 0x90; upper = 0xBF
                case 0xF1...0xF3: pending = 3; lower = 0x80; upper = 0xBF
                case 0xF4: pending = 3; lower = 0x80; upper = 0x8F
                default: return false
                }
            } else {
                let b = base.load(fromByteOffset: i, as: UInt8.self)
                i += 1
                guard b >= lower && b <= upper else { return false }
                pending -= 1
                lower = 0x80
                upper = 0xBF
            }
        }
        return true
    }

    /// Whether `bytes` on their own are complete, valid UTF-8.
    public static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var v = UTF8Validator()
        return v.validate(bytes) && v.isComplete
    }
}

extension UTF8Validator {
    /// For bytes that are valid UTF-8 except for an unfinished last sequence, the length of that
    /// sequence (1–3); 0 when the bytes end on a character boundary.
    static func incompleteTailLength(_ bytes: UnsafeRawBufferPointer) -> Int {
        var i = bytes.count
        var seen = 0
        while i > 0 && seen < 4 {
            i -= 1
            seen += 1
            let b = bytes[i]
            if b & 0xC0 != 0x80 {
                // A lead byte: does its sequence extend past the end?
                let needed = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
                return needed > seen ? seen : 0
            }
        }
        return 0
    }
}
