import Testing
@testable import WebsocksyCore

/// A session action with its payload copied out.
enum SessionAction: Equatable {
    case deliver([UInt8], Opcode, start: Bool, end: Bool)
    case reply(Opcode, [UInt8])
    case none
    case closeReceived(UInt16?, reply: UInt16)
    case closeCompleted(UInt16?)
    case fail(UInt16, sendClose: Bool)
}

/// Feeds `bytes` to `session` and returns every action it decides, consuming as a connection does.
func actions(_ session: inout WebSocketSession, _ bytes: [UInt8]) -> [SessionAction] {
    var pending = bytes
    var out: [SessionAction] = []
    while true {
        let (consumed, action): (Int, SessionAction?) = pending.withUnsafeMutableBytes { buffer in
            let (consumed, action) = session.next(buffer)
            switch action {
            case .needMore: return (consumed, nil)
            case .deliver(let p, let op, let s, let e): return (consumed, .deliver(Array(p), op, start: s, end: e))
            case .reply(let op, let p): return (consumed, .reply(op, Array(p)))
            case .none: return (consumed, SessionAction.none)
            case .closeReceived(let code, let reply): return (consumed, .closeReceived(code, reply: reply.rawValue))
            case .closeCompleted(let code): return (consumed, .closeCompleted(code))
            case .fail(let code, _, let send): return (consumed, .fail(code.rawValue, sendClose: send))
            }
        }
        pending.removeFirst(min(consumed, pending.count))
        guard let action else { return out }
        out.append(action)
    }
}

func closeFrame(_ code: UInt16, _ reason: String = "") -> [UInt8] {
    clientFrame(8, [UInt8(code >> 8), UInt8(code & 0xFF)] + text(reason))
}

@Suite struct WebSocketSessionTests {
    @Test func pingIsAnsweredWithItsPayload() {
        var session = WebSocketSession(maxMessageSize: 1 << 20)
        #expect(actions(&session, clientFrame(9, text("are you there"))) == [.reply(.pong, text("are you there"))])
    }

    @Test func pongNeedsNothing() {
        var session = WebSocketSession(maxMessageSize: 1 << 20)
        #expect(actions(&session, clientFrame(10, text("x"))) == [SessionAction.none])
    }

    @Test func clientCloseIsEchoedAndEndsReading() {
        var session = WebSocketSession(maxMessageSize: 1 << 20)
        let bytes = closeFrame(4001, "bye") + clientFrame(1, text("after"))
        #expect(actions(&session, bytes) == [.closeReceived(4001, reply: 4001)])
        #expect(session.closeSent && session.closeReceived && session.isFinished)
        // §5.5.1: nothing is read after the Close.
        #expect(actions(&session, clientFrame(1, text("later"))) == [])
    }

    @Test func emptyCloseIsAnsweredWith1000() {
        var session = WebSocketSession(maxMessageSize: 1 << 20)
        #expect(actions(&session, clientFrame(8, [])) == [.closeReceived(nil, reply: 1000)])
    }

    @Test func closeAfterOursCompletesTheHandshake() {
        var session = WebSocketSession(maxMessageSize: 1 << 20)
        let first = session.startClose()
        let second = session.startClose()
        #expect(first && !second, "a second Close must never be sent")
        #expect(actions(&session, closeFrame(1000)) == [.closeCompleted(1000)])
        #expect(session.isFinished)
    }

    @Test func dataAfterOurCloseIsStillDeliveredButPingsAreNotAnswered() {
        var session = WebSocketSession(maxMessageSize: 1 << 20)
        _ = session.startClose()
        #expect(!session.canSend)
        let bytes = clientFrame(2, [1, 2, 3]) + clientFrame(9, text("p"))
        #expect(actions(&session, bytes) == [.deliver([1, 2, 3], .binary, start: true, end: true), SessionAction.none])
    }

    @Test func violationsFailWithTheirCode() {
        var unmasked = WebSocketSession(maxMessageSize: 1 << 20)
        #expect(actions(&unmasked, clientFrame(2, [1], masked: false)) == [.fail(1002, sendClose: true)])
        var badText = WebSocketSession(maxMessageSize: 1 << 20)
        #expect(actions(&badText, clientFrame(1, [0xFF])) == [.fail(1007, sendClose: true)])
        var tooBig = WebSocketSession(maxMessageSize: 4)
        #expect(actions(&tooBig, clientFrame(2, [1, 2, 3, 4, 5])) == [.fail(1009, sendClose: true)])
        var badCode = WebSocketSession(maxMessageSize: 1 << 20)
        #expect(actions(&badCode, closeFrame(1005)) == [.fail(1002, sendClose: true)])
    }

    @Test func aViolationAfterOurCloseSendsNoSecondClose() {
        var session = WebSocketSession(maxMessageSize: 1 << 20)
        _ = session.startClose()
        #expect(actions(&session, clientFrame(3, [])) == [.fail(1002, sendClose: false)])
        #expect(session.isFinished)
    }

    @Test func fragmentsAndInterleavedPingKeepTheirOrder() {
        var session = WebSocketSession(maxMessageSize: 1 << 20)
        let bytes = clientFrame(1, text("Hel"), fin: false) + clientFrame(9, []) + clientFrame(0, text("lo"))
        #expect(actions(&session, bytes) == [
            .deliver(text("Hel"), .text, start: true, end: false),
            .reply(.pong, []),
            .deliver(text("lo"), .text, start: false, end: true),
        ])
    }

    @Test func abandonedSessionReadsNothing() {
        var session = WebSocketSession(maxMessageSize: 1 << 20)
        session.abandon()
        #expect(actions(&session, clientFrame(2, [1])) == [])
        let closeAllowed = session.startClose()
        #expect(!closeAllowed)
    }
}
