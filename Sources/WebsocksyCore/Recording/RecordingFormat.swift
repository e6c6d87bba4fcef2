/// The session recording file format (`record = DIR`), version 1. All integers little-endian.
///
/// Header (its length is stored, so later versions can append fields a version-1 reader skips):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0  | 8 | magic `WSKYREC\n` (57 53 4B 59 52 45 43 0A) |
/// | 8  | 2 | version (1) |
/// | 10 | 2 | flags: bit 0 = truncated (something was dropped, the size cap was hit, or a write failed); set when the file is closed |
/// | 12 | 4 | header length H: records start at offset H |
/// | 16 | 8 | start time, microseconds since the Unix epoch (UTC) |
/// | 24 | 2 | number of string fields N |
/// | 26 | … | N fields, each a u16 length and that many bytes of UTF-8: client address, forwarded client (empty unless a trusted proxy named another), request target, peer, subprotocol (empty if none); each at most 4096 bytes (longer values are cut) |
///
/// Then records, each a 14-byte head and a payload:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0  | 8 | microseconds since the start (monotonic clock) |
/// | 8  | 1 | type: 1 client→peer (`in`), 2 peer→client (`out`), 3 dropped, 4 capped, 5 end |
/// | 9  | 1 | for `in`/`out`: 0x80 = last chunk of its message (FIN) ∣ opcode: 1 text, 2 binary, 0 continuation; else 0 |
/// | 10 | 4 | payload length L |
/// | 14 | L | payload |
///
/// - `in`/`out` payloads are message data as the gateway handled it, after decompression.
///   Client messages are recorded chunk by chunk as they are delivered to the peer (the gateway
///   streams them, it never assembles them for stream peers): the first chunk carries the opcode,
///   the following ones 0, the last one FIN. Messages sent to the client are whole (one record,
///   FIN set). Concatenating the payloads of one direction gives the exact byte stream that
///   direction carried. Control frames (ping, pong, close) are not recorded.
/// - `dropped` (payload: u64 records, u64 payload bytes): the writer could not keep up and that
///   many records were left out just before this one (or before the end).
/// - `capped` (payload: u64 `record-max`): the next record would have passed the size cap; it is
///   the last record of the file, which is never larger than `record-max`.
/// - `end` (no payload): the session ended and the recording was closed cleanly. A file without
///   `end` or `capped` was cut short (the gateway was killed, or a write failed).
public enum RecordingFormat {
    public static let magic: [UInt8] = Array("WSKYREC\n".utf8)
    public static let version: UInt16 = 1
    public static let fixedHeaderSize = 26
    public static let recordHeadSize = 14
    public static let maxFieldBytes = 4096
    /// Offset of the flags field, rewritten in place when a recording closes truncated.
    public static let flagsOffset = 10
    public static let flagTruncated: UInt16 = 1

    public enum RecordType: UInt8, Sendable {
        case clientToPeer = 1
        case peerToClient = 2
        case dropped = 3
        case capped = 4
        case end = 5
    }

    public static let finBit: UInt8 = 0x80

    /// The fields a recording's header names, in their order in the file.
    public struct Header: Equatable, Sendable {
        public var version: UInt16 = RecordingFormat.version
        public var flags: UInt16 = 0
        public var startMicroseconds: UInt64
        public var clientAddress: String
        public var forwardedClient: String
        public var target: String
        public var peer: String
        public var subprotocol: String

        public init(startMicroseconds: UInt64, clientAddress: String, forwardedClient: String = "", target: String,
                    peer: String, subprotocol: String = "") {
            self.startMicroseconds = startMicroseconds
            self.clientAddress = clientAddress
            self.forwardedClient = forwardedClient
            self.target = target
            self.peer = peer
            self.subprotocol = subprotocol
        }

        public var isTruncated: Bool { flags & RecordingFormat.flagTruncated != 0 }
    }

    // MARK: Encoding

    /// The header's bytes (fields longer than `maxFieldBytes` are cut, never inside a UTF-8 sequence).
    public static func encodeHeader(_ header: Header) -> [UInt8] {
        let fields = [header.clientAddress, header.forwardedClient, header.target, header.peer, header.subprotocol]
        var out: [UInt8] = magic
        out.reserveCapacity(fixedHeaderSize + fields.reduce(0) { $0 + 2 + min($1.utf8.count, maxFieldBytes) })
        appendLE(&out, header.version)
        appendLE(&out, header.flags)
        appendLE(&out, UInt32(0))  // length, patched below
        appendLE(&out, header.startMicroseconds)
        appendLE(&out, UInt16(fields.count))
        for field in fields {
            var bytes = Array(field.utf8.prefix(maxFieldBytes))
            if field.utf8.count > maxFieldBytes {
                // Back off to a character boundary: continuation bytes are 10xxxxxx.
                while let last = bytes.last, last & 0xC0 == 0x80 { bytes.removeLast() }
                if let last = bytes.last, last >= 0xC0 { bytes.removeLast() }
            }
            appendLE(&out, UInt16(bytes.count))
            out += bytes
        }
        let length = UInt32(out.count)
        for i in 0..<4 { out[12 + i] = UInt8(truncatingIfNeeded: length >> (8 * UInt32(i))) }
        return out
    }

