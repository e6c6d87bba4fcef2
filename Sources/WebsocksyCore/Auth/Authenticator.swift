import CGnuTLS

/// The loop's side of authentication: the keys and password file in use (reloaded on SIGHUP,
/// the old ones kept when a file is broken) and the checks an upgrade or a web request passes
/// before any backend or peer work is done for it.
final class Authenticator {
    let settings: AuthSettings
    private(set) var keys: TokenKeys?
    private(set) var passwords: PasswordFile?
    /// `Authorization` values whose password matched lately, by SHA-256, with when they expire:
    /// a page's assets and a client's reconnections do not each cost a bcrypt check. Emptied
    /// when the password file is reloaded.
    private var verified: [[UInt8]: Int64] = [:]
    static let verifiedLifetimeMilliseconds: Int64 = 60_000
    static let maxVerified = 1024

    init(_ settings: AuthSettings) throws(ConfigError) {
        self.settings = settings
        if settings.requiresToken { keys = try TokenKeys.load(keys: settings.keys, secret: settings.secret) }
        passwords = try settings.passwords.map { path throws(ConfigError) in try PasswordFile.load(path) }
    }

    /// SIGHUP: the key and password files again, each kept as it was when it no longer loads.
    func reloadFiles() {
        if settings.requiresToken {
            do throws(ConfigError) {
                keys = try TokenKeys.load(keys: settings.keys, secret: settings.secret)
                Log.info("reloaded token keys (\(keys!.entries.count))")
            } catch {
                Log.error("token keys not reloaded, keeping the previous ones: \(error)")
            }
        }
        if let path = settings.passwords {
            do throws(ConfigError) {
                passwords = try PasswordFile.load(path)
                verified.removeAll()
                Log.info("reloaded \(path) (\(passwords!.userCount) users)")
            } catch {
                Log.error("htpasswd file not reloaded, keeping the previous one: \(error)")
            }
        }
    }

    /// Takes the token out of the request (`TokenSource.take`) before anything logs the request.
    /// nil: no token, or tokens are not used.
    func takeToken(_ request: inout HandshakeRequest) -> String? {
        guard settings.requiresToken else { return nil }
        return TokenSource.take(from: &request, sources: settings.tokenSources)
    }

    /// With `auth-keys`/`auth-secret`: the token, verified, its claims checked and put on the
    /// request for the backend; a refusal (401) otherwise. Never logs or echoes the token.
    func verifyToken(_ token: String?, for request: inout HandshakeRequest, now: Double) -> HandshakeRejection? {
        guard let keys else { return nil }
        guard let text = token else {
            let places = settings.tokenSources.map(\.description).joined(separator: ", ")
            return HandshakeRejection(.unauthorized, "no token (looked for \(places))", challenge: bearerChallenge(invalid: false))
        }
        let refusal: TokenRefusal?
        switch JSONWebToken.parse(text) {
        case .failure(let why):
            refusal = why
        case .success(let token):
            refusal = keys.verify(token) ?? settings.policy.check(token.claims, now: now)
            if refusal == nil {
                request.claims = token.claims
                request.user = token.claims["sub"]?.scalarText
            }
        }
        return refusal.map { HandshakeRejection(.unauthorized, "invalid token: \($0)", challenge: bearerChallenge(invalid: true)) }
    }

    /// RFC 6750 §3: `error="invalid_token"` when a token was given and is not good.
    private func bearerChallenge(invalid: Bool) -> String {
        "Bearer realm=\"\(settings.realm)\"" + (invalid ? ", error=\"invalid_token\"" : "")
    }

    /// Whether these credentials matched within the last minute.
    func recentlyVerified(_ authorization: String, now: Int64) -> Bool {
        guard let expires = verified[Self.digest(authorization)] else { return false }
        return now < expires
    }

    func rememberVerified(_ authorization: String, now: Int64) {
        if verified.count >= Self.maxVerified { verified = verified.filter { $0.value > now } }
        if verified.count >= Self.maxVerified { verified.removeAll() }
        verified[Self.digest(authorization)] = now + Self.verifiedLifetimeMilliseconds
    }

    private static func digest(_ text: String) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var bytes = Array(text.utf8)
        _ = gnutls_hash_fast(GNUTLS_DIG_SHA256, &bytes, bytes.count, &out)
        return out
    }

    /// RFC 7617 §2.1.
    var basicChallenge: String { "Basic realm=\"\(settings.realm)\", charset=\"UTF-8\"" }
}
