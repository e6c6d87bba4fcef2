/// One element of a `Sec-WebSocket-Extensions` header (RFC 6455 §9.1): an extension name and its
/// parameters, in order, values unquoted. Names compare case-insensitively and are kept lower-case.
public struct ExtensionOffer: Equatable, Sendable {
    public var name: String
    public var parameters: [(name: String, value: String?)]

    public init(name: String, parameters: [(name: String, value: String?)] = []) {
        self.name = name
        self.parameters = parameters
    }

    public static func == (a: ExtensionOffer, b: ExtensionOffer) -> Bool {
        a.name == b.name && a.parameters.elementsEqual(b.parameters) { $0.name == $1.name && $0.value == $1.value }
    }

    /// Every offer in the header values, in order (a client may send the header more than once;
    /// the values are one comma-separated list, RFC 9110 §5.3). An element that breaks the grammar
    /// is left out rather than failing the handshake: extensions are optional, so a malformed
    /// offer is simply not accepted.
    public static func parse(_ values: [String]) -> [ExtensionOffer] {
        var offers: [ExtensionOffer] = []
        for value in values {
            for element in splitOutsideQuotes(Array(value.utf8), separator: UInt8(ascii: ",")) {
                if let offer = parseElement(element) { offers.append(offer) }
            }
        }
        return offers
    }

    /// `extension-token *( ";" extension-param )`; nil when any part is malformed. An empty
    /// element (`a, , b`) is skipped by the caller's list rule, so it yields nil too.
    private static func parseElement(_ bytes: ArraySlice<UInt8>) -> ExtensionOffer? {
        let parts = splitOutsideQuotes(Array(bytes), separator: UInt8(ascii: ";"))
        guard let first = parts.first, let name = token(trimmed(first)) else { return nil }
        var offer = ExtensionOffer(name: name)
        for part in parts.dropFirst() {
            let param = trimmed(part)
            if let equals = param.firstIndex(of: UInt8(ascii: "=")) {
                guard let key = token(trimmed(param[param.startIndex..<equals])),
                      let value = parameterValue(trimmed(param[(equals + 1)...])) else { return nil }
                offer.parameters.append((key, value))
            } else {
                guard let key = token(param) else { return nil }
                offer.parameters.append((key, nil))
            }
        }
        return offer
    }

    /// A token, or a quoted-string whose unescaped content is a token (§9.1 requires that).
    private static func parameterValue(_ bytes: ArraySlice<UInt8>) -> String? {
        guard bytes.first == UInt8(ascii: "\"") else { return token(bytes) }
        guard bytes.count >= 2, bytes.last == UInt8(ascii: "\"") else { return nil }
        var content: [UInt8] = []
        var escaped = false
        for byte in bytes.dropFirst().dropLast() {
            if escaped {
                content.append(byte)
                escaped = false
            } else if byte == UInt8(ascii: "\\") {
                escaped = true
            } else {
                content.append(byte)
            }
        }
        return escaped ? nil : token(content[...])
    }

    private static func token(_ bytes: ArraySlice<UInt8>) -> String? {
        guard !bytes.isEmpty, bytes.allSatisfy(HTTPBytes.isTokenByte) else { return nil }
        return String(decoding: bytes, as: UTF8.self).lowercased()
    }

    private static func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var s = bytes
        while let f = s.first, f == 0x20 || f == 0x09 { s = s.dropFirst() }
        while let l = s.last, l == 0x20 || l == 0x09 { s = s.dropLast() }
        return s
    }

    /// Splits at `separator` except inside a quoted-string (where `\` escapes the next byte).
    private static func splitOutsideQuotes(_ bytes: [UInt8], separator: UInt8) -> [ArraySlice<UInt8>] {
        var parts: [ArraySlice<UInt8>] = []
        var start = 0, quoted = false, escaped = false
        for (i, byte) in bytes.enumerated() {
            if escaped { escaped = false; continue }
            if quoted {
                if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { quoted = false }
            } else if byte == UInt8(ascii: "\"") {
                quoted = true
            } else if byte == separator {
                parts.append(bytes[start..<i])
                start = i + 1
            }
        }
        parts.append(bytes[start...])
        return parts
    }
}
