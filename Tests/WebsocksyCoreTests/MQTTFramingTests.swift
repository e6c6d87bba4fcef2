import CWebsocksy
import Testing
@testable import WebsocksyCore

/// A control packet: the type and flags byte, the Remaining Length encoded as MQTT 3.1.1 §2.2.3
/// does it (written here independently of the decoder), then the payload.
private func packet(_ typeAndFlags: UInt8, _ payload: [UInt8]) -> [UInt8] {
    var out = [typeAndFlags]
    var x = payload.count
    repeat {
        var encodedByte = UInt8(x % 128)
        x /= 128
        if x > 0 { encodedByte |= 0x80 }
        out.append(encodedByte)
    } while x > 0
    return out + payload
}

private let connack: [UInt8] = [0x20, 0x02, 0x00, 0x00]
private let pingreq: [UInt8] = [0xC0, 0x00]
private let pingresp: [UInt8] = [0xD0, 0x00]
private let publish200 = packet(0x30, [0x00, 0x03] + text("a/b") + (0..<195).map { UInt8($0 & 0xFF) })

/// Drives `mqtt` the way the bridge does: each read appended to the unframed bytes, then framed
/// until the function asks for more.
private final class MQTTDriver {
    let framer = PeerFramer(function: FramingRegistry.lookup("mqtt")!, config: nil)
    var buffer: [UInt8] = []
    var messages: [[UInt8]] = []
    var failure: String?

    func read(_ bytes: [UInt8]) {
        buffer += bytes
        var last = bytes.count
        while !buffer.isEmpty, failure == nil {
            switch buffer.withUnsafeMutableBytes({ framer.next($0, lastRead: min(last, $0.count)) }) {
            case .needMore: return
            case .failed(let why): failure = why
            case .frame(let n, let opcode):
                #expect(opcode == .binary)
                messages.append(Array(buffer[0..<n]))
                buffer.removeFirst(n)
                last = max(0, last - n)
            }
        }
    }
}

private func decode(_ bytes: [UInt8]) -> MQTTFixedHeader.Decoded {
    bytes.withUnsafeBytes { MQTTFixedHeader.decode($0) }
}

@Suite struct MQTTFramingTests {
    @Test func onePacketPerMessage() {
        let d = MQTTDriver()
        d.read(connack)
        #expect(d.messages == [connack] && d.buffer.isEmpty)
    }

    @Test func zeroLengthPackets() {
        let d = MQTTDriver()
        d.read(pingreq)
        d.read(pingresp)
        #expect(d.messages == [pingreq, pingresp])
    }

    @Test func severalPacketsInOneRead() {
        let d = MQTTDriver()
        d.read(connack + publish200 + pingresp + pingreq + connack.prefix(3))
        #expect(d.messages == [connack, publish200, pingresp, pingreq])
        #expect(d.buffer == Array(connack.prefix(3)))  // an incomplete packet waits for the rest
    }

    /// A stream cut into two reads at every position, inside headers (a 3-byte Remaining Length
    /// too) and payloads; inside the long payload every 1000th position is enough.
    @Test func splitAtEveryPosition() {
        let large = packet(0x32, [UInt8](repeating: 0x5A, count: 20_000))
        let packets = [connack, publish200, pingresp, large, pingreq]
        let stream = packets.flatMap { $0 }
        let largePayload = (connack.count + publish200.count + pingresp.count + 4)..<(stream.count - pingreq.count - 1)
        for cut in 0...stream.count where !largePayload.contains(cut) || cut % 1000 == 0 {
            let d = MQTTDriver()
            d.read(Array(stream[0..<cut]))
            d.read(Array(stream[cut...]))
            #expect(d.messages == packets, "cut at \(cut)")
        }
    }

    @Test func oneByteReads() {
        let packets = [connack, pingresp, publish200, packet(0xE0, []), packet(0x82, [0, 1] + [UInt8](repeating: 7, count: 300))]
        let d = MQTTDriver()
        for byte in packets.flatMap({ $0 }) { d.read([byte]) }
        #expect(d.messages == packets && d.buffer.isEmpty && d.failure == nil)
    }

