import CNettle

/// `Sec-WebSocket-Accept` (RFC 6455 §4.2.2 step 5.4): base64 of the SHA-1 of the key and the GUID.
public enum WebSocketAccept {
    static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    public static func value(forKey key: String) -> String {
        var ctx = sha1_ctx()
        nettle_sha1_init(&ctx)
        let input = key + guid
        input.utf8CString.withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: UInt8.self, capacity: p.count) {
                nettle_sha1_update(&ctx, p.count - 1, $0)
            }
        }
        var digest = [UInt8](repeating: 0, count: Int(SHA1_DIGEST_SIZE))
        nettle_sha1_digest(&ctx, digest.count, &digest)
        var encoded = [CChar](repeating: 0, count: 29)
        nettle_base64_encode_raw(&encoded, digest.count, digest)
        return String(decoding: encoded.prefix(28).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether a `Sec-WebSocket-Key` is the base64 of exactly 16 bytes (§4.1): 24 characters, "==" last.
    public static func isValidKey(_ key: String) -> Bool {
        let bytes = Array(key.utf8)
        guard bytes.count == 24, bytes[22] == UInt8(ascii: "="), bytes[23] == UInt8(ascii: "=") else { return false }
        var ctx = base64_decode_ctx()
        nettle_base64_decode_init(&ctx)
        var out = [UInt8](repeating: 0, count: 24)
        var outLength = out.count
        let ok = bytes.withUnsafeBufferPointer { src in
            src.baseAddress!.withMemoryRebound(to: CChar.self, capacity: src.count) {
                nettle_base64_decode_update(&ctx, &outLength, &out, src.count, $0) == 1
            }
        }
        return ok && nettle_base64_decode_final(&ctx) == 1 && outLength == 16
    }
}
