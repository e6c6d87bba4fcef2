/// Version 2: the binary header. After the 12-byte signature: version and command (one byte),
/// family and transport (one byte), the length of what follows (two bytes, big endian), then the
/// address block and optional TLVs.
extension ProxyProtocol {
    private static let fixedLength = 16

    private enum Command: UInt8 {
        /// Health checks and the proxy's own connections: the real endpoints stand.
        case local = 0
        case proxy = 1
    }

    /// The family and transport byte. The spec defines seven values and says to reject the rest.
    private enum AddressFamily {
        case unspecified, inet, inet6, unix

        init?(_ byte: UInt8) {
            switch byte {
            case 0x00: self = .unspecified
            case 0x11, 0x12: self = .inet    // TCP or UDP over IPv4
            case 0x21, 0x22: self = .inet6
            case 0x31, 0x32: self = .unix
            default: return nil
            }
        }

        /// Two addresses then two ports; AF_UNIX has two 108-byte paths and no ports.
        var blockLength: Int {
            switch self {
            case .unspecified: 0
            case .inet: 12
            case .inet6: 36
            case .unix: 216
            }
        }
    }

    /// `bytes` starts with the 12-byte signature. Version and command are checked as soon as
    /// their byte is in, so a wrong header is refused without waiting for its length.
    static func parseV2(_ bytes: UnsafeRawBufferPointer) -> ProxyProtocolParse {
        let signatureLength = v2Signature.count
        var command: Command?
        if bytes.count > signatureLength {
            let versionCommand = bytes[signatureLength]
            guard versionCommand >> 4 == 2 else { return .invalid("version \(versionCommand >> 4) is not 2") }
            command = Command(rawValue: versionCommand & 0x0F)
            guard command != nil else { return .invalid("unknown command") }
        }
        // LOCAL ignores the family (spec §2.2), so only PROXY has it checked.
        if bytes.count > signatureLength + 1, command == .proxy, AddressFamily(bytes[signatureLength + 1]) == nil {
            return .invalid("unknown address family or transport")
        }
        guard bytes.count >= fixedLength, let command else { return .incomplete }
        let length = Int(bytes[14]) << 8 | Int(bytes[15])
        let total = fixedLength + length
        guard total <= maximumLength else { return .invalid("header longer than \(maximumLength) bytes") }
        guard bytes.count >= total else { return .incomplete }

        var header = ProxyProtocolHeader(version: 2, source: nil, destination: nil)
        guard command == .proxy, let family = AddressFamily(bytes[13]), family != .unspecified else {
            // LOCAL or UNSPEC: the block says nothing to use, so it is skipped unread.
            return .header(header, consumed: total)
        }
        let block = UnsafeRawBufferPointer(rebasing: bytes[fixedLength..<total])
        guard block.count >= family.blockLength else { return .invalid("address block too short") }
        guard tlvsFit(UnsafeRawBufferPointer(rebasing: block[family.blockLength...])) else {
            return .invalid("TLV overruns the header")
        }
        if family != .unix {
            let size = family == .inet ? 4 : 16
            header.source = ProxiedAddress(ip: Array(block[0..<size]), port: bigEndian16(block, 2 * size))
            header.destination = ProxiedAddress(ip: Array(block[size..<2 * size]), port: bigEndian16(block, 2 * size + 2))
        }
        return .header(header, consumed: total)
    }

    /// A v2 PROXY header (command PROXY, STREAM) announcing `source` → `destination`, for a peer
    /// behind the gateway. Two IPv4 addresses go as INET; otherwise both go as INET6, an IPv4 one
    /// as IPv4-mapped, since the header has one family for both ends.
    public static func encodeV2(source: ProxiedAddress, destination: ProxiedAddress) -> [UInt8] {
        precondition([4, 16].contains(source.ip.count) && [4, 16].contains(destination.ip.count),
                     "a proxied address is 4 or 16 bytes")
        let inet = source.ip.count == 4 && destination.ip.count == 4
        let from = inet ? source.ip : AddressRange.mapped(source.ip)
        let to = inet ? destination.ip : AddressRange.mapped(destination.ip)
        let length = from.count + to.count + 4
        var out = v2Signature
        out += [0x20 | Command.proxy.rawValue, inet ? 0x11 : 0x21, UInt8(length >> 8), UInt8(length & 0xFF)]
        out += from + to
        out += [UInt8(source.port >> 8), UInt8(source.port & 0xFF), UInt8(destination.port >> 8), UInt8(destination.port & 0xFF)]
        return out
    }

    /// A v2 LOCAL header: "no client to announce" (a client on a Unix-socket listener), which a
    /// peer expecting a header takes without error, keeping the connection's own addresses.
    static let v2Local: [UInt8] = v2Signature + [0x20 | Command.local.rawValue, 0x00, 0x00, 0x00]

    /// TLVs are skipped, but each must lie wholly inside the header: a chain that runs past the
    /// length field means the sender and this parser disagree about where the client's bytes start.
    private static func tlvsFit(_ tlvs: UnsafeRawBufferPointer) -> Bool {
        var position = 0
        while position < tlvs.count {
            guard position + 3 <= tlvs.count else { return false }
            position += 3 + Int(bigEndian16(tlvs, position + 1))
        }
        return position == tlvs.count
    }

    private static func bigEndian16(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
        UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }
}
