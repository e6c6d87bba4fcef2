import CGnuTLS
import CNettle
import Glibc

/// The keys tokens are verified with: an HMAC secret (`auth-secret`), public keys from PEM blocks
/// or a JWKS document (`auth-keys`), each JWK with its `kid` and `alg` when it has them.
/// Immutable once loaded: a reload builds a new set, so a broken file leaves the old one in use.
public final class TokenKeys: @unchecked Sendable {
    enum Material {
        case secret(HMACKey)
        case publicKey(PublicKey)

        static func secret(_ bytes: [UInt8]) -> Material { .secret(HMACKey(bytes)) }
    }

    struct Entry {
        let keyID: String?
        /// A JWK's `alg`: the only algorithm this key may verify.
        let algorithm: JWSAlgorithm?
        let material: Material

        func fits(_ algorithm: JWSAlgorithm) -> Bool {
            if let only = self.algorithm, only != algorithm { return false }
            switch material {
            case .secret: return algorithm.family == .hmac
            case .publicKey(let key): return key.fits(algorithm)
            }
        }
    }

    let entries: [Entry]
    /// Some key has a `kid`: a token's `kid` must then name one. With none (PEM keys, a bare
    /// secret) a token's `kid` cannot select anything and is ignored.
    private let keyIDsInUse: Bool
    /// Keys one token may be tried against (without a `kid` to pick one): bounds the work one
    /// forged token can ask for.
    static let maxCandidates = 8
    /// RFC 7518 §3.2: an HMAC key at least as long as the hash output; 32 bytes for HS256.
    static let minimumSecretBytes = 32

    init(entries: [Entry]) {
        self.entries = entries
        keyIDsInUse = entries.contains { $0.keyID != nil }
    }

    /// Reads `auth-keys` and `auth-secret`; a file that yields no usable key is an error naming it.
    public static func load(keys keysPath: String?, secret secretPath: String?) throws(ConfigError) -> TokenKeys {
        var entries: [Entry] = []
        if let secretPath {
            var bytes = try readBytes(secretPath)
            if bytes.last == 0x0A { bytes.removeLast() }
            if bytes.last == 0x0D { bytes.removeLast() }
            guard bytes.count >= minimumSecretBytes else {
                throw ConfigError(secretPath, "the HMAC secret is \(bytes.count) bytes; at least \(minimumSecretBytes) are required (e.g. head -c 48 /dev/urandom | base64 > \(secretPath))")
            }
            entries.append(Entry(keyID: nil, algorithm: nil, material: .secret(bytes)))
        }
        if let keysPath {
            let bytes = try readBytes(keysPath)
            let trimmed = bytes.drop { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
            let loaded: [Entry]
            do throws(TokenRefusal) {
                loaded = trimmed.first == UInt8(ascii: "{") ? try JSONWebKeySet.entries(Array(trimmed), source: keysPath) : try pemEntries(bytes)
            } catch {
                throw ConfigError(keysPath, error.description)
            }
            entries += loaded
        }
        return TokenKeys(entries: entries)
    }

    private static func readBytes(_ path: String) throws(ConfigError) -> [UInt8] {
        guard let bytes = readFileBytes(path) else { throw ConfigError(path, "cannot read: \(String(cString: strerror(errno)))") }
        return bytes
    }

    /// Every `PUBLIC KEY` block of a PEM file.
    private static func pemEntries(_ bytes: [UInt8]) throws(TokenRefusal) -> [Entry] {
        let text = String(decoding: bytes, as: UTF8.self)
        let begin = "-----BEGIN PUBLIC KEY-----", end = "-----END PUBLIC KEY-----"
        var entries: [Entry] = []
        var rest = text[...]
        while let start = rest.firstRange(of: begin) {
            guard let stop = rest[start.upperBound...].firstRange(of: end) else { throw TokenRefusal("unterminated PEM block") }
            let block = Array(rest[start.lowerBound..<stop.upperBound].utf8)
            do throws(TokenRefusal) {
                entries.append(Entry(keyID: nil, algorithm: nil, material: .publicKey(try PublicKey.pem(block))))
            } catch {
                throw TokenRefusal("public key \(entries.count + 1): \(error)")
            }
            rest = rest[stop.upperBound...]
        }
        guard !entries.isEmpty else {
            throw TokenRefusal("no '\(begin)' block and not a JWKS document (a certificate or a private key is not accepted: extract the public key with `openssl pkey -pubout`)")
        }
        return entries
    }

    /// Checks `token`'s signature against the keys that fit its header. nil: verified.
    func verify(_ token: JSONWebToken) -> TokenRefusal? {
        var candidates = entries.filter { $0.fits(token.algorithm) }
        if keyIDsInUse, let kid = token.keyID {
            candidates = candidates.filter { $0.keyID == kid }
            guard !candidates.isEmpty else { return TokenRefusal("unknown key id '\(LogText.capped(kid, to: 64))' for \(token.algorithm)") }
        }
        guard !candidates.isEmpty else { return TokenRefusal("no key for algorithm \(token.algorithm)") }
        for entry in candidates.prefix(Self.maxCandidates) where Self.check(entry.material, token) { return nil }
        return TokenRefusal("bad signature")
    }

    private static func check(_ material: Material, _ token: JSONWebToken) -> Bool {
        switch material {
        case .publicKey(let key):
            return key.verify(token.algorithm, input: token.signingInput, signature: token.signature)
        case .secret(let key):
            return key.verifies(token)
        }
    }
}

/// An HMAC secret with its key schedule prepared once per hash (Nettle), so that checking a token
/// hashes the token alone (measured: `gnutls_hmac_fast` spent twice the hashing on set-up).
final class HMACKey: @unchecked Sendable {
    private let prepared: UnsafeMutablePointer<cnettle_hmac_key>

    init(_ secret: [UInt8]) {
        prepared = .allocate(capacity: 3)
        for (index, size) in [32, 48, 64].enumerated() {
            cnettle_hmac_prepare(prepared + index, Int32(size), secret, secret.count)
        }
    }

    deinit {
        // The key schedule is secret too.
        memset(prepared, 0, 3 * MemoryLayout<cnettle_hmac_key>.stride)
        prepared.deallocate()
    }

    func verifies(_ token: JSONWebToken) -> Bool {
        let size = token.algorithm.hashBytes
        guard token.signature.count == size else { return false }
        let index = size == 32 ? 0 : size == 48 ? 1 : 2
        var digest = [UInt8](repeating: 0, count: 64)
        token.signingInput.withUnsafeBufferPointer { cnettle_hmac_compute(prepared + index, $0.baseAddress, $0.count, &digest) }
        // Constant time: how many leading bytes of a forged MAC were right is not told.
        return nettle_memeql_sec(digest, token.signature, size) != 0
    }
}
