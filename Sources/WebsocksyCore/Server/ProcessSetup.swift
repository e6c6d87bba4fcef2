import CLinux
import Glibc

/// Process-wide settings made once before the loop starts.
public enum ProcessSetup {
    /// Writes to a closed socket return EPIPE instead of killing the process.
    public static func ignoreSIGPIPE() {
        _ = clinux_ignore_signal(SIGPIPE)
    }

    /// Drops to `user` and its groups when running as root (after binding and reading certificates).
    /// Refuses to go on as root if that fails. A worker forked by a supervisor that has dropped
    /// already runs as `user`: nothing is left to do.
    public static func dropPrivileges(to user: String?) throws(ConfigError) {
        guard let user else { return }
        guard getuid() == 0 || geteuid() == 0 else {
            if getpwnam(user)?.pointee.pw_uid != getuid() { Log.warning("not started as root: user = \(user) has nothing to do") }
            return
        }
        guard let entry = getpwnam(user) else { throw ConfigError("user", "no such user '\(user)'") }
        let uid = entry.pointee.pw_uid, gid = entry.pointee.pw_gid
        guard initgroups(user, gid) == 0, setgid(gid) == 0, setuid(uid) == 0 else {
            throw ConfigError("user", "cannot switch to \(user): \(SystemError("setuid"))")
        }
        guard getuid() != 0 || uid == 0, setuid(0) != 0 || uid == 0 else {
            throw ConfigError("user", "still root after switching to \(user); refusing to run")
        }
        Log.info("running as \(user) (uid \(uid), gid \(gid))")
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
