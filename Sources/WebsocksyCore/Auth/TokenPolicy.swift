/// What a verified token's claims must say (RFC 7519 §4.1): not expired, already valid, from the
/// configured issuer, for one of the configured audiences.
public struct TokenPolicy: Equatable, Sendable {
    public var issuer: String?
    public var audiences: [String] = []
    /// Seconds of clock difference tolerated on `exp` and `nbf`.
    public var leeway = 30
    /// A token without `exp` would be valid for ever: refused unless this is turned off.
    public var requireExpiry = true

    public init() {}

    /// nil when the claims are acceptable at `now` (seconds since the epoch).
    public func check(_ claims: [String: JSONValue], now: Double) -> TokenRefusal? {
        let leeway = Double(self.leeway)
        if let exp = claims["exp"] {
            guard let seconds = exp.number else { return TokenRefusal("exp is not a number") }
            if now >= seconds + leeway { return TokenRefusal("token expired") }
        } else if requireExpiry {
            return TokenRefusal("token has no exp")
        }
        if let nbf = claims["nbf"] {
            guard let seconds = nbf.number else { return TokenRefusal("nbf is not a number") }
            if now + leeway < seconds { return TokenRefusal("token not valid yet (nbf)") }
        }
        if let issuer, claims["iss"]?.string != issuer { return TokenRefusal("wrong or missing issuer (iss)") }
        if !audiences.isEmpty {
            let named: [String]
            switch claims["aud"] {
            case .string(let one): named = [one]
            case .array(let many): named = many.compactMap(\.string)
            default: named = []
            }
            guard named.contains(where: audiences.contains) else { return TokenRefusal("wrong or missing audience (aud)") }
        }
        return nil
    }
}
