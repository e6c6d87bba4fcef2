// libFuzzer target: the PROXY protocol header parser, fed growing prefixes as reads deliver them.
// Once it has decided (absent, invalid, a header) more bytes never change the decision; a header
// never claims more bytes than it was given, and its addresses encode back to a header that parses.
import WebsocksyCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProxy(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    var decided: ProxyProtocolParse?
    var seen = 0
    while seen < size {
        seen = min(size, seen + max(1, Int(bytes[seen]) % 32))
        let result = ProxyProtocol.parse(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[0..<seen])))
        if case .incomplete = result {
            precondition(decided == nil, "undecided again after a decision")
            continue
        }
        if let decided { precondition(result == decided, "a decision changed with more bytes") }
        decided = result
        if case .header(let header, let consumed) = result {
            precondition(consumed > 0 && consumed <= seen)
            if let source = header.source, let destination = header.destination {
                let again = ProxyProtocol.encodeV2(source: source, destination: destination)
                guard case .header(let parsed, let length) = again.withUnsafeBytes({ ProxyProtocol.parse($0) }) else {
                    preconditionFailure("an encoded header does not parse")
                }
                precondition(length == again.count && parsed.source == source)
            }
        }
    }
    return 0
}
