import Testing
@testable import WebsocksyCore

@Suite struct LineModeRules {
    private func lacksEnd(_ end: [UInt8], _ chunks: [[UInt8]]) -> Bool {
        var mode = LineMode(end: end)
        for (i, chunk) in chunks.enumerated() {
            chunk.withUnsafeBytes { mode.observe($0, messageStart: i == 0) }
        }
        return mode.messageLacksEnd
    }

    @Test func aLineEndIsAddedOnlyWhenMissing() {
        #expect(lacksEnd([0x0A], [text("hello")]))
        #expect(!lacksEnd([0x0A], [text("hello\n")]))
        #expect(lacksEnd([0x0A], [[]]), "an empty message becomes an empty line")
        #expect(!lacksEnd([0x0D, 0x0A], [text("a\r\n")]))
        #expect(lacksEnd([0x0D, 0x0A], [text("a\n")]), "LF alone is not CR LF")
        // Across chunks: the CR in one chunk, the LF in the next; and a chunk of one byte.
        #expect(!lacksEnd([0x0D, 0x0A], [text("abc\r"), text("\n")]))
        #expect(lacksEnd([0x0D, 0x0A], [text("ab\r\n"), text("x")]))
        #expect(!lacksEnd([0x0A], [text("a"), [], text("\n")]), "an empty chunk changes nothing")
    }

    @Test func aNewMessageForgetsTheLastOne() {
        var mode = LineMode(end: [0x0A])
        text("ends\n").withUnsafeBytes { mode.observe($0, messageStart: true) }
        #expect(!mode.messageLacksEnd)
        [UInt8]().withUnsafeBytes { mode.observe($0, messageStart: true) }
        #expect(mode.messageLacksEnd)
    }

    @Test func peerLinesLoseTheirLineEnd() {
        let mode = LineMode(end: [0x0D, 0x0A])
        for (line, expected) in [("+PONG\r\n", "+PONG"), ("\r\n", ""), ("last", "last"), ("half\r", "half\r"), ("a\n", "a\n")] {
            let got = text(line).withUnsafeBytes { Array(mode.stripped($0)) }
            #expect(got == text(expected), "\(line)")
        }
    }
}

@Suite struct ServiceOptions {
    @Test func parsesPathPeerModeAndLineEnd() throws {
        let s = try Service("/chat/ , tcp://localhost:6667 , TEXT , crlf")
        #expect(s.path == "/chat" && s.mode == .text && s.lineEnd == [0x0D, 0x0A])
        #expect(s.address == .tcp(host: "localhost", port: "6667"))
        let plain = try Service("/raw,echo://")
        #expect(plain.mode == .binary && plain.lineEnd == [0x0A])
    }

    @Test func autoFollowsTheQueryString() throws {
        let s = try Service("/x,echo://,auto")
        #expect(s.isText(query: "encoding=text"))
        #expect(s.isText(query: "a=1&encoding=text"))
        #expect(!s.isText(query: "encoding=binary"))
        #expect(!s.isText(query: nil))
        #expect(!s.isText(query: "xencoding=text"))
    }

    @Test func refusesWhatCannotWork() {
        for bad in ["/x", "x,echo://", "/x?a,echo://", "/x,tcp://h:1,shout", "/x,tcp://h:1,text,nl",
                    "/x,tcp://h:no-such-service", "/x,ftp://h", "/a,b,c,d,e"] {
            #expect(throws: BackendError.self, "\(bad)") { try Service(bad) }
        }
        #expect(throws: Never.self) { try Service("/mail,tcp://h:pop3") }
    }
}
