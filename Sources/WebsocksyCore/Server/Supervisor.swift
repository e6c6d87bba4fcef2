import CLinux
import Glibc

/// `workers = N`: the first process only supervises. It reserves the port, forks N workers — each a
/// complete gateway with its own event loop, binding the port with SO_REUSEPORT so the kernel spreads
/// new connections across them — restarts a worker that dies, and forwards SIGTERM, SIGINT and SIGHUP.
public enum Supervisor {
    /// Runs the workers; returns only in a worker, which then starts its server. The supervisor exits.
    public static func forkWorkers(_ configuration: inout Configuration) throws(ConfigError) {
        guard configuration.workers != 1 else { return }
        let count = configuration.workers == 0 ? max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) : configuration.workers
        let reservedFD: Int32
        let reservedAddress: String
        if let inherited = configuration.inheritedListener {
            // Socket activation: every worker accepts on the one inherited socket.
            reservedFD = -1
            reservedAddress = "the socket passed by the service manager (fd \(inherited))"
        } else {
            guard !configuration.listen.hasPrefix("unix:") else {
                throw ConfigError("workers", "several workers need a TCP listen address (SO_REUSEPORT), not \(configuration.listen)")
            }
            // Port 0: pick the port once, so that every worker shares the same one.
            (reservedFD, reservedAddress) = try Listener.bindTCP(host: configuration.listen, port: configuration.port,
                                                                 reusePort: true, listening: false)
            configuration.port = String(reservedAddress.split(separator: ":").last ?? "0")
        }
        var blocked = [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGCHLD].withUnsafeBufferPointer { clinux_sigset($0.baseAddress, Int32($0.count)) }
        sigprocmask(SIG_BLOCK, &blocked, nil)

        var workers: [pid_t] = []
        func spawn() -> pid_t? {
            let pid = fork()
            if pid == 0 {
                if reservedFD >= 0 { close(reservedFD) }
                sigprocmask(SIG_UNBLOCK, &blocked, nil)
                return nil
            }
            if pid < 0 { Log.error("\(SystemError("fork"))") }
            return pid
        }
        for _ in 0..<count {
            guard let pid = spawn() else { return }  // in the worker
            workers.append(pid)
        }
        Log.info("websocksy \(Version.string) listening on \(reservedAddress) with \(count) workers (pids \(workers.map(String.init).joined(separator: " ")))")

        var stopping = false
        var exitStatus: Int32 = 0
        var lastRestart: Int64 = 0
        while !workers.isEmpty {
            var info = siginfo_t()
            guard sigwaitinfo(&blocked, &info) >= 0 else { continue }
            let signo = info.si_signo
            if signo == SIGCHLD {
                var status: Int32 = 0
                while true {
                    let pid = waitpid(-1, &status, WNOHANG)
                    guard pid > 0 else { break }
                    workers.removeAll { $0 == pid }
                    if stopping { continue }
                    // Exit status 2 is a configuration error: restarting cannot help.
                    if status & 0x7F == 0 && (status >> 8) & 0xFF == 2 {
                        Log.error("worker \(pid) could not start; stopping")
                        stopping = true
                        exitStatus = 2
                        for other in workers { kill(other, SIGTERM) }
                        continue
                    }
                    Log.error("worker \(pid) ended (status \(status)); starting another")
                    // At most one restart a second, so a worker that cannot start does not spin.
                    let now = MonotonicClock.nowMilliseconds()
                    if now - lastRestart < 1000 { usleep(UInt32(1000 - (now - lastRestart)) * 1000) }
                    lastRestart = MonotonicClock.nowMilliseconds()
                    guard let replacement = spawn() else { return }  // in the new worker
                    workers.append(replacement)
                }
            } else {
                if signo != SIGHUP {
                    if stopping {
                        for pid in workers { kill(pid, SIGKILL) }
                    }
                    stopping = true
                }
                for pid in workers { kill(pid, signo) }
            }
        }
        Log.info("all workers stopped")
        exit(exitStatus)
    }
}
