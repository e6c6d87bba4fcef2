// libFuzzer target: the WebSocket session (the frame reader with message rules and UTF-8 checks,
// control frames and the close handshake), fed in fuzzer-chosen pieces.
import WebsocksyCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrames(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 3 else { return 0 }
    // The first byte picks the piece size, the second the message limit, the third whether the
    // server has already sent its Close: all matter to the session.
    let piece = Int(data[0]) + 1
    var session = WebSocketSession(maxMessageSize: UInt64(data[1]) << 8)
    if data[2] & 1 == 1 { precondition(session.startClose()) }
    var pending: [UInt8] = []
    var offset = 3
    while offset < size {
        let end = min(size, offset + piece)
        pending.append(contentsOf: UnsafeBufferPointer(start: data + offset, count: end - offset))
        offset = end
        while true {
            let (consumed, action) = pending.withUnsafeMutableBytes { session.next($0) }
            precondition(consumed >= 0 && consumed <= pending.count)
            pending.removeFirst(consumed)
            switch action {
            case .needMore:
                break
            case .reply:
                precondition(session.canSend, "a pong after our Close")
                continue
            case .deliver, .none:
                continue
            case .closeReceived, .closeCompleted, .fail:
                precondition(session.isFinished && !session.canSend)
                return 0
            }
            break
        }
    }
    return 0
}
