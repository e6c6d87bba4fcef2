import Glibc

/// Why an I/O call failed: a system call with its errno, or a TLS record error.
enum IOFailure: Error, CustomStringConvertible {
    case system(SystemError)
    case tls(String)

    var description: String {
        switch self {
        case .system(let error): error.description
        case .tls(let why): "TLS \(why)"
        }
    }
}

/// What one read or write on a non-blocking descriptor came to.
enum IOResult {
    case bytes(Int)
    case wouldBlock
    /// A read returned 0: the other side finished sending.
    case eof
    case failed(IOFailure)
}

/// errno classified in one place: EINTR is retried, EAGAIN means "would block", anything else is a
/// failure carrying the call's name and its errno.
enum Syscall {
    /// Runs `body` (a call returning a count or -1) until it is not interrupted.
    @inline(__always)
    static func io(_ name: StaticString, zeroIsEOF: Bool = true, _ body: () -> Int) -> IOResult {
        while true {
            let n = body()
            if n > 0 || (n == 0 && !zeroIsEOF) { return .bytes(n) }
            if n == 0 { return .eof }
            let code = errno
            switch code {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            default: return .failed(.system(SystemError(String(describing: name), errno: code)))
            }
        }
    }
}
