import CLinux
import Glibc

/// One resolved socket address, ready for `socket` + `connect`.
struct SocketAddress {
    var storage = sockaddr_storage()
    var length: socklen_t = 0
    var family: Int32 = 0
    var socketType: Int32 = 0

    /// Copies every entry of a getaddrinfo list.
    static func list(_ info: UnsafeMutablePointer<addrinfo>?) -> [SocketAddress] {
        var out: [SocketAddress] = []
        var cursor = info
        while let ai = cursor {
            var a = SocketAddress()
            a.family = ai.pointee.ai_family
            a.socketType = ai.pointee.ai_socktype
            a.length = ai.pointee.ai_addrlen
            withUnsafeMutableBytes(of: &a.storage) { $0.baseAddress!.copyMemory(from: ai.pointee.ai_addr, byteCount: Int(ai.pointee.ai_addrlen)) }
            out.append(a)
            cursor = ai.pointee.ai_next
        }
        return out
    }

    /// A Unix socket address; a leading `@` names a Linux abstract socket.
    static func unix(_ path: String, socketType: Int32) -> SocketAddress {
        var a = SocketAddress()
        a.family = AF_UNIX
        a.socketType = socketType
        var un = sockaddr_un()
        un.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &un.sun_path) { $0.copyBytes(from: bytes.prefix($0.count - 1)) }
        a.length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        withUnsafeMutableBytes(of: &a.storage) { dst in
            withUnsafeBytes(of: &un) { dst.copyMemory(from: $0) }
        }
        return a
    }

    /// Numeric host → addresses without any DNS traffic; nil when `host` is a name.
    static func numeric(host: String, port: String, socketType: Int32) -> [SocketAddress]? {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = socketType
        hints.ai_flags = AI_NUMERICHOST
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, port, &hints, &result) == 0 else { return nil }
        defer { freeaddrinfo(result) }
        return list(result)
    }

    var description: String {
        var copy = storage
        return family == AF_UNIX ? "unix socket" : SocketOptions.describe(&copy)
    }
}
