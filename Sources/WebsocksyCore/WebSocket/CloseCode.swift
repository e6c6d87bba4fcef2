/// Close status codes (RFC 6455 §7.4) the server sends, and the rule for codes it may receive.
public struct CloseCode: RawRepresentable, Equatable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(_ code: UInt16) { self.rawValue = code }

    public static let normalClosure = CloseCode(1000)
    public static let goingAway = CloseCode(1001)
    public static let protocolError = CloseCode(1002)
    public static let unsupportedData = CloseCode(1003)
    public static let invalidPayload = CloseCode(1007)
    public static let policyViolation = CloseCode(1008)
    public static let messageTooBig = CloseCode(1009)
    public static let internalError = CloseCode(1011)

    /// Whether a peer may send this code in a Close frame (§7.4.1, §7.4.2): the defined codes
    /// 1000–1003 and 1007–1011, 1012–1014 added by the IANA registry (service restart, try again
    /// later, bad gateway), and the ranges for libraries (3000–3999) and applications (4000–4999).
    /// 1005, 1006 and 1015 exist only as local indications and are never valid on the wire.
    public static func isValidOnWire(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: true
        default: false
        }
    }

    public var description: String { String(rawValue) }
}
