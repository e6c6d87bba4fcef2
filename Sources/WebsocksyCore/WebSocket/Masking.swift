/// Client-to-server masking (RFC 6455 §5.3): payload byte i is XORed with key byte (i mod 4).
public enum Masking {
    /// Unmasks (or masks: XOR is its own inverse) `bytes` in place. `key` holds the four key bytes in
    /// wire order as a little-endian load; `offset` is how many payload bytes of this frame came before
    /// `bytes`, so a frame can be processed in chunks. Works 8 bytes at a time.
    @inlinable
    public static func apply(key: UInt32, offset: Int, to bytes: UnsafeMutableRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        let count = bytes.count
        // Rotate the key so that byte 0 of `bytes` meets key byte (offset mod 4).
        let shift = UInt32((offset & 3) * 8)
        let rotated = shift == 0 ? key : (key >> shift) | (key << (32 - shift))
        let wide = UInt64(rotated) | (UInt64(rotated) << 32)
        var i = 0
        while i + 8 <= count {
            let word = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            base.storeBytes(of: word ^ wide, toByteOffset: i, as: UInt64.self)
            i += 8
        }
        var k = rotated
        // The remainder (fewer than 8 bytes) one at a time; after 8 bytes the key phase is unchanged.
        var step = 0
        while i < count {
            if step == 4 { k = rotated; step = 0 }
            let b = base.load(fromByteOffset: i, as: UInt8.self) ^ UInt8(truncatingIfNeeded: k)
            base.storeBytes(of: b, toByteOffset: i, as: UInt8.self)
            k >>= 8
            step += 1
            i += 1
        }
    }
}
