import Glibc
import WebsocksyCore

// websocksy-replay: reads a session recording (`record = DIR`, format in RecordingFormat.swift).

let usage = """
Usage: websocksy-replay [--direction in|out] [--bytes N|all] FILE
       websocksy-replay --direction in|out --raw FILE

Prints a websocksy session recording: the header (client, request target, peer, start time),
then one line per record: seconds since the start, direction (in = client to peer, out = peer
to client), opcode (text, binary, cont for a later chunk of a client message), fin on the last
chunk of a message, payload length and the payload (quoted text, else hex; the first 32
bytes unless --bytes says otherwise). dropped, capped and end records are shown as such.

  --direction in|out   only records of that direction
  --raw                write the payloads of --direction to stdout, byte-exact, nothing else
  --bytes N|all        payload bytes shown per record (default 32)

Exit status: 0; 1 when the file ends inside a record (a recording cut short); 2 on errors.
"""

func fail(_ message: String, status: Int32 = 2) -> Never {
    let text = "websocksy-replay: \(message)\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
    exit(status)
}

func readWholeFile(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { fail("\(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            fail("\(path): \(String(cString: strerror(errno)))")
        }
        if n == 0 { break }
        bytes += chunk[0..<n]
    }
    return bytes
}

func writeAll(_ bytes: ArraySlice<UInt8>) {
    bytes.withUnsafeBytes { buffer in
        var done = 0
        while done < buffer.count {
            let n = write(1, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                fail("writing to stdout: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }
}

nonisolated(unsafe) var output: [UInt8] = []
func emit(_ line: String) {
    output += line.utf8
    output.append(0x0A)
    if output.count >= 1 << 16 {
        writeAll(output[...])
        output.removeAll(keepingCapacity: true)
    }
}

func isoTime(_ micros: UInt64) -> String {
    var seconds = time_t(micros / 1_000_000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    var buffer = [CChar](repeating: 0, count: 32)
    let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S", &parts)
    let fraction = String(micros % 1_000_000)
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        + "." + String(repeating: "0", count: 6 - fraction.count) + fraction + "Z"
}

func seconds(_ micros: UInt64) -> String {
    let fraction = String(micros % 1_000_000)
    let whole = String(micros / 1_000_000)
    return String(repeating: " ", count: max(0, 6 - whole.count)) + whole + "." + String(repeating: "0", count: 6 - fraction.count) + fraction
}

/// Text as a quoted string with controls, quotes and backslashes escaped; nil when not UTF-8.
func quoted(_ bytes: ArraySlice<UInt8>) -> String? {
    var text = "\""
    var iterator = bytes.makeIterator()
    var decoder = UTF8()
    loop: while true {
        switch decoder.decode(&iterator) {
        case .scalarValue(let scalar):
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    text += "\\x" + hexByte(UInt8(scalar.value))
                } else {
                    text.unicodeScalars.append(scalar)
                }
            }
        case .emptyInput: break loop
        case .error: return nil
        }
    }
    return text + "\""
}

func hexByte(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 15)])
}

func hex(_ bytes: ArraySlice<UInt8>) -> String {
    bytes.map(hexByte).joined(separator: " ")
}

// MARK: Arguments

var direction: RecordingFormat.RecordType?
var raw = false
var shown: Int? = 32
var path: String?
var arguments = Array(CommandLine.arguments.dropFirst())[...]
while let arg = arguments.popFirst() {
    switch arg {
    case "-h", "--help":
        print(usage)
        exit(0)
    case "--direction", "-d":
        switch arguments.popFirst() {
        case "in": direction = .clientToPeer
        case "out": direction = .peerToClient
        default: fail("--direction takes in or out")
        }
    case "--raw": raw = true
    case "--bytes":
        guard let value = arguments.popFirst() else { fail("--bytes needs a value") }
        if value == "all" {
            shown = nil
        } else {
            guard let n = Int(value), n >= 0 else { fail("--bytes takes a number or all, not '\(value)'") }
            shown = n
        }
    default:
        guard !arg.hasPrefix("-") || arg == "-", path == nil else { fail("unexpected argument '\(arg)' (see --help)") }
        path = arg
    }
}
guard let path else { fail("no recording named (see --help)") }
if raw && direction == nil { fail("--raw needs --direction in or out") }

let bytes = readWholeFile(path)
var reader: RecordingFormat.Reader
do {
    reader = try RecordingFormat.Reader(bytes)
} catch {
    fail("\(path): \(error)")
}

if raw {
    while let record = reader.next() {
        if record.type == direction!.rawValue { writeAll(bytes[record.payload]) }
    }
} else {
    let h = reader.header
    emit("# websocksy recording, version \(h.version), started \(isoTime(h.startMicroseconds))")
    emit("# client \(h.clientAddress)" + (h.forwardedClient.isEmpty ? "" : " (for \(h.forwardedClient))"))
    emit("# target \(h.target)")
    emit("# peer \(h.peer)" + (h.subprotocol.isEmpty ? "" : "  subprotocol \(h.subprotocol)"))
    if h.isTruncated { emit("# truncated: records were dropped, the size cap was reached or a write failed") }
    // The opcode of the message each direction is in, for continuation chunks.
    var current: [UInt8: UInt8] = [:]
    while let record = reader.next() {
        if let direction, record.type != direction.rawValue { continue }
        let time = seconds(record.time)
        switch record.kind {
        case .clientToPeer?, .peerToClient?:
            let name = record.kind == .clientToPeer ? "in " : "out"
            let opcode = record.opcode == 0 ? (current[record.type] ?? 0) : record.opcode
            current[record.type] = record.isFinal ? nil : opcode
            let opcodeName = record.opcode == 0 ? "cont  " : opcode == 1 ? "text  " : opcode == 2 ? "binary" : "op\(opcode)   "
            let payload = bytes[record.payload]
            let visible = shown.map { payload.prefix($0) } ?? payload
            let more = visible.count < payload.count ? " …" : ""
            var body = opcode == 1 ? quoted(visible) : nil
            if body == nil && opcode == 1 && visible.count < payload.count {
                // Cut inside a character: try one to three bytes fewer.
                for cut in 1...3 where body == nil && cut < visible.count { body = quoted(visible.dropLast(cut)) }
            }
            emit("\(time)  \(name)  \(opcodeName)  \(record.isFinal ? "fin" : "   ")  \(payload.count)  \(body ?? hex(visible))\(more)")
        case .dropped?:
            let counts = reader.counters(record)
            emit("\(time)  dropped  \(counts.first ?? 0) record(s), \(counts.dropFirst().first ?? 0) payload bytes (the disk did not keep up)")
        case .capped?:
            emit("\(time)  capped   the recording reached record-max (\(reader.counters(record).first ?? 0) bytes); nothing after this")
        case .end?:
            emit("\(time)  end")
        case nil:
            emit("\(time)  type \(record.type)  \(record.payload.count) bytes")
        }
    }
    writeAll(output[...])
}
if reader.trailingBytes > 0 {
    fail("\(path): the file ends inside a record (\(reader.trailingBytes) bytes left over): the recording was cut short", status: 1)
}
exit(0)
