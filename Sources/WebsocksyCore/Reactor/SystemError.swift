import Glibc

/// A failed system call: the call's name and the `errno` it left, so log lines say exactly what failed.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let errno: Int32

    public init(_ call: String, errno: Int32 = Glibc.errno) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        "\(call): \(String(cString: strerror(errno)))"
    }
}

/// The outcome of a non-blocking read or write: bytes moved, or the socket would block.
@usableFromInline
enum IOResult: Equatable {
    case done(Int)
    case wouldBlock
}

/// Runs a syscall returning `-1` on error, retrying `EINTR`, mapping `EAGAIN` to `.wouldBlock`
/// and throwing anything else with its errno.
@inlinable
func retryingSyscall(_ name: StaticString, _ body: () -> Int) throws(SystemError) -> IOResult {
    while true {
        let result = body()
        if result >= 0 { return .done(result) }
        let code = Glibc.errno
        switch code {
        case EINTR: continue
        case EAGAIN, EWOULDBLOCK: return .wouldBlock
        default: throw SystemError(String(describing: name), errno: code)
        }
    }
}

/// Like `retryingSyscall` for calls that have no "would block" outcome.
@inlinable
@discardableResult
func checkedSyscall(_ name: StaticString, _ body: () -> Int32) throws(SystemError) -> Int32 {
    while true {
        let result = body()
        if result >= 0 { return result }
        let code = Glibc.errno
        if code == EINTR { continue }
        throw SystemError(String(describing: name), errno: code)
    }
}
