import CLinux
import Glibc

/// The `exec://` programs this process has started, from `posix_spawn` to reaping: the cap on how
/// many run, and the end of those whose clients have gone — EOF on stdin first (the bridge
/// closes its end), SIGTERM to the process group after `exec-grace`, SIGKILL after another.
/// A program that has exited still has its group signalled, for what it left running there.
final class Programs {
    let reactor: Reactor
    var settings: ProgramSettings
    private var running: [pid_t: RunningProgram] = [:]
    /// Programs whose connection ended, with their signal clock running.
    private var released: [pid_t: RunningProgram] = [:]

    init(reactor: Reactor, settings: ProgramSettings) {
        self.reactor = reactor
        self.settings = settings
    }

    var count: Int { running.count }

    enum StartError: Error, CustomStringConvertible {
        case capacity(Int)
        case failed(String)

        var description: String {
            switch self {
            case .capacity(let limit): "\(limit) programs are running (max-programs)"
            case .failed(let why): why
            }
        }
    }

    /// Starts `path`; returns it with the gateway's end of its stdin/stdout socket (non-blocking).
    func start(path: String, arguments: [String], environment: [String], client: String) throws(StartError) -> (RunningProgram, Int32) {
        guard running.count < settings.maxPrograms else { throw .capacity(settings.maxPrograms) }
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw .failed("\(SystemError("socketpair"))")
        }
        var errPipe: [Int32] = [-1, -1]
        guard clinux_pipe_cloexec(&errPipe) == 0 else {
            close(pair[0]); close(pair[1])
            throw .failed("\(SystemError("pipe2"))")
        }
        // The program's ends stay blocking, as programs expect of their standard streams.
        _ = fcntl(pair[0], F_SETFL, fcntl(pair[0], F_GETFL) | O_NONBLOCK)
        _ = fcntl(errPipe[0], F_SETFL, fcntl(errPipe[0], F_GETFL) | O_NONBLOCK)
        let directory = settings.directory ?? String(path[..<path.lastIndex(of: "/")!]).ifEmpty("/")
        var pid: pid_t = 0
        let rc = withCStrings([path] + arguments) { argv in
            withCStrings(environment) { envp in
                clinux_spawn(path, argv, envp, directory, pair[1], errPipe[1], &pid)
            }
        }
        close(pair[1])
        close(errPipe[1])
        guard rc == 0 else {
            close(pair[0]); close(errPipe[0])
            throw .failed("cannot start \(path): \(String(cString: strerror(rc)))")
        }
        let pidFD = clinux_pidfd_open(pid)
        let name = String(path[path.index(after: path.lastIndex(of: "/")!)...])
        do throws(SystemError) {
            guard pidFD >= 0 else { throw SystemError("pidfd_open") }
            let program = try RunningProgram(pid: pid, pidFD: pidFD, stderrFD: errPipe[0], name: name, client: client,
                                             programs: self, reactor: reactor)
            running[pid] = program
            Log.debug("\(client): started \(path) (pid \(pid))")
            return (program, pair[0])
        } catch {
            _ = kill(-pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)  // just killed: returns at once
            if pidFD >= 0 { close(pidFD) }
            close(pair[0]); close(errPipe[0])
            throw .failed("\(error)")
        }
    }

    /// The program's connection has ended: its stdin has been (or is being) closed; unless it
    /// exits, it gets SIGTERM after the grace period, then SIGKILL.
    func release(_ program: RunningProgram, now: Int64) {
        program.onExit = nil
        program.nextSignal = SIGTERM
        if program.exitStatus == nil {
            program.signalAt = now + Int64(settings.graceSeconds) * 1000
        } else {
            // It has exited, but what it started in its process group (`sleep 20 &`) may not
            // have: the group gets SIGTERM now and SIGKILL after the grace period.
            program.signalAt = now
        }
        released[program.pid] = program
    }

    func exited(_ program: RunningProgram) {
        running[program.pid] = nil
        let status = program.exitStatus ?? 0
        if RunningProgram.succeeded(status) {
            Log.debug("\(program.client): \(program.name) (pid \(program.pid)) exited with status 0")
        } else {
            Log.info("\(program.client): \(program.name) (pid \(program.pid)) ended with \(RunningProgram.describe(status))")
        }
    }

    /// Signals that are due (from the server's periodic sweep).
    func sweep(now: Int64) {
        for program in released.values where now >= program.signalAt {
            let exited = program.exitStatus != nil
            if program.nextSignal == SIGTERM {
                if exited {
                    _ = kill(-program.pid, SIGTERM)  // leftovers of its group, if any (ESRCH: none)
                } else {
                    Log.info("\(program.client): \(program.name) (pid \(program.pid)) still running \(settings.graceSeconds) s after its client left; SIGTERM")
                    program.signal(SIGTERM)
                }
                program.nextSignal = SIGKILL
                program.signalAt = now + Int64(settings.graceSeconds) * 1000
            } else {
                if !exited { Log.info("\(program.client): \(program.name) (pid \(program.pid)) ignored SIGTERM; SIGKILL") }
                _ = kill(-program.pid, SIGKILL)
                released[program.pid] = nil
            }
        }
    }

    /// At exit: every program's process group gets SIGTERM, and SIGKILL if still there after up
    /// to a second — none outlives the gateway.
    func stopAll() {
        let groups = Array(Set(running.keys).union(released.keys))
        guard !groups.isEmpty else { return }
        for pid in groups { _ = kill(-pid, SIGTERM) }
        let deadline = MonotonicClock.nowMilliseconds() + min(1000, Int64(settings.graceSeconds) * 1000)
        var alive = groups
        while !alive.isEmpty && MonotonicClock.nowMilliseconds() < deadline {
            usleep(20_000)
            alive = alive.filter { pid in
                var status: Int32 = 0
                _ = waitpid(pid, &status, WNOHANG)
                return kill(-pid, 0) == 0
            }
        }
        for pid in alive { _ = kill(-pid, SIGKILL) }
    }
}

private extension String {
    func ifEmpty(_ replacement: String) -> String { isEmpty ? replacement : self }
}

/// A NULL-terminated `char *[]` of `strings` for the duration of `body`.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { pointers.forEach { free($0) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
