import CLinux
import Glibc

/// Delivers signals through a `signalfd` in the reactor, so handling a signal is ordinary code on the
/// loop's thread rather than an async-signal-safe handler.
public final class SignalSource: EventHandler {
    private let fd: Int32
    private let onSignal: (Int32) -> Void

    public init(signals: [Int32], reactor: Reactor, onSignal: @escaping (Int32) -> Void) throws(SystemError) {
        var set = signals.withUnsafeBufferPointer { clinux_sigset($0.baseAddress, Int32($0.count)) }
        guard sigprocmask(SIG_BLOCK, &set, nil) == 0 else { throw SystemError("sigprocmask") }
        let fd = signalfd(-1, &set, Int32(SFD_NONBLOCK | SFD_CLOEXEC))
        guard fd >= 0 else { throw SystemError("signalfd") }
        self.fd = fd
        self.onSignal = onSignal
        _ = try reactor.register(fd, events: EpollEvents.readable, handler: self)
    }

    public func handleEvent(_ events: UInt32) {
        var info = signalfd_siginfo()
        while read(fd, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
            onSignal(Int32(info.ssi_signo))
        }
    }
}
