import CGnuTLS

/// A public key that verifies token signatures, held by GnuTLS (which does the arithmetic on
/// Nettle): RSA of 2048 bits or more, ECDSA on P-256/P-384/P-521, or Ed25519.
final class PublicKey: @unchecked Sendable {
    enum Kind: Equatable {
        case rsa
        /// Bytes of one coordinate (and of r and s in a JWS signature): 32, 48 or 66.
        case ecdsa(coordinateBytes: Int)
        case ed25519
    }

    private let handle: gnutls_pubkey_t
    let kind: Kind

    /// Takes ownership of `handle` (deinitialised on failure too).
    private init(adopting handle: gnutls_pubkey_t) throws(TokenRefusal) {
        self.handle = handle
        var bits: UInt32 = 0
        let algorithm = gnutls_pubkey_get_pk_algorithm(handle, &bits)
        switch gnutls_pk_algorithm_t(rawValue: UInt32(bitPattern: algorithm)) {
        case GNUTLS_PK_RSA:
            // RFC 7518 §3.3: RSA keys of 2048 bits or larger MUST be used.
            guard bits >= 2048 else { kind = .rsa; throw TokenRefusal("RSA key of \(bits) bits (at least 2048 are required)") }
            kind = .rsa
        case GNUTLS_PK_ECDSA:
            // GnuTLS counts P-521 as 528 bits (66 whole bytes) in some versions.
            guard [256, 384, 521, 528].contains(bits) else { kind = .rsa; throw TokenRefusal("EC key on an unsupported curve (\(bits) bits)") }
            kind = .ecdsa(coordinateBytes: (Int(bits) + 7) / 8)
        case GNUTLS_PK_EDDSA_ED25519:
            kind = .ed25519
        default:
            kind = .rsa
            throw TokenRefusal("unsupported public key algorithm (RSA, EC P-256/384/521 and Ed25519 are)")
        }
    }

    deinit { gnutls_pubkey_deinit(handle) }

    private static func make(_ body: (gnutls_pubkey_t) -> Int32) throws(TokenRefusal) -> PublicKey {
        var handle: gnutls_pubkey_t?
        guard gnutls_pubkey_init(&handle) == 0, let handle else { throw TokenRefusal("out of memory") }
        let rc = body(handle)
        guard rc == 0 else {
            gnutls_pubkey_deinit(handle)
            throw TokenRefusal(String(cString: gnutls_strerror(rc)))
        }
        return try PublicKey(adopting: handle)
    }

    /// One `-----BEGIN PUBLIC KEY-----` block (SubjectPublicKeyInfo).
    static func pem(_ block: [UInt8]) throws(TokenRefusal) -> PublicKey {
        try make { handle in
            block.withUnsafeBytes { bytes in
                var datum = gnutls_datum_t(data: UnsafeMutablePointer(mutating: bytes.bindMemory(to: UInt8.self).baseAddress), size: UInt32(bytes.count))
                return gnutls_pubkey_import(handle, &datum, GNUTLS_X509_FMT_PEM)
            }
        }
    }

    /// A JWK's RSA modulus and exponent (big-endian, RFC 7518 §6.3.1).
    static func rsa(modulus: [UInt8], exponent: [UInt8]) throws(TokenRefusal) -> PublicKey {
        try make { handle in
            withDatum(modulus) { n in withDatum(exponent) { e in gnutls_pubkey_import_rsa_raw(handle, n, e) } }
        }
    }

    /// A JWK's EC point (RFC 7518 §6.2.1) on the curve `crv` names.
    static func ecdsa(curve: String, x: [UInt8], y: [UInt8]) throws(TokenRefusal) -> PublicKey {
        let (id, size): (gnutls_ecc_curve_t, Int)
        switch curve {
        case "P-256": (id, size) = (GNUTLS_ECC_CURVE_SECP256R1, 32)
        case "P-384": (id, size) = (GNUTLS_ECC_CURVE_SECP384R1, 48)
        case "P-521": (id, size) = (GNUTLS_ECC_CURVE_SECP521R1, 66)
        default: throw TokenRefusal("unsupported curve '\(LogText.capped(curve, to: 16))'")
        }
        guard x.count == size, y.count == size else { throw TokenRefusal("EC coordinates of the wrong length for \(curve)") }
        return try make { handle in
            withDatum(x) { xd in withDatum(y) { yd in gnutls_pubkey_import_ecc_raw(handle, id, xd, yd) } }
        }
    }

