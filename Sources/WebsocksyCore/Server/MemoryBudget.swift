/// The process-wide budget for assembled messages (`buffer-memory`): the one buffer whose size a
/// client controls up to `max-message`, so 10 000 connections cannot each claim 16 MiB.
///
/// When a chunk takes the total over the budget, the connection holding the most is closed with
/// 1009 — by pigeonhole it holds more than its fair share, the budget over the number of
/// connections assembling — and, when that is another connection, the one that grew waits with
/// reading paused until memory is given back. Every overrun frees memory, so waiting cannot last
/// forever. The total can pass the budget by at most one read per connection before this acts.
final class MemoryBudget {
    var limit: Int
    private(set) var used = 0
    private var waiting: [Bridge] = []
    /// Connections holding assembled bytes, for choosing whom to close.
    private let holders: () -> [Bridge]

    init(limit: Int, holders: @escaping () -> [Bridge]) {
        self.limit = limit
        self.holders = holders
    }

    func add(_ bytes: Int, by bridge: Bridge) {
        used += bytes
        guard used > limit else { return }
        var largest = bridge
        for candidate in holders() where candidate.assembledBytes > largest.assembledBytes {
            largest = candidate
        }
        if largest !== bridge {
            bridge.waitForBudget()
            waiting.append(bridge)
        }
        largest.evictForMemory()
    }

    func remove(_ bytes: Int) {
        used -= bytes
        guard used <= limit, !waiting.isEmpty else { return }
        let ready = waiting
        waiting.removeAll()
        for bridge in ready { bridge.budgetAvailable() }
    }
}
