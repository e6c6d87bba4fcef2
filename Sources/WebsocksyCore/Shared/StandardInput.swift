import CLinux
import Glibc

/// Standard input as a descriptor the event loop can watch. A pipe or a socket is used as it is;
/// anything epoll refuses — a regular file (`< input.txt`), /dev/null (systemd's default), a
/// terminal — is copied into a pipe by a thread of its own, whose blocking writes keep the
/// backpressure: nothing more is read while the loop does not take it.
enum StandardInput {
    static func pollable() throws(SystemError) -> Int32 {
        var info = stat()
        guard fstat(0, &info) == 0 else { throw SystemError("fstat(stdin)") }
        let kind = info.st_mode & S_IFMT
        if kind == S_IFIFO || kind == S_IFSOCK {
            _ = fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK)
            return 0
        }
        var ends: [Int32] = [-1, -1]
        guard clinux_pipe_cloexec(&ends) == 0 else { throw SystemError("pipe") }
        _ = fcntl(ends[0], F_SETFL, fcntl(ends[0], F_GETFL) | O_NONBLOCK)
        let writeEnd = ends[1]
        // Every signal blocked in the copying thread: the loop takes them through its signalfd.
        var all = sigset_t(), previous = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_SETMASK, &all, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        var thread = pthread_t()
        let context = UnsafeMutableRawPointer(bitPattern: Int(writeEnd) + 1)
        let rc = pthread_create(&thread, nil, { context in
            let out = Int32(Int(bitPattern: context) - 1)
            var buffer = [UInt8](repeating: 0, count: 65536)
            copying: while true {
                let n = read(0, &buffer, buffer.count)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                var offset = 0
                while offset < n {
                    let w = buffer.withUnsafeBytes { write(out, $0.baseAddress! + offset, n - offset) }
                    if w < 0 && errno == EINTR { continue }
                    guard w > 0 else { break copying }
                    offset += w
                }
            }
            close(out)
            return nil
        }, context)
        guard rc == 0 else {
            close(ends[0]); close(ends[1])
            throw SystemError("pthread_create", errno: rc)
        }
        pthread_detach(thread)
        return ends[0]
    }
}
