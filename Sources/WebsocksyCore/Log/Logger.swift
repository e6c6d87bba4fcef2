import Glibc

/// Log verbosity. The default (`.info`) prints start-up, errors and one line per rejected or failed
/// connection; connections that close without a request (preconnects, port scans, connect-only
/// health checks) are only counted, in one summary line a minute at most (`QuietClosures`). Each
/// `-v` adds a level (`.debug` names each of those connections). Nothing is logged per frame below `.trace`.
public enum LogLevel: Int, Comparable, Sendable {
    case error = 0, warning, info, debug, trace

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }

    var tag: String {
        switch self {
        case .error: "error"
        case .warning: "warning"
        case .info: "info"
        case .debug: "debug"
        case .trace: "trace"
        }
    }
}

/// Line-oriented logging to stderr with a UTC timestamp. Single-threaded by design, like the reactor.
public enum Log {
    nonisolated(unsafe) public static var level: LogLevel = .info

    @inline(__always)
    public static func enabled(_ l: LogLevel) -> Bool { l <= level }

    public static func error(_ message: @autoclosure () -> String) { write(.error, message) }
    public static func warning(_ message: @autoclosure () -> String) { write(.warning, message) }
    public static func info(_ message: @autoclosure () -> String) { write(.info, message) }
    public static func debug(_ message: @autoclosure () -> String) { write(.debug, message) }
    public static func trace(_ message: @autoclosure () -> String) { write(.trace, message) }

    private static func write(_ l: LogLevel, _ message: () -> String) {
        guard enabled(l) else { return }
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var stamp = [UInt8](repeating: 0, count: 32)
        let length = stamp.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                strftime($0, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
            }
        }
        var line = String(decoding: stamp[0..<length], as: UTF8.self)
        // Messages carry request targets and header values: escaped, they cannot forge lines.
        line += " \(l.tag): \(LogText.capped(LogText.escaped(message()), to: LogText.messageLimit))\n"
        writeStderr(line)
    }

    /// Writes text to stderr as is, in one write(2), so lines never interleave mid-line.
    public static func writeStderr(_ text: String) {
        var bytes = Array(text.utf8)
        _ = Glibc.write(2, &bytes, bytes.count)
    }
}
