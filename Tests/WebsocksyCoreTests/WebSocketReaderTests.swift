import Testing
@testable import WebsocksyCore

@Suite struct WebSocketReaderTests {
    // MARK: RFC 6455 §5.7 examples

    @Test func rfcSingleFrameMaskedText() {
        let bytes: [UInt8] = [0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]
        #expect(readEvents(bytes) == [.data(text("Hello"), .text, start: true, end: true)])
    }

    @Test func rfcFragmentedText() {
        let bytes = clientFrame(1, text("Hel"), fin: false) + clientFrame(0, text("lo"))
        #expect(readEvents(bytes) == [
            .data(text("Hel"), .text, start: true, end: false),
            .data(text("lo"), .text, start: false, end: true),
        ])
    }

    @Test func rfcPingAndPong() {
        #expect(readEvents(clientFrame(9, text("Hello"))) == [.ping(text("Hello"))])
        #expect(readEvents(clientFrame(10, text("Hello"))) == [.pong(text("Hello"))])
    }

    @Test(arguments: [0, 1, 125, 126, 127, 65535, 65536, 70000])
    func binaryOfEveryLengthForm(length: Int) {
        let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let bytes = clientFrame(2, payload)
        #expect(messages(readEvents(bytes)) == [.message(payload, .binary)])
        // The same bytes in awkward pieces decode to the same message.
        for chunk in [1, 3, 7, 4096] where length < 4096 || chunk == 4096 {
            #expect(messages(readEvents(bytes, chunk: chunk)) == [.message(payload, .binary)], "chunk \(chunk)")
        }
    }

    @Test func streamsPayloadAsItArrives() {
        let payload = [UInt8](repeating: 0x61, count: 1000)
        let events = readEvents(clientFrame(2, payload), chunk: 100)
        #expect(events.count > 5)
        #expect(events.first == .data(Array(payload[0..<92]), .binary, start: true, end: false))
    }

    @Test func pingBetweenFragments() {
        let bytes = clientFrame(1, text("frag"), fin: false) + clientFrame(9, text("p")) + clientFrame(0, text("ment"))
        for chunk in [1, 2, 5, 1000] {
            #expect(messages(readEvents(bytes, chunk: chunk)) == [.other(.ping(text("p"))), .message(text("fragment"), .text)])
        }
    }

    @Test func emptyMessagesAndFragments() {
        #expect(readEvents(clientFrame(1, [])) == [.data([], .text, start: true, end: true)])
        let bytes = clientFrame(2, [], fin: false) + clientFrame(0, [], fin: false) + clientFrame(0, [1])
        #expect(messages(readEvents(bytes)) == [.message([1], .binary)])
    }

    // MARK: Violations (§5, §7.1.7): each closes with the right code

    @Test func rejectsUnmaskedClientFrame() {
        #expect(readEvents(clientFrame(1, text("hi"), masked: false)) == [.violation(1002)])
    }

    @Test(arguments: [1, 2, 4, 7]) func rejectsReservedBits(rsv: UInt8) {
        #expect(readEvents(clientFrame(1, text("hi"), rsv: rsv)) == [.violation(1002)])
    }

    @Test(arguments: [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) func rejectsReservedOpcodes(opcode: UInt8) {
        #expect(readEvents(clientFrame(opcode, [])) == [.violation(1002)])
    }

    @Test func rejectsOversizedControlFrame() {
        #expect(readEvents(clientFrame(9, [UInt8](repeating: 0, count: 125))) == [.ping([UInt8](repeating: 0, count: 125))])
        #expect(readEvents(clientFrame(9, [UInt8](repeating: 0, count: 126))) == [.violation(1002)])
    }

    @Test func rejectsFragmentedControlFrame() {
        #expect(readEvents(clientFrame(9, text("x"), fin: false)) == [.violation(1002)])
    }

    @Test func rejectsContinuationWithoutStart() {
        #expect(readEvents(clientFrame(0, text("x"))) == [.violation(1002)])
    }

    @Test func rejectsNewMessageInsideFragmentedOne() {
        let bytes = clientFrame(1, text("a"), fin: false) + clientFrame(1, text("b"))
        #expect(readEvents(bytes) == [.data(text("a"), .text, start: true, end: false), .violation(1002)])
    }

    @Test func rejects64BitLengthTopBit() {
        let bytes: [UInt8] = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]
        #expect(readEvents(bytes) == [.violation(1002)])
    }

    @Test func messageTooBig() {
        #expect(readEvents(clientFrame(2, [UInt8](repeating: 1, count: 200)), maxMessage: 200).count == 1)
        #expect(readEvents(clientFrame(2, [UInt8](repeating: 1, count: 201)), maxMessage: 200) == [.violation(1009)])
        // The limit applies to the sum of the fragments.
        let fragments = clientFrame(2, [UInt8](repeating: 1, count: 150), fin: false) + clientFrame(0, [UInt8](repeating: 1, count: 51))
        #expect(readEvents(fragments, maxMessage: 200).last == .violation(1009))
    }

    @Test func invalidUTF8FailsFastInsideAFrame() {
        // The bad byte is in the first chunk; the frame is far from complete when it is rejected.
        let payload = text("κόσμε") + [0xED, 0xA0, 0x80] + [UInt8](repeating: 0x61, count: 500)
        let events = readEvents(clientFrame(1, payload), chunk: 20)
        #expect(events.last == .violation(1007))
        #expect(events.count <= 2)
    }

    @Test func invalidUTF8AcrossFragments() {
        let bytes = clientFrame(1, [0xCE], fin: false) + clientFrame(0, [0xBA, 0xE1], fin: false) + clientFrame(0, [0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5])
        // "κόσμε" with U+1F79 (the spelling of Markus Kuhn's UTF-8 test file).
        let kosme: [UInt8] = [0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5]
        #expect(messages(readEvents(bytes, chunk: 1)) == [.message(kosme, .text)])
        let broken = clientFrame(1, [0xCE], fin: false) + clientFrame(0, [0x41])
        #expect(readEvents(broken).last == .violation(1007))
        let truncated = clientFrame(1, [0x41, 0xCE])
        #expect(readEvents(truncated) == [.violation(1007)])
        let truncatedEmptyEnd = clientFrame(1, [0xCE], fin: false) + clientFrame(0, [])
        #expect(readEvents(truncatedEmptyEnd).last == .violation(1007))
    }

    @Test func binaryIsNotUTF8Checked() {
        #expect(messages(readEvents(clientFrame(2, [0xFF, 0xFE]))) == [.message([0xFF, 0xFE], .binary)])
    }

    // MARK: Close frames (§5.5.1, §7.4)

    @Test func closeBodies() {
        #expect(readEvents(clientFrame(8, [])) == [.close(nil, [])])
        #expect(readEvents(clientFrame(8, [0x03, 0xE8] + text("bye"))) == [.close(1000, text("bye"))])
        #expect(readEvents(clientFrame(8, [0x03])) == [.violation(1002)])
        #expect(readEvents(clientFrame(8, [0x03, 0xE8, 0xFF])) == [.violation(1007)])
    }

    @Test(arguments: [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999])
    func validCloseCodes(code: Int) {
        #expect(readEvents(clientFrame(8, [UInt8(code >> 8), UInt8(code & 0xFF)])) == [.close(UInt16(code), [])])
    }

    @Test(arguments: [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
    func invalidCloseCodes(code: Int) {
        #expect(readEvents(clientFrame(8, [UInt8(code >> 8), UInt8(code & 0xFF)])) == [.violation(1002)])
    }

    @Test func nothingAfterClose() {
        let bytes = clientFrame(8, [0x03, 0xE8]) + clientFrame(1, text("late"))
        #expect(readEvents(bytes) == [.close(1000, [])])
    }
}
