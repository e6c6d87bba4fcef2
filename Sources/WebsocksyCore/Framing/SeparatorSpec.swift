/// The byte sequence the `separator` and `newline` framings cut at.
enum SeparatorSpec {
    /// Decodes a separator written with the escapes `\r \t \n \0 \f \\` and `\xHH`.
    static func parse(_ text: String) throws(FramingConfigError) -> [UInt8] {
        var out: [UInt8] = []
        var bytes = Array(text.utf8)[...]
        while let b = bytes.popFirst() {
            guard b == UInt8(ascii: "\\") else { out.append(b); continue }
            guard let e = bytes.popFirst() else { throw FramingConfigError("separator '\(text)' ends with a lone backslash") }
            switch e {
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "0"): out.append(0x00)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "x"):
                guard let h = bytes.popFirst(), let l = bytes.popFirst(), let hi = PercentEncoding.hexValue(h), let lo = PercentEncoding.hexValue(l) else {
                    throw FramingConfigError("separator '\(text)': \\x needs two hex digits")
                }
                out.append(hi << 4 | lo)
            default:
                throw FramingConfigError("separator '\(text)': unknown escape '\\\(Character(Unicode.Scalar(e)))' (known: \\r \\t \\n \\0 \\f \\\\ \\xHH)")
            }
        }
        guard !out.isEmpty else { throw FramingConfigError("the separator framing needs a separator as framing-config (e.g. \\n or \\x00)") }
        return out
    }

    /// The line end the `newline` framing cuts at: crlf (default), lfcr, lf or cr.
    static func newline(_ config: String?) throws(FramingConfigError) -> [UInt8] {
        switch (config ?? "").lowercased() {
        case "", "crlf": return [0x0D, 0x0A]
        case "lfcr": return [0x0A, 0x0D]
        case "lf": return [0x0A]
        case "cr": return [0x0D]
        case let other: throw FramingConfigError("newline framing: unknown line end '\(other)' (crlf, lfcr, lf or cr)")
        }
    }
}
