/// `%XX` escapes (RFC 3986 §2.1), as query strings and peer addresses carry them.
enum PercentEncoding {
    /// `text` with its escapes decoded; `+` as a space when `plusIsSpace` (as HTML forms encode
    /// query strings). nil for a bad escape or bytes that are not UTF-8.
    static func decode(_ text: Substring, plusIsSpace: Bool) -> String? {
        decode(sequence: text.utf8, plusIsSpace: plusIsSpace)
    }

    static func decode(bytes text: ArraySlice<UInt8>, plusIsSpace: Bool) -> String? {
        // Nothing to decode (a token, a plain name): validated as it is.
        if !text.contains(where: { $0 == UInt8(ascii: "%") || (plusIsSpace && $0 == UInt8(ascii: "+")) }) {
            return String(validating: text, as: UTF8.self)
        }
        return decode(sequence: text, plusIsSpace: plusIsSpace)
    }

    static func decode<Bytes: Sequence<UInt8>>(sequence text: Bytes, plusIsSpace: Bool) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(text.underestimatedCount)
        var bytes = text.makeIterator()
        while let byte = bytes.next() {
            switch byte {
            case UInt8(ascii: "%"):
                guard let high = bytes.next().flatMap(hexValue), let low = bytes.next().flatMap(hexValue) else { return nil }
                out.append(high << 4 | low)
            case UInt8(ascii: "+") where plusIsSpace:
                out.append(0x20)
            default:
                out.append(byte)
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
