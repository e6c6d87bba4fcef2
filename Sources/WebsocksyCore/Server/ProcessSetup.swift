import CLinux
import Glibc

/// Process-wide settings made once before the loop starts.
public enum ProcessSetup {
    /// Writes to a closed socket return EPIPE instead of killing the process.
    public static func ignoreSIGPIPE() {
        _ = clinux_ignore_signal(SIGPIPE)
    }

    /// Raises the descriptor limit to the hard limit: each connection needs one or two.
    public static func raiseDescriptorLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return -1 }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        return Int(limit.rlim_cur)
    }
}
