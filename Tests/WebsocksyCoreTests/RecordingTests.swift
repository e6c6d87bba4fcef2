import Glibc
import Testing
@testable import WebsocksyCore

/// A fresh directory under /tmp for one test.
private func temporaryDirectory() -> String {
    var template = Array("/tmp/websocksy-recording-XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    precondition(made != nil)
    return String(cString: template)
}

private func removeTree(_ directory: String) {
    if let dir = opendir(directory) {
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name != "." && name != ".." { unlink(directory + "/" + name) }
        }
        closedir(dir)
    }
    rmdir(directory)
}

private func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { break }
        bytes += chunk[0..<n]
    }
    return bytes
}

/// Waits until the writer thread has closed the recording (the last record is `end` or `capped`).
private func waitForRecording(_ path: String) -> [UInt8]? {
    for _ in 0..<500 {
        if let bytes = readFile(path), var reader = try? RecordingFormat.Reader(bytes) {
            var last: RecordingFormat.Record?
            while let record = reader.next() { last = record }
            if reader.trailingBytes == 0, let kind = last?.kind, kind == .end || kind == .capped {
                // The truncated flag is written after the last record: give it a moment.
                usleep(20_000)
                return readFile(path)
            }
        }
        usleep(10_000)
    }
    return nil
}

private func records(_ bytes: [UInt8]) throws -> (RecordingFormat.Reader, [RecordingFormat.Record]) {
    var reader = try RecordingFormat.Reader(bytes)
    var all: [RecordingFormat.Record] = []
    while let record = reader.next() { all.append(record) }
    return (reader, all)
}

@Suite struct RecordingFormatTests {
    let header = RecordingFormat.Header(startMicroseconds: 1_700_000_000_123_456, clientAddress: "127.0.0.1:5000",
                                        forwardedClient: "203.0.113.9", target: "/chat?room=1", peer: "tcp://localhost:7000",
                                        subprotocol: "mqtt")

    @Test func headerLayoutIsAsDocumented() throws {
        let bytes = RecordingFormat.encodeHeader(header)
        #expect(Array(bytes[0..<8]) == Array("WSKYREC\n".utf8))
        #expect(bytes[8] == 1 && bytes[9] == 0)           // version 1, little-endian
        #expect(bytes[10] == 0 && bytes[11] == 0)         // flags
        let length = Int(bytes[12]) | Int(bytes[13]) << 8 | Int(bytes[14]) << 16 | Int(bytes[15]) << 24
        #expect(length == bytes.count)
        #expect(Array(bytes[16..<24]) == withUnsafeBytes(of: UInt64(1_700_000_000_123_456).littleEndian) { Array($0) })
        #expect(bytes[24] == 5 && bytes[25] == 0)         // five fields
        #expect(bytes[26] == 14 && bytes[27] == 0)        // "127.0.0.1:5000"
        #expect(String(decoding: bytes[28..<42], as: UTF8.self) == "127.0.0.1:5000")
        let reader = try RecordingFormat.Reader(bytes)
        #expect(reader.header == header)
        #expect(reader.offset == bytes.count)
    }

    @Test func recordsRoundTrip() throws {
        var file = RecordingFormat.encodeHeader(header)
        let payloads: [[UInt8]] = [Array("hello".utf8), [], [0, 1, 2, 255], [UInt8](repeating: 0x7A, count: 70000)]
        let kinds: [(UInt8, UInt8)] = [(1, 0x81), (2, 0x82), (1, 0x02), (1, 0x80)]
        for (i, payload) in payloads.enumerated() {
            file += RecordingFormat.encodeRecord(time: UInt64(i * 1000), type: kinds[i].0, flags: kinds[i].1, payload: payload)
        }
        let (reader, all) = try records(file)
        #expect(all.count == 4)
        #expect(reader.trailingBytes == 0)
        for (i, record) in all.enumerated() {
            #expect(record.time == UInt64(i * 1000))
            #expect(record.type == kinds[i].0 && record.flags == kinds[i].1)
            #expect(Array(file[record.payload]) == payloads[i])
        }
        #expect(all[0].kind == .clientToPeer && all[0].opcode == 1 && all[0].isFinal)
        #expect(all[1].kind == .peerToClient && all[1].opcode == 2 && all[1].isFinal)
        #expect(all[2].opcode == 2 && !all[2].isFinal)
        #expect(all[3].opcode == 0 && all[3].isFinal)
    }

    @Test func recordHeadLayout() {
        let bytes = RecordingFormat.encodeRecord(time: 0x0102030405060708, type: 2, flags: 0x81, payload: [9, 9, 9])
        #expect(bytes == [8, 7, 6, 5, 4, 3, 2, 1, 2, 0x81, 3, 0, 0, 0, 9, 9, 9])
    }

