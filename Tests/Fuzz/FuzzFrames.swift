// libFuzzer target: the frame reader with message rules and UTF-8 checks, fed in fuzzer-chosen pieces.
import WebsocksyCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrames(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 2 else { return 0 }
    // The first byte picks the piece size, the second the message limit: both matter to the reader.
    let piece = Int(data[0]) + 1
    var reader = WebSocketReader(maxMessageSize: UInt64(data[1]) << 8)
    var pending: [UInt8] = []
    var offset = 2
    while offset < size {
        let end = min(size, offset + piece)
        pending.append(contentsOf: UnsafeBufferPointer(start: data + offset, count: end - offset))
        offset = end
        while true {
            let (consumed, event) = pending.withUnsafeMutableBytes { reader.next($0) }
            precondition(consumed >= 0 && consumed <= pending.count)
            pending.removeFirst(consumed)
            if case .needMore = event { break }
            if case .violation = event { return 0 }
            if case .close = event { return 0 }
        }
    }
    return 0
}
