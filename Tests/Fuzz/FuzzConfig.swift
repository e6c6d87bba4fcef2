// libFuzzer target: the ini file reader, the command-line parser and the separator escapes.
import WebsocksyCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    var config = Configuration()
    _ = try? IniFile.apply(text: text, path: "fuzz.cfg", into: &config)
    let words = text.split(separator: " ").map(String.init)
    _ = try? CommandLineParser.parse(Array(words.prefix(16)))
    _ = try? FramingRegistry.validate(name: "separator", config: text)
    _ = try? PeerAddress.parse(text, defaultPort: "80")
    return 0
}
