import CLinux
import Glibc

/// systemd socket activation (sd_listen_fds(3), implemented from the documented protocol): when
/// LISTEN_PID names this process and LISTEN_FDS is at least 1, descriptor 3 is a listening socket
/// already bound by the service manager. The variables are removed so children do not inherit them.
public enum SocketActivation {
    public static func inheritedListener() -> Int32? {
        defer {
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
        }
        guard let pid = getenv("LISTEN_PID").flatMap({ Int32(String(cString: $0)) }), pid == getpid(),
              let count = getenv("LISTEN_FDS").flatMap({ Int(String(cString: $0)) }), count >= 1 else { return nil }
        if count > 1 { Log.warning("socket activation passed \(count) sockets; using the first") }
        let fd: Int32 = 3
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0, type == Int32(SOCK_STREAM.rawValue) else {
            Log.warning("socket activation: descriptor 3 is not a stream socket; ignoring it")
            return nil
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd
    }
}
