/// The header fields of one request, kept as the bytes that arrived plus where each name and value
/// lies in them. A request costs two allocations however many fields it carries, and a `String` is
/// made only for a field someone asks for: the upgrade path reads a handful of fields, a browser
/// sends fifteen or more.
public struct HeaderFields: Sendable {
    typealias Field = (name: Range<Int>, value: Range<Int>)

    private let bytes: [UInt8]
    private let fields: [Field]

    init(bytes: [UInt8], fields: [Field]) {
        self.bytes = bytes
        self.fields = fields
    }

    public init(_ pairs: [(name: String, value: String)]) {
        var bytes: [UInt8] = [], fields: [Field] = []
        for (name, value) in pairs {
            let nameStart = bytes.count
            bytes += name.utf8
            let valueStart = bytes.count
            bytes += value.utf8
            fields.append((nameStart..<valueStart, valueStart..<bytes.count))
        }
        self.init(bytes: bytes, fields: fields)
    }

    public var count: Int { fields.count }

    /// Field `index` in arrival order, the name spelled as the client sent it.
    public subscript(index: Int) -> (name: String, value: String) {
        (string(fields[index].name), string(fields[index].value))
    }

    /// Every field in arrival order.
    public var all: [(name: String, value: String)] { (0..<count).map { self[$0] } }

    /// The value of the first field with this name (ASCII case-insensitive).
    public func first(_ name: String) -> String? {
        fields.first { nameEquals($0.name, name) }.map { string($0.value) }
    }

    /// The values of every field with this name, in arrival order: for list-valued fields.
    public func values(_ name: String) -> [String] {
        fields.filter { nameEquals($0.name, name) }.map { string($0.value) }
    }

    /// The value of the last field with this name: for fields a proxy appends to.
    public func last(_ name: String) -> String? {
        fields.last { nameEquals($0.name, name) }.map { string($0.value) }
    }

    private func string(_ range: Range<Int>) -> String {
        String(decoding: bytes[range], as: UTF8.self)
    }

    private func nameEquals(_ range: Range<Int>, _ name: String) -> Bool {
        var name = name
        return name.withUTF8 { wanted in
            bytes.withUnsafeBytes { HTTPBytes.caseInsensitiveEquals(UnsafeRawBufferPointer(rebasing: $0[range]), wanted) }
        }
    }
}

/// Byte-level helpers for HTTP/1.1 text (RFC 9110), shared by the request parser and the header store.
enum HTTPBytes {
    static let space = UInt8(ascii: " "), tab = UInt8(ascii: "\t"), comma = UInt8(ascii: ",")

    /// ASCII case-insensitive equality, as field names and tokens compare.
    static func caseInsensitiveEquals(_ a: UnsafeRawBufferPointer, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        for i in 0..<a.count where a[i] != b[i] {
            let lower = a[i] | 0x20
            guard lower == b[i] | 0x20, lower >= 0x61, lower <= 0x7A else { return false }
        }
        return true
    }

    static func caseInsensitiveEquals(_ a: UnsafeRawBufferPointer, _ b: StaticString) -> Bool {
        caseInsensitiveEquals(a, UnsafeBufferPointer(start: b.utf8Start, count: b.utf8CodeUnitCount))
    }

    /// `range` without leading and trailing spaces and tabs (optional whitespace, RFC 9110 §5.6.3).
    static func trimmed(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Range<Int> {
        var lower = range.lowerBound, upper = range.upperBound
        while lower < upper, bytes[lower] == space || bytes[lower] == tab { lower += 1 }
        while upper > lower, bytes[upper - 1] == space || bytes[upper - 1] == tab { upper -= 1 }
        return lower..<upper
    }

    /// Calls `body` with each non-empty, trimmed element of a comma-separated list (RFC 9110 §5.6.1)
    /// until it returns false; returns false when `body` did.
    @discardableResult
    static func forEachListElement<E: Error>(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>,
                                             _ body: (Range<Int>) throws(E) -> Bool) throws(E) -> Bool {
        var start = range.lowerBound
        while start <= range.upperBound {
            var end = start
            while end < range.upperBound, bytes[end] != comma { end += 1 }
            let element = trimmed(bytes, start..<end)
            if !element.isEmpty, try !body(element) { return false }
            start = end + 1
        }
        return true
    }

    /// Whether a comma-separated list contains `token` (case-insensitive).
    static func listContains(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ token: StaticString) -> Bool {
        !forEachListElement(bytes, range) { element in
            !caseInsensitiveEquals(UnsafeRawBufferPointer(rebasing: bytes[element]), token)
        }
    }

    /// RFC 9110 §5.6.2 tchar.
    static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
             UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    static func isToken(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        !range.isEmpty && bytes[range].allSatisfy(isTokenByte)
    }
}
