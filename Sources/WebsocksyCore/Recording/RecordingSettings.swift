import Glibc

/// Whether one route records its sessions: the `record` route option (`core_peer_option`).
public enum RecordChoice: Equatable, Sendable {
    case off
    case directory(String)

    /// `off`, or a directory (non-empty).
    public static func parse(_ value: String) -> RecordChoice? {
        if value == "off" { return .off }
        return value.isEmpty ? nil : .directory(value)
    }
}

/// The `[core]` recording settings in force for new connections: `record = DIR` and `record-max`.
/// Installed by `BackendFactory.make`, which start-up, `--check-config` and every reload run with
/// the configuration they are about to use, so they change together with the backend.
enum RecordingSettings {
    /// `record`: where sessions are recorded when the route says nothing; nil = not recorded.
    nonisolated(unsafe) static var directory: String?
    /// `record-max`: largest file per session.
    nonisolated(unsafe) static var maxBytes = Int(Configuration.defaultRecordMax)

    /// Checks and installs the settings of `config`; throws when `record` names no writable directory.
    static func install(_ config: Configuration) throws(ConfigError) {
        if let directory = config.recordDirectory { try check(directory) }
        directory = config.recordDirectory
        maxBytes = Int(clamping: config.recordMax)
    }

    /// The directory must exist and let this process create files in it.
    static func check(_ directory: String) throws(ConfigError) {
        var st = stat()
        guard stat(directory, &st) == 0 else {
            throw ConfigError("record", "cannot record into \(directory): \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw ConfigError("record", "cannot record into \(directory): not a directory") }
        guard access(directory, W_OK | X_OK) == 0 else {
            throw ConfigError("record", "cannot record into \(directory): \(String(cString: strerror(errno)))")
        }
    }

    /// The directory a connection records into: the route's choice, else the `[core]` key.
    static func directory(for choice: RecordChoice?) -> String? {
        switch choice {
        case .off: nil
        case .directory(let path): path
        case nil: directory
        }
    }

    // MARK: File names

    nonisolated(unsafe) private static var counter: UInt64 = 0

    /// `20250102T030405.123456Z-p4242-n000007-127.0.0.1_50000.wsrec`: sortable by start time, then
    /// unique through the worker's process id and a per-process counter; the client address has
    /// every byte outside `[A-Za-z0-9.-]` replaced by `_`.
    static func fileName(startMicroseconds: UInt64, client: String) -> String {
        counter += 1
        var seconds = time_t(startMicroseconds / 1_000_000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let n = strftime(&buffer, buffer.count, "%Y%m%dT%H%M%S", &parts)
        let stamp = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let micros = String(startMicroseconds % 1_000_000)
        let count = String(counter)
        var safe = ""
        for byte in client.utf8.prefix(64) {
            let ok = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x2E || byte == 0x2D
            safe.unicodeScalars.append(Unicode.Scalar(ok ? byte : 0x5F))
        }
        return "\(stamp).\(String(repeating: "0", count: 6 - micros.count))\(micros)Z-p\(getpid())-n"
            + "\(String(repeating: "0", count: max(0, 6 - count.count)))\(count)-\(safe).wsrec"
    }

    static func wallClockMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }

    @inline(__always)
    static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }
}
