/// The fixed part of a frame (RFC 6455 §5.2): FIN, RSV1–3, opcode, MASK, payload length in its
/// 7-bit, 16-bit or 64-bit form, and the masking key.
public struct FrameHeader: Equatable, Sendable {
    public var fin: Bool
    /// RSV1–RSV3 as the three low bits (RSV1 = 4). Non-zero only with a negotiated extension.
    public var rsv: UInt8
    /// The raw 4-bit opcode; reserved values are kept so the reader can reject them.
    public var opcodeValue: UInt8
    public var masked: Bool
    /// The masking key bytes in wire order, loaded little-endian (see `Masking.apply`).
    public var maskingKey: UInt32
    public var payloadLength: UInt64

    public init(fin: Bool, rsv: UInt8 = 0, opcodeValue: UInt8, masked: Bool, maskingKey: UInt32 = 0, payloadLength: UInt64) {
        self.fin = fin
        self.rsv = rsv
        self.opcodeValue = opcodeValue
        self.masked = masked
        self.maskingKey = maskingKey
        self.payloadLength = payloadLength
    }

    public var opcode: Opcode? { Opcode(rawValue: opcodeValue) }

    /// The largest header: 2 bytes, 8 bytes of extended length, 4 bytes of masking key.
    public static let maximumSize = 14

    public enum ParseResult: Equatable {
        case incomplete
        /// A 64-bit length with the most significant bit set (§5.2 forbids it).
        case invalidLength
        case header(FrameHeader, size: Int)
    }

    /// Parses a header from the start of `bytes` without consuming anything.
    @inlinable
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> ParseResult {
        let n = bytes.count
        guard n >= 2 else { return .incomplete }
        let b0 = bytes[0], b1 = bytes[1]
        let masked = b1 & 0x80 != 0
        var size = 2
        var length = UInt64(b1 & 0x7F)
        if length == 126 {
            guard n >= 4 else { return .incomplete }
            length = UInt64(bytes[2]) << 8 | UInt64(bytes[3])
            size = 4
        } else if length == 127 {
            guard n >= 10 else { return .incomplete }
            length = 0
            for i in 2..<10 { length = length << 8 | UInt64(bytes[i]) }
            guard length & (1 << 63) == 0 else { return .invalidLength }
            size = 10
        }
        var key: UInt32 = 0
        if masked {
            guard n >= size + 4 else { return .incomplete }
            key = bytes.loadUnaligned(fromByteOffset: size, as: UInt32.self).littleEndianWireBytes
            size += 4
        }
        let header = FrameHeader(
            fin: b0 & 0x80 != 0, rsv: (b0 >> 4) & 0x7, opcodeValue: b0 & 0x0F,
            masked: masked, maskingKey: key, payloadLength: length)
        return .header(header, size: size)
    }

    /// Writes an unmasked server header (§5.1: servers never mask) for a payload of `length` bytes;
    /// `compressed` sets RSV1 (RFC 7692 §6, on a compressed message's first frame)
    /// into `out`, which must hold 10 bytes; returns the header size.
    @inlinable
    @discardableResult
    public static func encodeServerHeader(fin: Bool, compressed: Bool = false, opcode: Opcode, length: Int, into out: UnsafeMutableRawPointer) -> Int {
        out.storeBytes(of: (fin ? 0x80 : 0) | (compressed ? 0x40 : 0) | opcode.rawValue, as: UInt8.self)
        if length < 126 {
            out.storeBytes(of: UInt8(length), toByteOffset: 1, as: UInt8.self)
            return 2
        } else if length <= 0xFFFF {
            out.storeBytes(of: 126, toByteOffset: 1, as: UInt8.self)
            out.storeBytes(of: UInt16(length).bigEndian, toByteOffset: 2, as: UInt16.self)
            return 4
        } else {
            out.storeBytes(of: 127, toByteOffset: 1, as: UInt8.self)
            out.storeBytes(of: UInt64(length).bigEndian, toByteOffset: 2, as: UInt64.self)
            return 10
        }
    }
}

extension UInt32 {
    /// Identity on little-endian hosts, a byte swap on big-endian ones: key byte 0 ends up lowest.
    @inlinable var littleEndianWireBytes: UInt32 { UInt32(littleEndian: self) }
}
