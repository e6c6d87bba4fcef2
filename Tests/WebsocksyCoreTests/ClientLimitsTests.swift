import Testing
@testable import WebsocksyCore

@Suite struct ClientLimitsRules {
    let a = ClientLimits.Key([203, 0, 113, 7])!
    let b = ClientLimits.Key([203, 0, 113, 8])!

    @Test func anIPv4AddressAndItsMappedFormAreOneClient() {
        let mapped = ClientLimits.Key([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 203, 0, 113, 7])
        #expect(mapped == a)
        #expect(ClientLimits.Key(nil) == nil)
        #expect(ClientLimits.Key([1, 2, 3]) == nil)
    }

    @Test func connectionsAreCountedPerAddress() {
        let limits = ClientLimits(maxConnections: 2, rate: 0, burst: 1)
        #expect(limits.admitConnection(a, now: 0))
        #expect(limits.admitConnection(a, now: 0))
        #expect(!limits.admitConnection(a, now: 0))
        #expect(limits.admitConnection(b, now: 0), "another address has its own count")
        limits.connectionEnded(a)
        #expect(limits.admitConnection(a, now: 0))
    }

    @Test func theBucketAllowsABurstThenTheRate() {
        let limits = ClientLimits(maxConnections: 0, rate: 2, burst: 3)
        for _ in 0..<3 { #expect(limits.takeUpgrade(a, now: 1000) == nil) }
        #expect(limits.takeUpgrade(a, now: 1000) == 1, "half a second until the next token: Retry-After 1")
        #expect(limits.takeUpgrade(a, now: 1499) == 1)
        #expect(limits.takeUpgrade(a, now: 1500) == nil, "2 a second: one back after 500 ms")
        #expect(limits.takeUpgrade(a, now: 1500) == 1)
        #expect(limits.takeUpgrade(a, now: 100_000) == nil)
        #expect(limits.takeUpgrade(a, now: 100_000) == nil)
        #expect(limits.takeUpgrade(a, now: 100_000) == nil)
        #expect(limits.takeUpgrade(a, now: 100_000) != nil, "never more than the burst banked")
    }

    @Test func rateZeroIsNoLimit() {
        let limits = ClientLimits(maxConnections: 0, rate: 1, burst: 1)
        #expect(limits.takeUpgrade(a, now: 0) == nil)
        #expect(limits.takeUpgrade(a, now: 1) == 1, "at 1 a second the wait is under a second, announced as 1")
        limits.rate = 0
        #expect(limits.takeUpgrade(a, now: 2) == nil, "rate 0 is no limit")
    }

    @Test func refusalsAreLoggedOncePerIntervalPerAddress() {
        let limits = ClientLimits(maxConnections: 1, rate: 0, burst: 1)
        #expect(limits.admitConnection(a, now: 50))
        #expect(limits.shouldLog(a, now: 100))
        #expect(!limits.shouldLog(a, now: 100 + ClientLimits.logIntervalMilliseconds - 1))
        #expect(limits.shouldLog(a, now: 100 + ClientLimits.logIntervalMilliseconds))
    }

    @Test func theSweepForgetsIdleAddresses() {
        let limits = ClientLimits(maxConnections: 5, rate: 10, burst: 10)
        #expect(limits.admitConnection(a, now: 0))
        #expect(limits.takeUpgrade(b, now: 0) == nil)
        limits.sweep(now: 50)
        #expect(limits.trackedAddresses == 2, "a holds a connection, b's bucket is refilling")
        limits.sweep(now: 200)
        #expect(limits.trackedAddresses == 1, "b's bucket is full again")
        limits.connectionEnded(a)
        limits.sweep(now: 300)
        #expect(limits.trackedAddresses == 0)
    }
}
