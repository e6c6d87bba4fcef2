/// Connections that close without sending a byte of a request — browser preconnects, port scanners,
/// health checks that only connect, preconnects that wait out `handshake-timeout` — are ordinary
/// traffic, not events: each is logged at debug and counted here, and the server's periodic sweep
/// logs the count at info at most once a minute (`summary`). Their access-log lines are unchanged.
///
/// A summary is due on the first sweep after such a closure, unless one was logged less than a
/// minute before — then as soon as that minute is over. So every closure a summary counts happened
/// within the minute it names, a lone preconnect is reported within a sweep (which is also what lets
/// the tests see a summary without waiting a minute or a test-only setting), and a steady stream of
/// them costs one line a minute.
struct QuietClosures {
    static let intervalMilliseconds: Int64 = 60_000

    /// Closures not reported yet.
    private(set) var count = 0
    /// Monotonic time of the last summary (ms); nil before the first.
    private var lastSummary: Int64?

    mutating func add() {
        count += 1
    }

    /// The summary line when one is due at `now` (monotonic ms), and the count starts again.
    mutating func summary(now: Int64) -> String? {
        guard count > 0 else { return nil }
        if let lastSummary, now - lastSummary < Self.intervalMilliseconds { return nil }
        let line = "\(count) connection\(count == 1 ? "" : "s") closed without a request in the last \(Self.intervalMilliseconds / 1000) s"
        count = 0
        lastSummary = now
        return line
    }
}
