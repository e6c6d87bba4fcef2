import Glibc

/// Reads and writes on a connected stream socket, through TLS when a session is attached, so the
/// client connection and the peer socket share one code path for both.
enum SocketIO {
    enum ReadResult {
        case bytes(Int)
        case wouldBlock
        case eof
        case failed(String)
    }

    enum WriteResult {
        case bytes(Int)
        case wouldBlock
        case failed(String)
    }

    @inline(__always)
    static func read(_ fd: Int32, _ tls: TLSSession?, into buffer: UnsafeMutableRawBufferPointer) -> ReadResult {
        if let tls { return tls.read(into: buffer) }
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n > 0 { return .bytes(n) }
            if n == 0 { return .eof }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            default: return .failed(SystemError("read").description)
            }
        }
    }

    @inline(__always)
    static func write(_ fd: Int32, _ tls: TLSSession?, _ bytes: UnsafeRawBufferPointer) -> WriteResult {
        if let tls { return tls.write(bytes) }
        while true {
            let n = Glibc.write(fd, bytes.baseAddress, bytes.count)
            if n >= 0 { return .bytes(n) }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            default: return .failed(SystemError("write").description)
            }
        }
    }
}
