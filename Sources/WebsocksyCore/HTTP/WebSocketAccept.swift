import CNettle

/// `Sec-WebSocket-Accept` (RFC 6455 §4.2.2 step 5.4): base64 of the SHA-1 of the key and the GUID.
public enum WebSocketAccept {
    static let guid: StaticString = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    public static func value(forKey key: String) -> String {
        var out: [UInt8] = []
        append(forKey: key, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the 28 base64 characters of the accept value for `key` to `out`.
    static func append(forKey key: String, to out: inout [UInt8]) {
        var ctx = sha1_ctx()
        nettle_sha1_init(&ctx)
        var key = key
        key.withUTF8 { nettle_sha1_update(&ctx, $0.count, $0.baseAddress) }
        nettle_sha1_update(&ctx, guid.utf8CodeUnitCount, guid.utf8Start)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Int(SHA1_DIGEST_SIZE)) { digest in
            nettle_sha1_digest(&ctx, digest.count, digest.baseAddress)
            let start = out.count
            out.append(contentsOf: repeatElement(0, count: 28))
            out.withUnsafeMutableBytes { dst in
                nettle_base64_encode_raw(dst.baseAddress!.advanced(by: start).assumingMemoryBound(to: CChar.self),
                                         digest.count, digest.baseAddress)
            }
        }
    }

    /// Whether a `Sec-WebSocket-Key` is the base64 of exactly 16 bytes (§4.1): 24 characters, "==" last.
    public static func isValidKey(_ key: String) -> Bool {
        var key = key
        return key.withUTF8 { isValidKey(UnsafeRawBufferPointer($0)) }
    }

    static func isValidKey(_ key: UnsafeRawBufferPointer) -> Bool {
        guard key.count == 24, key[22] == UInt8(ascii: "="), key[23] == UInt8(ascii: "=") else { return false }
        var ctx = base64_decode_ctx()
        nettle_base64_decode_init(&ctx)
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 24) { out in
            var outLength = out.count
            let src = key.baseAddress!.assumingMemoryBound(to: CChar.self)
            return nettle_base64_decode_update(&ctx, &outLength, out.baseAddress!, key.count, src) == 1
                && nettle_base64_decode_final(&ctx) == 1 && outLength == 16
        }
    }
}
