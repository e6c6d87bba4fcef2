// libFuzzer target: the opening handshake parser, fed byte ranges as they might arrive.
import WebsocksyCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHandshake(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    var parser = HandshakeParser(maxHeaderBytes: 4096, maxHeaderCount: 32)
    let bytes = UnsafeBufferPointer(start: data, count: size)
    var seen = 0
    // Grow the input in steps, as reads would deliver it.
    while seen < size {
        seen = min(size, seen + max(1, Int(bytes[seen]) % 64))
        switch parser.parse(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[0..<seen]))) {
        case .incomplete: continue
        case .rejected(let rejection):
            _ = HandshakeResponse.reject(rejection)
            return 0
        case .plain(let request, let consumed):
            precondition(consumed <= seen)
            _ = request.header("Host")
            return 0
        case .complete(let request, let consumed):
            precondition(consumed <= seen)
            _ = HandshakeResponse.accept(key: request.key, subprotocol: request.protocols.first)
            return 0
        }
    }
    return 0
}