    @Test func aFileCutInsideARecordIsReported() throws {
        var file = RecordingFormat.encodeHeader(header)
        file += RecordingFormat.encodeRecord(time: 1, type: 1, flags: 0x81, payload: [1, 2, 3])
        file += Array(RecordingFormat.encodeRecord(time: 2, type: 1, flags: 0x81, payload: [UInt8](repeating: 1, count: 100)).prefix(50))
        let (reader, all) = try records(file)
        #expect(all.count == 1)
        #expect(reader.trailingBytes == 50)
    }

    @Test func badFilesAreRefused() {
        #expect(throws: RecordingFormat.DecodeError.self) { _ = try RecordingFormat.Reader(Array("not a recording at all, no".utf8)) }
        var wrongVersion = RecordingFormat.encodeHeader(header)
        wrongVersion[8] = 2
        #expect(throws: RecordingFormat.DecodeError.self) { _ = try RecordingFormat.Reader(wrongVersion) }
        var badLength = RecordingFormat.encodeHeader(header)
        badLength[12] = 0xFF
        badLength[13] = 0xFF
        #expect(throws: RecordingFormat.DecodeError.self) { _ = try RecordingFormat.Reader(badLength) }
    }

    @Test func longFieldsAreCutAtACharacterBoundary() throws {
        let long = String(repeating: "é", count: 3000)  // 6000 bytes
        var h = header
        h.target = "/" + long
        let reader = try RecordingFormat.Reader(RecordingFormat.encodeHeader(h))
        #expect(reader.header.target.utf8.count <= RecordingFormat.maxFieldBytes)
        #expect(reader.header.target.utf8.count >= RecordingFormat.maxFieldBytes - 1)
        #expect(reader.header.target.hasPrefix("/éé"))
        #expect(!reader.header.target.contains("\u{FFFD}"))
    }

    @Test func fileNamesSortByTimeAndAreSafe() {
        let a = RecordingSettings.fileName(startMicroseconds: 1_700_000_000_000_001, client: "[::1]:5000")
        let b = RecordingSettings.fileName(startMicroseconds: 1_700_000_000_000_002, client: "../../etc/passwd")
        #expect(a < b)
        #expect(a.hasPrefix("20231114T221320.000001Z-p"))
        #expect(a.hasSuffix("-___1__5000.wsrec"))
        #expect(!b.contains("/"))
    }

    @Test func routeChoices() {
        #expect(RecordChoice.parse("off") == .off)
        #expect(RecordChoice.parse("/var/log/ws") == .directory("/var/log/ws"))
        #expect(RecordChoice.parse("") == nil)
        let options = PeerOptions()
        #expect(options.set("record", "/tmp") == nil)
        #expect(options.record == .directory("/tmp"))
        #expect(options.set("record", "off") == nil)
        #expect(options.record == .off)
        #expect(options.set("record", "") != nil)
        #expect(options.set("colour", "blue")?.contains("known: compression, record") == true)
    }
}

@Suite struct RecordingConfigurationTests {
    @Test func keysAndFlags() throws {
        var c = Configuration()
        try IniFile.apply(text: "[core]\nrecord = /srv/rec\nrecord-max = 1M\n", path: "t.cfg", into: &c)
        #expect(c.recordDirectory == "/srv/rec")
        #expect(c.recordMax == 1 << 20)
        #expect(c.coreValues("record") == ["/srv/rec"])
        #expect(c.coreValues("record-max") == ["1M"])
        guard case .run(let f) = try CommandLineParser.parse(["--record", "/r", "--record-max", "128k"]) else {
            Issue.record("not run")
            return
        }
        #expect(f.recordDirectory == "/r" && f.recordMax == 128 << 10)
        guard case .run(let off) = try CommandLineParser.parse(["--record", "/r", "--record", "off"]) else { return }
        #expect(off.recordDirectory == nil)
        #expect(Configuration().recordMax == 64 << 20)
    }

    @Test func errorsNameTheLine() {
        var c = Configuration()
        do {
            try IniFile.apply(text: "[core]\nrecord-max = 1k\n", path: "t.cfg", into: &c)
            Issue.record("accepted")
        } catch {
            #expect(error.description == "t.cfg:2: record-max must be a size from 64k to 1024G (e.g. 65536, 64k, 16M), not '1k'")
        }
        do {
            try IniFile.apply(text: "[core]\nrecord =\n", path: "t.cfg", into: &c)
            Issue.record("accepted")
        } catch {
            #expect(error.description.hasPrefix("t.cfg:2: "))
        }
    }

    @Test func aMissingDirectoryIsReportedAtItsLine() throws {
        var c = Configuration()
        try IniFile.apply(text: "[core]\nport = 0\nrecord = /nonexistent/websocksy-records\n", path: "t.cfg", into: &c)
        do {
            try RecordingSettings.check(c.recordDirectory!)
            Issue.record("accepted")
        } catch {
            #expect(c.locating(error).description.hasPrefix("t.cfg:3: record: cannot record into /nonexistent/websocksy-records"))
        }
    }
}

