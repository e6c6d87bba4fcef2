/// `exec://` peers (`max-programs`, `exec-grace`, `exec-env`, `exec-dir`).
public struct ProgramSettings: Equatable, Sendable {
    /// Programs running at once, those whose clients have gone included; beyond, upgrades get 503.
    public var maxPrograms = 256
    /// Seconds between EOF on a program's stdin (its client has gone) and SIGTERM, and between
    /// SIGTERM and SIGKILL.
    public var graceSeconds = 5
    /// Variables of the gateway's own environment passed on (none by default: it may hold secrets).
    public var environmentNames: [String] = []
    /// Working directory; nil: the program's own directory.
    public var directory: String?

    public init() {}
}