    /// Writes a record head at `p` (14 bytes).
    @inline(__always)
    public static func writeRecordHead(_ p: UnsafeMutableRawPointer, time: UInt64, type: UInt8, flags: UInt8, length: UInt32) {
        p.storeBytes(of: time.littleEndian, toByteOffset: 0, as: UInt64.self)
        p.storeBytes(of: type, toByteOffset: 8, as: UInt8.self)
        p.storeBytes(of: flags, toByteOffset: 9, as: UInt8.self)
        p.storeBytes(of: length.littleEndian, toByteOffset: 10, as: UInt32.self)
    }

    /// A whole record as bytes (tests, and the small marker records).
    public static func encodeRecord(time: UInt64, type: UInt8, flags: UInt8, payload: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: recordHeadSize)
        out.withUnsafeMutableBytes { writeRecordHead($0.baseAddress!, time: time, type: type, flags: flags, length: UInt32(payload.count)) }
        return out + payload
    }

    static func appendLE<T: FixedWidthInteger>(_ out: inout [UInt8], _ value: T) {
        withUnsafeBytes(of: value.littleEndian) { out += $0 }
    }

    // MARK: Decoding

    public struct DecodeError: Error, CustomStringConvertible, Equatable, Sendable {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    public struct Record: Equatable, Sendable {
        /// Microseconds since the start of the recording.
        public var time: UInt64
        /// The raw type byte (`RecordType` when known).
        public var type: UInt8
        public var flags: UInt8
        /// Where the payload lies in the file's bytes.
        public var payload: Range<Int>

        public var kind: RecordType? { RecordType(rawValue: type) }
        public var isFinal: Bool { flags & RecordingFormat.finBit != 0 }
        /// The WebSocket opcode of a data record (0 = continuation of the message before).
        public var opcode: UInt8 { flags & 0x0F }
    }

    /// Reads a whole recording from memory: the header, then one record per `next()`.
    public struct Reader {
        public let bytes: [UInt8]
        public let header: Header
        public private(set) var offset: Int
        /// Bytes left after the last whole record when the file ends inside one.
        public private(set) var trailingBytes = 0

        public init(_ bytes: [UInt8]) throws(DecodeError) {
            self.bytes = bytes
            guard bytes.count >= fixedHeaderSize, Array(bytes[0..<8]) == magic else {
                throw DecodeError("not a websocksy recording (bad magic)")
            }
            let version: UInt16 = Self.le(bytes, 8)
            guard version == 1 else { throw DecodeError("recording version \(version) is not supported (this reader knows 1)") }
            let flags: UInt16 = Self.le(bytes, 10)
            let length = Int(Self.le(bytes, 12) as UInt32)
            guard length >= fixedHeaderSize, length <= bytes.count else { throw DecodeError("header length \(length) is out of range") }
            let start: UInt64 = Self.le(bytes, 16)
            let count = Int(Self.le(bytes, 24) as UInt16)
            var fields: [String] = []
            var at = fixedHeaderSize
            for _ in 0..<count {
                guard at + 2 <= length else { throw DecodeError("header field \(fields.count) runs past the header") }
                let n = Int(Self.le(bytes, at) as UInt16)
                at += 2
                guard at + n <= length else { throw DecodeError("header field \(fields.count) runs past the header") }
                fields.append(String(decoding: bytes[at..<(at + n)], as: UTF8.self))
                at += n
            }
            while fields.count < 5 { fields.append("") }
            var header = Header(startMicroseconds: start, clientAddress: fields[0], forwardedClient: fields[1],
                                target: fields[2], peer: fields[3], subprotocol: fields[4])
            header.version = version
            header.flags = flags
            self.header = header
            self.offset = length
        }

        /// The next record; nil at the end of the file (`trailingBytes` tells whether it ended
        /// inside a record).
        public mutating func next() -> Record? {
            let left = bytes.count - offset
            guard left >= recordHeadSize else {
                trailingBytes = left
                return nil
            }
            let time: UInt64 = Self.le(bytes, offset)
            let type = bytes[offset + 8], flags = bytes[offset + 9]
            let length = Int(Self.le(bytes, offset + 10) as UInt32)
            guard length <= left - recordHeadSize else {
                trailingBytes = left
                return nil
            }
            let start = offset + recordHeadSize
            offset = start + length
            return Record(time: time, type: type, flags: flags, payload: start..<(start + length))
        }

        /// The two counters of a `dropped` record, or the cap of a `capped` one (as its first value).
        public func counters(_ record: Record) -> [UInt64] {
            stride(from: record.payload.lowerBound, to: record.payload.upperBound - 7, by: 8).map { Self.le(bytes, $0) }
        }

        static func le<T: FixedWidthInteger>(_ bytes: [UInt8], _ at: Int) -> T {
            var value: T = 0
            for i in 0..<MemoryLayout<T>.size { value |= T(bytes[at + i]) << (8 * i) }
            return value
        }
    }
}
