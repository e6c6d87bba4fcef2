import CLinux
import Glibc

/// Small socket helpers shared by the listener and connections.
enum SocketOptions {
    static func setInt(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) {
        var v = value
        _ = setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Disables Nagle: every frame is written whole with one writev, so there is nothing to coalesce,
    /// and waiting for a delayed ACK would add 40 ms to small messages.
    static func setNoDelay(_ fd: Int32) {
        setInt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
    }

    /// Bytes received and not read yet (FIONREAD).
    static func unreadBytes(_ fd: Int32) -> Int32 {
        var count: Int32 = 0
        return ioctl(fd, UInt(FIONREAD), &count) == 0 ? count : -1
    }

    /// "host:port" or "[v6]:port" for a socket address, for log lines.
    static func describe(_ storage: UnsafePointer<sockaddr_storage>) -> String {
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var serv = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let family = Int32(storage.pointee.ss_family)
        if family == AF_UNIX { return "unix-client" }
        let length = family == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
        let rc = storage.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            getnameinfo($0, socklen_t(length), &host, socklen_t(host.count), &serv, socklen_t(serv.count), NI_NUMERICHOST | NI_NUMERICSERV)
        }
        guard rc == 0 else { return "?" }
        let port = serv.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        var h = String(cString: host.withUnsafeBufferPointer { $0.baseAddress! })
        if h.hasPrefix("::ffff:"), h.contains(".") { h.removeFirst(7) }
        return h.contains(":") ? "[\(h)]:\(port)" : "\(h):\(port)"
    }
}
