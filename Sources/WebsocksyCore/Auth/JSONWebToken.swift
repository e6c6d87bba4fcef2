/// A JWS in compact serialisation (RFC 7515 §7.1) carrying a JWT claim set (RFC 7519), split and
/// decoded but not verified: `TokenVerifier` decides whether to believe it.
public struct JSONWebToken: Sendable {
    public let algorithm: JWSAlgorithm
    /// `kid` of the protected header.
    public let keyID: String?
    public let claims: [String: JSONValue]
    /// `BASE64URL(header) "." BASE64URL(payload)`: the bytes the signature covers.
    public let signingInput: [UInt8]
    public let signature: [UInt8]

    /// Longest token accepted: far above any real one, and bounding the work an attacker can ask for.
    public static let maxLength = 8192

    public static func parse(_ text: String) -> Result<JSONWebToken, TokenRefusal> {
        let bytes = Array(text.utf8)
        guard bytes.count <= maxLength else { return .failure(.init("token longer than \(maxLength) bytes")) }
        let parts = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            return .failure(.init(parts.count == 5 ? "encrypted tokens (JWE) are not accepted" : "malformed token: not three dot-separated parts"))
        }
        guard let headerBytes = Base64URL.decode(parts[0]), let header = JSONParser.parse(headerBytes)?.object else {
            return .failure(.init("malformed token: header is not base64url JSON"))
        }
        guard let payloadBytes = Base64URL.decode(parts[1]), let claims = JSONParser.parse(payloadBytes)?.object else {
            return .failure(.init("malformed token: payload is not a base64url JSON object"))
        }
        guard let signature = Base64URL.decode(parts[2]) else {
            return .failure(.init("malformed token: signature is not base64url"))
        }
        guard let name = header["alg"]?.string else { return .failure(.init("token header has no alg")) }
        guard let algorithm = JWSAlgorithm(rawValue: name) else {
            return .failure(.init("token algorithm '\(LogText.capped(name, to: 20))' is not accepted"))
        }
        // RFC 7515 §4.1.11: extensions a recipient does not understand make the token invalid; we know none.
        guard header["crit"] == nil else { return .failure(.init("token header has crit extensions")) }
        if let kid = header["kid"], kid.string == nil { return .failure(.init("token kid is not a string")) }
        let input = Array(bytes[0..<(parts[0].count + 1 + parts[1].count)])
        return .success(JSONWebToken(algorithm: algorithm, keyID: header["kid"]?.string, claims: claims,
                                     signingInput: input, signature: signature))
    }
}

/// The JWS algorithms accepted (RFC 7518 §3.1, RFC 8037 for EdDSA). `none` is not among them.
public enum JWSAlgorithm: String, Sendable, CaseIterable {
    case HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA

    public enum Family: Sendable { case hmac, rsa, rsaPSS, ecdsa, eddsa }

    public var family: Family {
        switch self {
        case .HS256, .HS384, .HS512: .hmac
        case .RS256, .RS384, .RS512: .rsa
        case .PS256, .PS384, .PS512: .rsaPSS
        case .ES256, .ES384, .ES512: .ecdsa
        case .EdDSA: .eddsa
        }
    }

    /// Digest size in bytes (SHA-256/384/512); 0 for EdDSA, which hashes on its own.
    public var hashBytes: Int {
        switch self {
        case .HS256, .RS256, .PS256, .ES256: 32
        case .HS384, .RS384, .PS384, .ES384: 48
        case .HS512, .RS512, .PS512, .ES512: 64
        case .EdDSA: 0
        }
    }
}

/// Why a token is not accepted: one line for the log and the 401's body (never the token).
public struct TokenRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
