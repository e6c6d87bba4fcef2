import Glibc

/// Reads websocksy's configuration file: `[core]` and `[backend]` sections of `key = value` lines;
/// `;` or `#` start a comment line (only a whole line: a value may contain either). Lines apply in
/// order, as in websocksy. Every mistake is reported as `file:line: what is wrong`.
public enum IniFile {
    public static func load(path: String, into config: inout Configuration) throws(ConfigError) {
        guard let text = readWholeFile(path) else {
            throw ConfigError(path, "cannot read the configuration file: \(String(cString: strerror(errno)))")
        }
        try apply(text: text, path: path, into: &config)
    }

    /// Applies `text` as the file `path` (which only names it, for origins and errors). Flags
    /// applied to `config` afterwards override it (`Configuration.configurationFile`).
    public static func apply(text: String, path: String, into config: inout Configuration) throws(ConfigError) {
        config.configurationFile = path
        enum Section { case none, core, backend }
        var section = Section.none
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let origin = SettingOrigin.file(path, line: lineNumber)
            var line = rawLine
            if line.last == "\r" { line = line.dropLast() }
            let trimmed = line.trimmingHTTPWhitespace
            if trimmed.isEmpty || trimmed.hasPrefix(";") || trimmed.hasPrefix("#") { continue }
            if trimmed.hasPrefix("[") {
                guard trimmed.hasSuffix("]") else { throw ConfigError(origin.description, "malformed section header '\(trimmed)'") }
                switch trimmed.dropFirst().dropLast().trimmingHTTPWhitespace {
                case "core": section = .core
                case "backend": section = .backend
                case let other: throw ConfigError(origin.description, "unknown section [\(other)] (expected [core] or [backend])")
                }
                continue
            }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw ConfigError(origin.description, "expected 'key = value', got '\(trimmed)'")
            }
            let key = String(trimmed[..<equals].trimmingHTTPWhitespace)
            let value = String(trimmed[trimmed.index(after: equals)...].trimmingHTTPWhitespace)
            guard !key.isEmpty else { throw ConfigError(origin.description, "missing key before '='") }
            switch section {
            case .none: throw ConfigError(origin.description, "'\(key)' is outside any section ([core] or [backend])")
            case .core: try config.setCore(key, value, at: origin)
            case .backend: config.addBackendOption(key, value, at: origin)
            }
        }
    }
}
