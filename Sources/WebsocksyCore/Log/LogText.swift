/// Text that came from the network, made safe to log and to reflect.
///
/// A request target or header value reaches the logs inside messages: a CR or LF in it would forge
/// a line of its own, an ESC would drive the terminal of whoever reads the log, and a `"` would end a
/// quoted field of the access log early. Such bytes are written as `\xHH`. Reflected values are also
/// capped, so one refused request cannot write a 16 KB line.
enum LogText {
    /// Longest reflected value, in bytes, before it is cut (request targets, header values).
    static let reflectedLimit = 200
    /// Longest log message, in bytes: the bound for call sites that interpolate a value uncapped.
    static let messageLimit = 4096

    /// `text` with control characters (C0, DEL, and C1 as their two UTF-8 bytes) and the bytes in
    /// `extra` written as `\xHH`. Text with nothing to escape is returned as is.
    static func escaped(_ text: String, also extra: [UInt8] = []) -> String {
        guard text.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F || $0 == 0xC2 || extra.contains($0) }) else { return text }
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 32)
        var i = 0
        while i < bytes.count {
            let byte = bytes[i]
            let isC1 = byte == 0xC2 && i + 1 < bytes.count && (0x80...0x9F).contains(bytes[i + 1])
            let escapedCount = isC1 ? 2 : byte < 0x20 || byte == 0x7F || extra.contains(byte) ? 1 : 0
            guard escapedCount > 0 else {
                out.append(byte)
                i += 1
                continue
            }
            for b in bytes[i..<i + escapedCount] {
                out += [UInt8(ascii: "\\"), UInt8(ascii: "x"), hexDigit(b >> 4), hexDigit(b & 0xF)]
            }
            i += escapedCount
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `text` cut to at most `limit` bytes, on a character boundary, with a marker saying how long it
    /// was; shorter text is returned as is.
    static func capped(_ text: String, to limit: Int = reflectedLimit) -> String {
        let utf8 = text.utf8
        guard utf8.count > limit else { return text }
        var end = utf8.index(utf8.startIndex, offsetBy: limit)
        while end > utf8.startIndex, utf8[end] & 0xC0 == 0x80 { utf8.formIndex(before: &end) }  // inside a character
        return String(decoding: utf8[..<end], as: UTF8.self) + "…(\(utf8.count) bytes)"
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "A") + nibble - 10
    }
}
