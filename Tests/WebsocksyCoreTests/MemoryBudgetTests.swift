import Testing
@testable import WebsocksyCore

/// A connection as the budget sees it; evicting one gives its bytes back, as a bridge does.
final class FakeHolder: BudgetHolder {
    var heldBytes = 0
    var evicted = false
    weak var budget: MemoryBudget?

    func grow(_ n: Int) {
        heldBytes += n
        budget?.add(n, by: self)
    }

    func evictForMemory() {
        evicted = true
        let held = heldBytes
        heldBytes = 0
        budget?.remove(held)
    }
}

@Suite struct MemoryBudgetTests {
    func setUp(_ count: Int, limit: Int) -> (MemoryBudget, [FakeHolder]) {
        let holders = (0..<count).map { _ in FakeHolder() }
        let budget = MemoryBudget(limit: limit) { holders.filter { $0.heldBytes > 0 } }
        for holder in holders { holder.budget = budget }
        return (budget, holders)
    }

    @Test func withinTheBudgetNothingHappens() {
        let (budget, holders) = setUp(3, limit: 100)
        for holder in holders { holder.grow(33) }
        #expect(budget.used == 99)
        #expect(holders.allSatisfy { !$0.evicted })
    }

    @Test func theGrowerHoldingTheMostIsClosed() {
        let (budget, holders) = setUp(2, limit: 100)
        holders[0].grow(30)
        holders[1].grow(80)
        #expect(holders[1].evicted && !holders[0].evicted)
        #expect(budget.used == 30)
    }

    @Test func anotherConnectionHoldingMoreIsClosedAndTheGrowerGoesOn() {
        let (budget, holders) = setUp(3, limit: 100)
        holders[0].grow(60)
        holders[1].grow(30)
        holders[2].grow(20)  // 110: the largest holder is another connection
        #expect(holders[0].evicted && !holders[1].evicted && !holders[2].evicted)
        #expect(budget.used == 50)
    }

    @Test(arguments: [1, 7, 64])
    func oneEvictionAlwaysBringsTheTotalBackWithinTheBudget(chunk: Int) {
        let (budget, holders) = setUp(50, limit: 1000)
        var evictions = 0
        for step in 0..<2000 {
            let before = holders.filter(\.evicted).count
            holders[(step * 7) % holders.count].grow(chunk)
            evictions += holders.filter(\.evicted).count - before
            #expect(budget.used <= budget.limit)
            for holder in holders where holder.evicted { holder.evicted = false }
        }
        #expect(evictions > 0)
    }
}
