/// A configuration mistake, reported as `where: what` (e.g. `websocksy.cfg:12: unknown key 'prot'`).
public struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    public var location: String
    public var message: String

    public init(_ location: String, _ message: String) {
        self.location = location
        self.message = message
    }

    public var description: String { "\(location): \(message)" }
}

/// Where a setting came from, so an error about it can point there.
public struct SettingOrigin: Equatable, Sendable, CustomStringConvertible {
    public var description: String

    public static func file(_ path: String, line: Int) -> SettingOrigin { .init(description: "\(path):\(line)") }
    public static func flag(_ text: String) -> SettingOrigin { .init(description: "command line (\(text))") }
}
