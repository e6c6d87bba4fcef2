import CLinux
import Glibc

/// One started `exec://` program: its pidfd (readable when it exits: reaped without blocking)
/// and its stderr (each line logged with the connection it serves, rate-limited). Owned by
/// `Programs` from start to reaping, which outlives the connection: a program whose client has
/// gone gets EOF on stdin, then SIGTERM after the grace period, then SIGKILL.
final class RunningProgram: EventHandler {
    let pid: pid_t
    let name: String
    /// How the connection's log lines start ("203.0.113.7:5123").
    let client: String
    private let pidFD: Int32
    private var pidToken: Reactor.Token?
    private var stderrReader: StderrReader?
    private unowned let programs: Programs
    /// The wait status once it has exited.
    private(set) var exitStatus: Int32?
    /// Told once, when it exits (the bridge closing the WebSocket with 1000 or 1011).
    var onExit: ((Int32) -> Void)?
    /// Signals sent after the client went away: next one and when.
    var nextSignal: Int32 = 0
    var signalAt: Int64 = 0

    init(pid: pid_t, pidFD: Int32, stderrFD: Int32, name: String, client: String, programs: Programs, reactor: Reactor) throws(SystemError) {
        self.pid = pid
        self.pidFD = pidFD
        self.name = name
        self.client = client
        self.programs = programs
        pidToken = try reactor.register(pidFD, events: EpollEvents.readable, handler: self)
        stderrReader = try StderrReader(fd: stderrFD, prefix: "\(client): \(name)", reactor: reactor)
    }

    /// The pidfd is readable: the program has exited.
    func handleEvent(_ events: UInt32) {
        var status: Int32 = 0
        let reaped = waitpid(pid, &status, WNOHANG)
        guard reaped == pid else { return }
        exitStatus = status
        if let pidToken { programs.reactor.unregister(pidToken) }
        pidToken = nil
        close(pidFD)
        // What it wrote to stderr before it exited is still in the pipe.
        stderrReader?.drainAndClose()
        stderrReader = nil
        programs.exited(self)
        let handler = onExit
        onExit = nil
        handler?(status)
    }

    /// "status 3", "signal 9 (Killed)", for logs and close reasons.
    static func describe(_ status: Int32) -> String {
        let signal = status & 0x7F
        if signal == 0 { return "status \((status >> 8) & 0xFF)" }
        return "signal \(signal) (\(String(cString: strsignal(signal))))"
    }

    static func succeeded(_ status: Int32) -> Bool { status == 0 }

    /// Sends `signo` to the program's process group (what a `sh -c` started goes too).
    func signal(_ signo: Int32) {
        guard exitStatus == nil else { return }
        _ = kill(-pid, signo)
    }
}

/// A program's stderr, logged line by line at info with the connection's prefix: at most
/// `linesPerSecond` lines a second (the rest counted and reported), lines cut at `maxLine`.
final class StderrReader: EventHandler {
    private let fd: Int32
    private let prefix: String
    private var token: Reactor.Token?
    private unowned let reactor: Reactor
    private var partial: [UInt8] = []
    private var windowStart: Int64 = 0
    private var linesInWindow = 0
    private var dropped = 0
    static let linesPerSecond = 20
    static let maxLine = 1024

    init(fd: Int32, prefix: String, reactor: Reactor) throws(SystemError) {
        self.fd = fd
        self.prefix = prefix
        self.reactor = reactor
        token = try reactor.register(fd, events: EpollEvents.readable, handler: self)
    }

    func handleEvent(_ events: UInt32) {
        if !readAvailable() { finish() }
    }

    /// Reads what is there; false at EOF or on an error.
    private func readAvailable() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<16 {
            let n = read(fd, &buffer, buffer.count)
            if n > 0 {
                take(buffer[0..<n])
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return true }
            return false
        }
        return true
    }

    func drainAndClose() {
        _ = readAvailable()
        finish()
    }

    private func finish() {
        guard let token else { return }
        if !partial.isEmpty { logLine(partial) }
        partial = []
        if dropped > 0 { Log.info("\(prefix): \(dropped) more stderr line(s) not logged") }
        reactor.unregister(token)
        self.token = nil
        close(fd)
    }

    private func take(_ bytes: ArraySlice<UInt8>) {
        for byte in bytes {
            if byte == 0x0A {
                logLine(partial)
                partial.removeAll(keepingCapacity: true)
            } else if partial.count < Self.maxLine {
                partial.append(byte)
            }
        }
    }

    private func logLine(_ line: [UInt8]) {
        let now = MonotonicClock.nowMilliseconds()
        if now - windowStart >= 1000 {
            if dropped > 0 { Log.info("\(prefix): \(dropped) stderr line(s) not logged (more than \(Self.linesPerSecond) a second)") }
            windowStart = now
            linesInWindow = 0
            dropped = 0
        }
        guard linesInWindow < Self.linesPerSecond else {
            dropped += 1
            return
        }
        linesInWindow += 1
        var text = line
        if text.last == 0x0D { text.removeLast() }
        Log.info("\(prefix): \(LogText.escaped(String(decoding: text, as: UTF8.self)))")
    }
}
