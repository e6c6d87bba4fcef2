import Testing
@testable import WebsocksyCore

@Suite struct CloseCodeTests {
    /// The IANA registry's 1012 (service restart), 1013 (try again later) and 1014 (bad gateway)
    /// are sent by real servers and proxies; refusing them answered a normal close with 1002.
    @Test(arguments: [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] as [UInt16])
    func validOnTheWire(_ code: UInt16) {
        #expect(CloseCode.isValidOnWire(code))
    }

    @Test(arguments: [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] as [UInt16])
    func neverValidOnTheWire(_ code: UInt16) {
        #expect(!CloseCode.isValidOnWire(code))
    }

    @Test func theReaderAcceptsAClose1012() {
        let events = readEvents(clientFrame(8, [0x03, 0xF4] + text("restart")))
        #expect(events == [.close(1012, text("restart"))])
    }
}
