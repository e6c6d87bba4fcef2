/// Limits per client address: how many connections one address may hold open, and how fast it
/// may open WebSockets (a token bucket: `rate` upgrades a second on average, `burst` at once).
/// The address is the client's own, or the one a trusted load balancer's PROXY header carries.
///
/// An entry exists while its address has connections open or tokens to win back; the sweep
/// forgets the others, so memory follows the number of recently active addresses.
final class ClientLimits {
    /// An address as IPv6 (IPv4 mapped), in two words: cheap to hash, no allocation per lookup.
    struct Key: Hashable {
        let high: UInt64
        let low: UInt64

        init?(_ ip: [UInt8]?) {
            guard let ip, ip.count == 4 || ip.count == 16 else { return nil }
            let bytes = AddressRange.mapped(ip)
            var high: UInt64 = 0, low: UInt64 = 0
            for i in 0..<8 { high = high << 8 | UInt64(bytes[i]) }
            for i in 8..<16 { low = low << 8 | UInt64(bytes[i]) }
            self.high = high
            self.low = low
        }
    }

    private struct Entry {
        var connections = 0
        /// Upgrades available now, in thousandths (integer arithmetic, no drift).
        var milliTokens: Int
        var refilledAt: Int64
        /// When a refusal of this address was last logged.
        var loggedAt: Int64 = -ClientLimits.logIntervalMilliseconds
    }

    var maxConnections: Int
    var rate: Int
    var burst: Int
    private var entries: [Key: Entry] = [:]
    /// One refusal line per address per interval: a client hammering the gateway cannot flood the log.
    static let logIntervalMilliseconds: Int64 = 10_000

    init(maxConnections: Int, rate: Int, burst: Int) {
        self.maxConnections = maxConnections
        self.rate = rate
        self.burst = burst
    }

    var isActive: Bool { maxConnections > 0 || rate > 0 }

    /// Counts a new connection of `key`; false (not counted) when the address already holds the most.
    func admitConnection(_ key: Key, now: Int64) -> Bool {
        var entry = entries[key] ?? fresh(now)
        guard maxConnections == 0 || entry.connections < maxConnections else { return false }
        entry.connections += 1
        entries[key] = entry
        return true
    }

    func connectionEnded(_ key: Key) {
        entries[key]?.connections -= 1
    }

    /// Takes one upgrade from the address's bucket: nil when there was one, else the seconds until
    /// there will be (for `Retry-After`).
    func takeUpgrade(_ key: Key, now: Int64) -> Int? {
        guard rate > 0 else { return nil }
        var entry = entries[key] ?? fresh(now)
        refill(&entry, now)
        defer { entries[key] = entry }
        guard entry.milliTokens >= 1000 else {
            // `rate` thousandths come back each millisecond; rounded up to whole seconds, so a
            // client that waits exactly this long gets in.
            let milliseconds = (1000 - entry.milliTokens + rate - 1) / rate
            return max(1, (milliseconds + 999) / 1000)
        }
        entry.milliTokens -= 1000
        return nil
    }

    /// Whether a refusal of this address should be logged now (and notes that it is).
    func shouldLog(_ key: Key, now: Int64) -> Bool {
        guard var entry = entries[key] else { return true }
        guard now - entry.loggedAt >= Self.logIntervalMilliseconds else { return false }
        entry.loggedAt = now
        entries[key] = entry
        return true
    }

    /// Forgets addresses with nothing open and a full bucket.
    func sweep(now: Int64) {
        guard !entries.isEmpty else { return }
        entries = entries.filter { _, value in
            var entry = value
            refill(&entry, now)
            return entry.connections > 0 || (rate > 0 && entry.milliTokens < burst * 1000)
                || now - entry.loggedAt < Self.logIntervalMilliseconds
        }
    }

    var trackedAddresses: Int { entries.count }

    private func fresh(_ now: Int64) -> Entry {
        Entry(milliTokens: burst * 1000, refilledAt: now)
    }

    /// `rate` tokens a second is `rate` thousandths a millisecond.
    private func refill(_ entry: inout Entry, _ now: Int64) {
        let elapsed = now - entry.refilledAt
        guard elapsed > 0 else { return }
        entry.milliTokens = min(burst * 1000, entry.milliTokens + Int(min(elapsed, 1_000_000)) * rate)
        entry.refilledAt = now
    }
}