    /// The boundaries of each Remaining Length size (MQTT 3.1.1 §2.2.3, table 2.4).
    @Test func remainingLengthBoundaries() {
        #expect(decode([0x30, 0x00]) == .header(size: 2, remainingLength: 0))
        #expect(decode([0x30, 0x7F]) == .header(size: 2, remainingLength: 127))
        #expect(decode([0x30, 0x80, 0x01]) == .header(size: 3, remainingLength: 128))
        #expect(decode([0x30, 0xFF, 0x7F]) == .header(size: 3, remainingLength: 16_383))
        #expect(decode([0x30, 0x80, 0x80, 0x01]) == .header(size: 4, remainingLength: 16_384))
        #expect(decode([0x30, 0xFF, 0xFF, 0x7F]) == .header(size: 4, remainingLength: 2_097_151))
        #expect(decode([0x30, 0x80, 0x80, 0x80, 0x01]) == .header(size: 5, remainingLength: 2_097_152))
        #expect(decode([0x30, 0xFF, 0xFF, 0xFF, 0x7F]) == .header(size: 5, remainingLength: 268_435_455))
        // Longer than needed is not forbidden by 3.1.1; it is still one packet.
        #expect(decode([0x30, 0x80, 0x00]) == .header(size: 3, remainingLength: 0))
        #expect(decode([]) == .needMore)
        #expect(decode([0x30]) == .needMore)
        #expect(decode([0x30, 0xFF, 0xFF, 0xFF]) == .needMore)
    }

    /// The largest packet asks for more, however much of it is there: the bridge's `peer-buffer`
    /// cap then closes with 1009. Nothing is read past the buffer.
    @Test func maximumLengthNeedsMore() {
        let d = MQTTDriver()
        d.read([0x30, 0xFF, 0xFF, 0xFF, 0x7F])
        d.read([UInt8](repeating: 0, count: 1 << 20))
        #expect(d.messages.isEmpty && d.failure == nil && d.buffer.count == 5 + (1 << 20))
    }

    /// A fourth Remaining Length byte with the continuation bit set promises a fifth: Malformed
    /// Packet. The framing fails as soon as that byte is there, in any read.
    @Test func fifthLengthByteFails() {
        #expect(decode([0x30, 0x80, 0x80, 0x80, 0x80]) == .malformed)
        #expect(decode([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]) == .malformed)
        let d = MQTTDriver()
        d.read(connack + [0x30, 0xFF, 0xFF])
        #expect(d.failure == nil)
        d.read([0xFF])
        #expect(d.failure == nil)
        d.read([0x80])
        #expect(d.messages == [connack])
        #expect(d.failure?.contains("reported an error") == true)
    }

    /// An incomplete packet is not a message: what is left when the peer closes is dropped.
    @Test func remainderAtCloseIsDropped() {
        let framer = PeerFramer(function: FramingRegistry.lookup("mqtt")!, config: nil)
        #expect(Array(publish200.prefix(50)).withUnsafeBytes { framer.remainderAtClose($0) } == nil)
        #expect(BuiltinFraming.kind(of: BuiltinFraming.mqtt) == nil)
    }

    /// Datagram peers are cut like a stream, as `separator` and `newline` are: each packet is one
    /// message whether a datagram holds one packet, several, or part of one.
    @Test func datagramPeersCutByTheHeader() {
        let framer = PeerFramer(function: FramingRegistry.lookup("mqtt")!, config: nil, datagram: true)
        var datagram = connack + pingresp
        #expect(datagram.withUnsafeMutableBytes { framer.next($0, lastRead: $0.count) } == .frame(length: 4, opcode: .binary))
    }

    @Test func registeredWithoutConfiguration() throws {
        #expect(FramingRegistry.names.contains("mqtt"))
        #expect(FramingRegistry.name(of: BuiltinFraming.mqtt) == "mqtt")
        try FramingRegistry.validate(name: "mqtt", config: nil)
        try FramingRegistry.validate(name: "mqtt", config: "ignored, as by binary")
        // A configuration changes nothing.
        let framer = PeerFramer(function: BuiltinFraming.mqtt, config: FramingConfig("\\n"))
        var bytes = pingresp + connack
        #expect(bytes.withUnsafeMutableBytes { framer.next($0, lastRead: $0.count) } == .frame(length: 2, opcode: .binary))
    }

    /// The end-of-connection call with NULL data has nothing to free and succeeds.
    @Test func nullDataCall() {
        var opcode = ws_frame_binary
        var state: UnsafeMutableRawPointer?
        #expect(BuiltinFraming.mqtt(nil, 0, 0, &opcode, &state, "") == 0)
        #expect(state == nil)
    }
}
