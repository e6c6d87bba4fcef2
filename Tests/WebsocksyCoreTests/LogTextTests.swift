import Testing
@testable import WebsocksyCore

@Suite struct LogTextTests {
    @Test func controlCharactersBecomeHexEscapes() {
        #expect(LogText.escaped("a\r\nb\u{1B}[2Jc\u{0B}\0\u{7F}") == "a\\x0D\\x0Ab\\x1B[2Jc\\x0B\\x00\\x7F")
        // C1 controls (U+0080–U+009F) drive some terminals too: both UTF-8 bytes are escaped.
        #expect(LogText.escaped("x\u{9B}31m") == "x\\xC2\\x9B31m")
    }

    @Test func printableTextIsUnchanged() {
        #expect(LogText.escaped("GET /path?q=\"κόσμε\" ©") == "GET /path?q=\"κόσμε\" ©")
        #expect(LogText.escaped("a \"b\" \\c", also: [0x20, 0x22, 0x5C]) == "a\\x20\\x22b\\x22\\x20\\x5Cc")
    }

    @Test func reflectedValuesAreCappedOnACharacterBoundary() {
        #expect(LogText.capped("short") == "short")
        let long = String(repeating: "a", count: 199) + "é" + String(repeating: "b", count: 300)
        let capped = LogText.capped(long)
        #expect(capped == String(repeating: "a", count: 199) + "…(501 bytes)")
        #expect(LogText.capped(String(repeating: "x", count: 16384), to: 10) == "xxxxxxxxxx…(16384 bytes)")
    }

    @Test func accessLogFieldsStayOneLineWithTheSameFields() {
        var record = ConnectionRecord(startedAt: 0)
        record.request = "GET /a\"b\r\n2026-01-01T00:00:00Z forged \"GET /\" 200"
        record.status = 400
        let line = record.line(client: "1.2.3.4 x", now: 0)
        #expect(!line.contains("\n") && !line.contains("\r"))
        #expect(line.contains(" 1.2.3.4\\x20x fwd=- \"GET /a\\x22b\\x0D\\x0A2026-01-01T00:00:00Z forged \\x22GET /\\x22 200\" 400 bytes=- "))
        // The forwarded-for address comes from a header: escaped like every field from the network.
        #expect(record.line(client: "c", forwarded: "1.2.3.4 x\"", now: 0).contains(" c fwd=1.2.3.4\\x20x\\x22 \""))
        record.request = "GET /" + String(repeating: "a", count: 16000)
        #expect(record.line(client: "c", now: 0).utf8.count < ConnectionRecord.fieldLimit + 200)
    }
}
