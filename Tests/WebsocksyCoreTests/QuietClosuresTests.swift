import Testing
@testable import WebsocksyCore

@Suite struct QuietClosuresTests {
    @Test func nothingToReportWritesNothing() {
        var quiet = QuietClosures()
        #expect(quiet.summary(now: 0) == nil)
        #expect(quiet.summary(now: 600_000) == nil)
    }

    @Test func theFirstClosureIsReportedAtOnceThenAtMostOnceAMinute() {
        var quiet = QuietClosures()
        quiet.add()
        #expect(quiet.summary(now: 1_000) == "1 connection closed without a request in the last 60 s")
        for _ in 0..<5 { quiet.add() }
        #expect(quiet.summary(now: 1_250) == nil)
        #expect(quiet.summary(now: 60_999) == nil)
        #expect(quiet.count == 5)
        #expect(quiet.summary(now: 61_000) == "5 connections closed without a request in the last 60 s")
        #expect(quiet.count == 0)
        // A quiet spell: the next closure is reported on the next sweep again.
        #expect(quiet.summary(now: 200_000) == nil)
        quiet.add()
        #expect(quiet.summary(now: 300_000) == "1 connection closed without a request in the last 60 s")
    }
}
