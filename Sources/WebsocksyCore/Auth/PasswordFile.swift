import CLinux

/// An htpasswd file (`auth-basic`): `user:hash` lines, hashes that libcrypt checks and that are
/// still fit for passwords — bcrypt (`$2y$`, `$2b$`, `$2a$`), SHA-crypt (`$5$`, `$6$`) and
/// yescrypt (`$y$`). Plain text, `{SHA}`, MD5 (`$apr1$`, `$1$`) and DES crypt stop start-up: a
/// file that looks protected and is not would be worse than none.
public struct PasswordFile: Sendable {
    private let hashes: [String: String]
    /// A hash of the file's own kind, checked for unknown users so that the time an answer takes
    /// does not tell which user names exist.
    private let decoy: String

    public static let acceptedPrefixes = ["$2y$", "$2b$", "$2a$", "$5$", "$6$", "$y$"]

    public static func load(_ path: String) throws(ConfigError) -> PasswordFile {
        guard let bytes = readFileBytes(path) else { throw ConfigError(path, "cannot read the htpasswd file") }
        return try parse(String(decoding: bytes, as: UTF8.self), path: path)
    }

    public static func parse(_ text: String, path: String) throws(ConfigError) -> PasswordFile {
        var hashes: [String: String] = [:]
        var first: String?
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.hasSuffix("\r") ? raw.dropLast() : raw
            let trimmed = line.trimmingHTTPWhitespace
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let here = "\(path):\(index + 1)"
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count >= 2, !fields[0].isEmpty, !fields[1].isEmpty else { throw ConfigError(here, "expected user:hash") }
            let user = String(fields[0]), hash = String(fields[1])
            if let problem = refusal(of: hash) { throw ConfigError(here, "user \(LogText.capped(user, to: 64)): \(problem)") }
            guard hashes.updateValue(hash, forKey: user) == nil else { throw ConfigError(here, "user \(LogText.capped(user, to: 64)) is listed twice") }
            if first == nil { first = hash }
        }
        guard let first else { throw ConfigError(path, "no user in the htpasswd file") }
        return PasswordFile(hashes: hashes, decoy: first)
    }

    /// Why a hash is not accepted, nil when it is.
    static func refusal(of hash: String) -> String? {
        let advice = "re-create the entry with `htpasswd -B` (bcrypt)"
        if hash.hasPrefix("$apr1$") || hash.hasPrefix("$1$") { return "MD5 hashes are not accepted; \(advice)" }
        if hash.hasPrefix("{SHA}") { return "unsalted SHA-1 hashes are not accepted; \(advice)" }
        guard hash.hasPrefix("$") else { return "plain-text or DES-crypt passwords are not accepted; \(advice)" }
        guard acceptedPrefixes.contains(where: hash.hasPrefix) else {
            let method = "$" + hash.dropFirst().prefix { $0 != "$" } + "$"
            return "hash method \(LogText.capped(method, to: 12)) is not accepted (bcrypt, SHA-crypt $5$/$6$ and yescrypt are)"
        }
        guard clinux_crypt_supported(hash) != 0 else { return "malformed hash" }
        return nil
    }

    public var userCount: Int { hashes.count }

    /// Whether `password` is `user`'s. Slow by design (bcrypt): on the password thread only.
    public func check(user: String, password: String) -> Bool {
        guard let hash = hashes[user] else {
            _ = clinux_crypt_matches(password, decoy)
            return false
        }
        return clinux_crypt_matches(password, hash) != 0
    }
}

/// `Authorization: Basic base64(user:password)` (RFC 7617).
public enum BasicCredentials {
    public enum Parse: Equatable {
        case missing
        case malformed
        case credentials(user: String, password: String)
    }

    public static func parse(_ header: String?) -> Parse {
        guard let header else { return .missing }
        let parts = header.trimmingHTTPWhitespace.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic" else { return .missing }
        // Standard base64 with padding, decoded by the strict base64url decoder.
        var encoded = Array(parts[1].trimmingHTTPWhitespace.utf8)
        guard encoded.count % 4 == 0, encoded.count <= 4096 else { return .malformed }
        while encoded.last == UInt8(ascii: "=") { encoded.removeLast() }
        guard !encoded.contains(UInt8(ascii: "-")), !encoded.contains(UInt8(ascii: "_")) else { return .malformed }
        let mapped = encoded.map { $0 == UInt8(ascii: "+") ? UInt8(ascii: "-") : $0 == UInt8(ascii: "/") ? UInt8(ascii: "_") : $0 }
        guard let decoded = Base64URL.decode(mapped), let colon = decoded.firstIndex(of: UInt8(ascii: ":")),
              let user = String(validating: decoded[..<colon], as: UTF8.self),
              let password = String(validating: decoded[(colon + 1)...], as: UTF8.self),
              !user.isEmpty, !decoded.contains(0) else { return .malformed }
        return .credentials(user: user, password: password)
    }
}