    /// A JWK's Ed25519 key (RFC 8037 §2, `kty` OKP).
    static func ed25519(x: [UInt8]) throws(TokenRefusal) -> PublicKey {
        guard x.count == 32 else { throw TokenRefusal("Ed25519 key is not 32 bytes") }
        return try make { handle in withDatum(x) { xd in gnutls_pubkey_import_ecc_raw(handle, GNUTLS_ECC_CURVE_ED25519, xd, nil) } }
    }

    /// Whether this key can check `algorithm`'s signatures at all (RFC 7518: RS/PS need RSA,
    /// ES256 needs P-256, ES384 P-384, ES512 P-521; EdDSA Ed25519). Never an HMAC: a public key
    /// is not a secret, and taking it as one is the classic algorithm-confusion forgery.
    func fits(_ algorithm: JWSAlgorithm) -> Bool {
        switch (algorithm.family, kind) {
        case (.rsa, .rsa), (.rsaPSS, .rsa), (.eddsa, .ed25519): true
        case (.ecdsa, .ecdsa(let size)): size == (algorithm.hashBytes == 64 ? 66 : algorithm.hashBytes)
        default: false
        }
    }

    func verify(_ algorithm: JWSAlgorithm, input: [UInt8], signature: [UInt8]) -> Bool {
        guard fits(algorithm) else { return false }
        let sign: gnutls_sign_algorithm_t
        switch algorithm {
        case .RS256: sign = GNUTLS_SIGN_RSA_SHA256
        case .RS384: sign = GNUTLS_SIGN_RSA_SHA384
        case .RS512: sign = GNUTLS_SIGN_RSA_SHA512
        case .PS256: sign = GNUTLS_SIGN_RSA_PSS_SHA256
        case .PS384: sign = GNUTLS_SIGN_RSA_PSS_SHA384
        case .PS512: sign = GNUTLS_SIGN_RSA_PSS_SHA512
        case .ES256: sign = GNUTLS_SIGN_ECDSA_SHA256
        case .ES384: sign = GNUTLS_SIGN_ECDSA_SHA384
        case .ES512: sign = GNUTLS_SIGN_ECDSA_SHA512
        case .EdDSA: sign = GNUTLS_SIGN_EDDSA_ED25519
        case .HS256, .HS384, .HS512: return false
        }
        guard case .ecdsa(let size) = kind else {
            return Self.withDatum(input) { data in Self.withDatum(signature) { sig in gnutls_pubkey_verify_data2(handle, sign, 0, data, sig) >= 0 } }
        }
        // JWS carries r || s, fixed width (RFC 7518 §3.4); GnuTLS wants them DER-encoded.
        guard signature.count == 2 * size else { return false }
        var der = gnutls_datum_t()
        let encoded = Self.withDatum(Array(signature[0..<size])) { r in
            Self.withDatum(Array(signature[size...])) { s in gnutls_encode_rs_value(&der, r, s) }
        }
        guard encoded == 0 else { return false }
        defer { cgnutls_free(der.data) }
        return Self.withDatum(input) { data in gnutls_pubkey_verify_data2(handle, sign, 0, data, &der) >= 0 }
    }

    private static func withDatum<R>(_ bytes: [UInt8], _ body: (UnsafePointer<gnutls_datum_t>) -> R) -> R {
        bytes.withUnsafeBufferPointer { buffer in
            var datum = gnutls_datum_t(data: UnsafeMutablePointer(mutating: buffer.baseAddress), size: UInt32(buffer.count))
            return body(&datum)
        }
    }
}
