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
    /// The flag as typed (`-p`, `--port`, `-c`) when a flag set it; nil for a file line. Flags
    /// override the file, so the parser needs to tell the two apart (see `Configuration.setCore`).
    public var flag: String?

    public static func file(_ path: String, line: Int) -> SettingOrigin { .init(description: "\(path):\(line)") }
    /// `text` is what errors quote (`-c host=x`); `flag` the flag alone when it differs (`-c`).
    public static func flag(_ text: String, flag: String? = nil) -> SettingOrigin {
        .init(description: "command line (\(text))", flag: flag ?? text)
    }

    /// How `--print-config` names it: `FILE:LINE` or `flag -p`.
    public var label: String { flag.map { "flag \($0)" } ?? description }
}
