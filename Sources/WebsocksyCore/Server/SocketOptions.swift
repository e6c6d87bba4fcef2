import CLinux
import Glibc

/// Small socket helpers shared by the listener and connections.
enum SocketOptions {
    static func setInt(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) {
        var v = value
        _ = setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Disables Nagle: every frame is written whole with one writev, so there is nothing to coalesce,
    /// and waiting for a delayed ACK would add 40 ms to small messages. False when `fd` is not a
    /// TCP socket. On a listening socket it is inherited by the sockets it accepts.
    @discardableResult
    static func setNoDelay(_ fd: Int32) -> Bool {
        var one: Int32 = 1
        return setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size)) == 0
    }

    /// Bytes received and not read yet (FIONREAD).
    static func unreadBytes(_ fd: Int32) -> Int32 {
        var count: Int32 = 0
        return ioctl(fd, UInt(FIONREAD), &count) == 0 ? count : -1
    }

    /// "host:port" or "[v6]:port" for a socket address, for log lines.
    /// Formats with inet_ntop into a stack buffer: it runs once per accepted connection.
    static func describe(_ storage: UnsafePointer<sockaddr_storage>) -> String {
        let family = Int32(storage.pointee.ss_family)
        let text: String?, port: UInt16
        switch family {
        case AF_INET:
            (text, port) = storage.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                var address = $0.pointee.sin_addr
                return (numericHost(AF_INET, &address), UInt16(bigEndian: $0.pointee.sin_port))
            }
        case AF_INET6:
            (text, port) = storage.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                var address = $0.pointee.sin6_addr
                return (numericHost(AF_INET6, &address), UInt16(bigEndian: $0.pointee.sin6_port))
            }
        case AF_UNIX:
            return "unix-client"
        default:
            return "?"
        }
        guard var host = text else { return "?" }
        if host.hasPrefix("::ffff:"), host.contains(".") { host.removeFirst(7) }  // an IPv4 client on a v6 socket
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    private static func numericHost(_ family: Int32, _ address: UnsafeRawPointer) -> String? {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(INET6_ADDRSTRLEN)) { buffer in
            inet_ntop(family, address, buffer.baseAddress, socklen_t(buffer.count)).map { String(cString: $0) }
        }
    }
}
