/// What the buffer budget needs of a connection holding budgeted bytes.
protocol BudgetHolder: AnyObject {
    /// Bytes it holds against the budget.
    var heldBytes: Int { get }
    /// Over budget and holding the most: close (1009), giving its bytes back.
    func evictForMemory()
}

/// The process-wide budget for bytes a client can make the gateway hold up to `max-message` —
/// messages assembled for echo and datagram peers, echo replies it does not read — so that 10 000
/// connections cannot each claim 16 MiB (`buffer-memory`).
///
/// When a chunk takes the total over the budget, the holder with the most is closed with 1009: by
/// pigeonhole it holds more than its fair share (the budget over the number of holders). It holds
/// at least the chunk that crossed the line, so closing it alone brings the total back within the
/// budget: the connection that grew, when it is not the one closed, goes on without waiting. The
/// total passes the budget by at most one read, and only until that read has been handled.
final class MemoryBudget {
    var limit: Int
    private(set) var used = 0
    /// Everyone holding budgeted bytes, for choosing whom to close.
    private let holders: () -> [any BudgetHolder]

    init(limit: Int, holders: @escaping () -> [any BudgetHolder]) {
        self.limit = limit
        self.holders = holders
    }

    func add(_ bytes: Int, by grower: any BudgetHolder) {
        used += bytes
        // One eviction is enough unless the limit was lowered by a reload meanwhile.
        while used > limit {
            var largest = grower
            for candidate in holders() where candidate.heldBytes > largest.heldBytes {
                largest = candidate
            }
            guard largest.heldBytes > 0 else { return }
            largest.evictForMemory()
        }
    }

    func remove(_ bytes: Int) {
        used -= bytes
    }
}