@Suite struct RecordingWriterTests {
    private func header() -> RecordingFormat.Header {
        .init(startMicroseconds: RecordingSettings.wallClockMicroseconds(), clientAddress: "127.0.0.1:1", target: "/", peer: "echo://")
    }

    @Test func aSessionIsWrittenWithMode0600() throws {
        let directory = temporaryDirectory()
        defer { removeTree(directory) }
        let path = directory + "/" + RecordingSettings.fileName(startMicroseconds: 1, client: "127.0.0.1:1")
        let old = umask(0)
        defer { umask(old) }
        let recording = Recording(path: path, header: header(), maxBytes: 64 << 20, writer: RecordingWriter.shared)
        let big = [UInt8](repeating: 0x41, count: 300_000)
        "hi".utf8.withContiguousStorageIfAvailable { recording.clientChunk(UnsafeRawBufferPointer($0), opcode: .text, messageStart: true, messageEnd: true) }
        big.withUnsafeBytes { recording.clientChunk($0, opcode: .binary, messageStart: true, messageEnd: false) }
        big.withUnsafeBytes { recording.clientChunk($0, opcode: .binary, messageStart: false, messageEnd: true) }
        big.withUnsafeBytes { recording.message(.binary, $0) }
        recording.close()
        let bytes = try #require(waitForRecording(path))
        var st = stat()
        #expect(stat(path, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        let (reader, all) = try records(bytes)
        #expect(!reader.header.isTruncated)
        #expect(all.map(\.type) == [1, 1, 1, 2, 5])
        #expect(all.map(\.flags) == [0x81, 0x02, 0x80, 0x82, 0])
        #expect(Array(bytes[all[0].payload]) == Array("hi".utf8))
        #expect(Array(bytes[all[2].payload]) == big)
        #expect(all.map(\.time) == all.map(\.time).sorted())
    }

    @Test func theCapEndsTheFileWithOneCappedRecord() throws {
        let directory = temporaryDirectory()
        defer { removeTree(directory) }
        let path = directory + "/capped.wsrec"
        let cap = 64 << 10
        let recording = Recording(path: path, header: header(), maxBytes: cap, writer: RecordingWriter.shared)
        let chunk = [UInt8](repeating: 0x42, count: 10_000)
        for _ in 0..<20 { chunk.withUnsafeBytes { recording.message(.binary, $0) } }
        recording.close()
        let bytes = try #require(waitForRecording(path))
        #expect(bytes.count <= cap)
        let (reader, all) = try records(bytes)
        #expect(reader.header.isTruncated)
        #expect(all.last?.kind == .capped)
        #expect(reader.counters(all.last!) == [UInt64(cap)])
        #expect(all.dropLast().allSatisfy { $0.kind == .peerToClient })
        #expect(all.count == 7)  // six 10 KB messages fit under 64k with the header and the reserve
    }

    @Test func anUncreatableFileLeavesTheSessionAlone() throws {
        let recording = Recording(path: "/nonexistent-dir/x.wsrec", header: header(), maxBytes: 64 << 20, writer: RecordingWriter.shared)
        for _ in 0..<100 { ([1, 2, 3] as [UInt8]).withUnsafeBytes { recording.message(.binary, $0) } }
        recording.close()
    }
}

@Suite(.serialized) struct RecordingQueueTests {
    @Test func aFullQueueDropsRecordsAndSaysHowMany() throws {
        let directory = temporaryDirectory()
        defer { removeTree(directory) }
        let path = directory + "/dropped.wsrec"
        let writer = RecordingWriter.shared
        let header = RecordingFormat.Header(startMicroseconds: 0, clientAddress: "c", target: "/", peer: "p")
        writer.setPaused(true)
        let recording = Recording(path: path, header: header, maxBytes: 64 << 20, writer: writer)
        let big = [UInt8](repeating: 0x43, count: 2_400_000)
        // The header is queued; the first big record still fits under 4 MiB, the next two do not.
        for _ in 0..<3 { big.withUnsafeBytes { recording.message(.binary, $0) } }
        ([7, 7] as [UInt8]).withUnsafeBytes { recording.clientChunk($0, opcode: .binary, messageStart: true, messageEnd: true) }
        writer.setPaused(false)
        recording.close()
        let bytes = try #require(waitForRecording(path))
        let (reader, all) = try records(bytes)
        #expect(reader.header.isTruncated)
        #expect(all.map(\.type) == [2, 3, 1, 5])
        #expect(reader.counters(all[1]) == [2, 4_800_000])
        #expect(Array(bytes[all[2].payload]) == [7, 7])
    }
}
