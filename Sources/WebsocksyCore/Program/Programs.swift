import CLinux
import Glibc

/// The `exec://` programs this process has started, from `posix_spawn` to reaping: the cap on how
/// many run, and the end of those whose clients have gone — EOF on stdin first (the bridge
/// half-closes it), SIGTERM to the process group after `exec-grace`, SIGKILL after another.
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
        guard program.exitStatus == nil, running[program.pid] != nil else { return }
        program.nextSignal = SIGTERM
        program.signalAt = now + Int64(settings.graceSeconds) * 1000
        released[program.pid] = program
    }

    func exited(_ program: RunningProgram) {
        running[program.pid] = nil
        released[program.pid] = nil
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
            program.signal(program.nextSignal)
            if program.nextSignal == SIGTERM {
                Log.info("\(program.client): \(program.name) (pid \(program.pid)) still running \(settings.graceSeconds) s after its client left; SIGTERM")
                program.nextSignal = SIGKILL
                program.signalAt = now + Int64(settings.graceSeconds) * 1000
            } else {
                Log.info("\(program.client): \(program.name) (pid \(program.pid)) ignored SIGTERM; SIGKILL")
                program.signalAt = Int64.max
            }
        }
    }

    /// At exit: every program still running gets SIGTERM (their stdin closes with the process).
    func stopAll() {
        for program in running.values { program.signal(SIGTERM) }
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
