import CLinux
import Glibc

/// `workers = N`: the first process only supervises. It binds one listening socket per worker —
/// SO_REUSEPORT, so the kernel spreads new connections across them — drops privileges (`user`), and
/// forks N workers, each a complete gateway with its own event loop serving its socket. It restarts
/// a worker that dies and forwards SIGTERM, SIGINT, SIGHUP and SIGUSR1.
///
/// The supervisor keeps every socket: a worker restarted after a crash needs no privilege to listen
/// (even on a port below 1024), and connections queued for a worker that died wait for its
/// replacement instead of being reset. Workers start as `user`, so what they read at start-up —
/// certificate, key, access log — must be open to that user, as it already must be for SIGHUP.
public enum Supervisor {
    /// Runs the workers; returns only in a worker, which then starts its server. The supervisor exits.
    public static func forkWorkers(_ configuration: inout Configuration) throws(ConfigError) {
        guard configuration.workers != 1 else { return }
        try configuration.checkAdminListenWorkers()
        let count = configuration.workers == 0 ? max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) : configuration.workers
        let listeners: [Int32]
        let address: String
        if let inherited = configuration.inheritedListener {
            // Socket activation: every worker accepts on the one inherited socket.
            listeners = Array(repeating: inherited, count: count)
            address = "the socket passed by the service manager (fd \(inherited))"
        } else {
            guard !configuration.listen.hasPrefix("unix:") else {
                throw ConfigError("workers", "several workers need a TCP listen address (SO_REUSEPORT), not \(configuration.listen)")
            }
            let first: Int32
            (first, address) = try Listener.bindTCP(host: configuration.listen, port: configuration.port, reusePort: true, listening: true)
            // Port 0: the first socket picks the port, the others join it.
            configuration.port = String(address.split(separator: ":").last ?? "0")
            var bound = [first]
            for _ in 1..<count {
                bound.append(try Listener.bindTCP(host: configuration.listen, port: configuration.port, reusePort: true, listening: true).0)
            }
            listeners = bound
        }
        try ProcessSetup.dropPrivileges(to: configuration.user)
        if configuration.tls.usesRandomTicketKey { _ = TLSTicketKey.processKey }  // one for all workers
        var blocked = [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGCHLD].withUnsafeBufferPointer { clinux_sigset($0.baseAddress, Int32($0.count)) }
        sigprocmask(SIG_BLOCK, &blocked, nil)

        var workers: [pid_t: Int] = [:]  // pid → index of its listening socket
        func spawn(_ slot: Int) -> pid_t? {
            let pid = fork()
            if pid == 0 {
                for fd in Set(listeners) where fd != listeners[slot] { close(fd) }
                configuration.inheritedListener = listeners[slot]
                sigprocmask(SIG_UNBLOCK, &blocked, nil)
                return nil
            }
            if pid < 0 { Log.error("\(SystemError("fork"))") }
            return pid
        }
        /// Once stopping, nobody will accept on the sockets again: closing them lets new clients be
        /// refused at once instead of waiting in a queue.
        func closeListeners() {
            for fd in Set(listeners) { close(fd) }
        }
        for slot in 0..<count {
            guard let pid = spawn(slot) else { return }  // in the worker
            workers[pid] = slot
        }
        Log.info("websocksy \(Version.string) listening on \(address) with \(count) workers (pids \(workers.keys.sorted().map(String.init).joined(separator: " ")))")

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
                    guard let slot = workers.removeValue(forKey: pid) else { continue }
                    if stopping { continue }
                    // Exit status 2 is a configuration error: restarting cannot help.
                    if status & 0x7F == 0 && (status >> 8) & 0xFF == 2 {
                        Log.error("worker \(pid) could not start; stopping")
                        stopping = true
                        exitStatus = 2
                        closeListeners()
                        for other in workers.keys { kill(other, SIGTERM) }
                        continue
                    }
                    Log.error("worker \(pid) ended (status \(status)); starting another")
                    // At most one restart a second, so a worker that cannot start does not spin.
                    let now = MonotonicClock.nowMilliseconds()
                    if now - lastRestart < 1000 { usleep(UInt32(1000 - (now - lastRestart)) * 1000) }
                    lastRestart = MonotonicClock.nowMilliseconds()
                    guard let replacement = spawn(slot) else { return }  // in the new worker
                    workers[replacement] = slot
                }
            } else {
                // SIGHUP and SIGUSR1 (reload, reopen the access log) are only passed on.
                if signo == SIGTERM || signo == SIGINT {
                    if stopping {
                        for pid in workers.keys { kill(pid, SIGKILL) }
                    } else {
                        closeListeners()
                    }
                    stopping = true
                }
                for pid in workers.keys { kill(pid, signo) }
            }
        }
        Log.info("all workers stopped")
        exit(exitStatus)
    }
}
