/// A JWK Set (RFC 7517 §5), or a single JWK, as identity providers publish their signing keys.
/// Keys this gateway cannot use — encryption keys (`use` other than `sig`), other key types or
/// curves — are skipped with a warning, since such sets mix them; a set with no usable key is an error.
enum JSONWebKeySet {
    static func entries(_ bytes: [UInt8], source: String) throws(TokenRefusal) -> [TokenKeys.Entry] {
        guard let document = JSONParser.parse(bytes)?.object else { throw TokenRefusal("not valid JSON") }
        let keys: [JSONValue]
        if let list = document["keys"] {
            guard case .array(let array) = list else { throw TokenRefusal("\"keys\" is not an array") }
            keys = array
        } else {
            keys = [.object(document)]
        }
        var entries: [TokenKeys.Entry] = []
        for (index, key) in keys.enumerated() {
            do throws(TokenRefusal) {
                guard let jwk = key.object else { throw TokenRefusal("not an object") }
                if let entry = try entry(jwk) { entries.append(entry) }
            } catch {
                Log.warning("\(source): key \(index + 1) skipped: \(error)")
            }
        }
        guard !entries.isEmpty else { throw TokenRefusal("no usable key in the JWK set") }
        return entries
    }

    /// The key a JWK describes; nil for one meant for encryption.
    private static func entry(_ jwk: [String: JSONValue]) throws(TokenRefusal) -> TokenKeys.Entry? {
        if let use = jwk["use"]?.string, use != "sig" { return nil }
        let keyID = jwk["kid"]?.string
        var algorithm: JWSAlgorithm?
        if let name = jwk["alg"]?.string {
            guard let known = JWSAlgorithm(rawValue: name) else { throw TokenRefusal("algorithm '\(LogText.capped(name, to: 20))' is not accepted") }
            algorithm = known
        }
        func member(_ name: String) throws(TokenRefusal) -> [UInt8] {
            guard let text = jwk[name]?.string, let bytes = Base64URL.decode(text.utf8) else {
                throw TokenRefusal("member \"\(name)\" missing or not base64url")
            }
            return bytes
        }
        let material: TokenKeys.Material
        switch jwk["kty"]?.string {
        case "RSA":
            material = .publicKey(try PublicKey.rsa(modulus: member("n"), exponent: member("e")))
        case "EC":
            material = .publicKey(try PublicKey.ecdsa(curve: jwk["crv"]?.string ?? "", x: member("x"), y: member("y")))
        case "OKP":
            guard jwk["crv"]?.string == "Ed25519" else { throw TokenRefusal("OKP curve other than Ed25519") }
            material = .publicKey(try PublicKey.ed25519(x: member("x")))
        case "oct":
            let secret = try member("k")
            guard secret.count >= TokenKeys.minimumSecretBytes else {
                throw TokenRefusal("secret of \(secret.count) bytes (at least \(TokenKeys.minimumSecretBytes) are required)")
            }
            material = .secret(secret)
        case let other:
            throw TokenRefusal("key type '\(LogText.capped(other ?? "(none)", to: 16))' is not supported (RSA, EC, OKP, oct are)")
        }
        let entry = TokenKeys.Entry(keyID: keyID, algorithm: algorithm, material: material)
        if let algorithm, !entry.fits(algorithm) { throw TokenRefusal("key does not fit its alg \(algorithm)") }
        return entry
    }
}
