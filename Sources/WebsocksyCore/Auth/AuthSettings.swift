/// Authentication at the upgrade (`auth-*` keys): signed tokens (JWT), htpasswd passwords, or both.
public struct AuthSettings: Equatable, Sendable {
    /// `auth-keys`: PEM public keys or a JWKS document.
    public var keys: String?
    /// `auth-secret`: a file holding the HMAC secret (never the command line: it would show in `ps`).
    public var secret: String?
    /// `auth-token`: where tokens are looked for, in order.
    public var tokenSources = TokenSource.defaults
    public var policy = TokenPolicy()
    /// `auth-basic`: an htpasswd file for the web root and upgrades.
    public var passwords: String?
    /// `auth-realm`: named in `WWW-Authenticate`.
    public var realm = "websocksy"

    public init() {}

    /// Every upgrade needs a valid token.
    public var requiresToken: Bool { keys != nil || secret != nil }
    public var isEnabled: Bool { requiresToken || passwords != nil }
}
