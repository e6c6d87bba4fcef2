import Glibc

/// What all compressed connections of the process share. The event loop works on one message at
/// a time, so one output buffer each way serves every connection; a compressor with no context
/// takeover is reset after each message and can serve every connection too; inflaters for clients
/// without context takeover are lent for the length of one message. An idle compressed connection
/// then holds zlib state only for the windows it must keep.
public final class CompressionPool {
    /// Inflated bytes are handed out in chunks of at most this size (the bounded step of a
    /// decompression: a small message that inflates to gigabytes is checked every 64 KiB).
    static let chunkSize = 64 << 10
    /// Idle lent inflaters kept for reuse; more are freed.
    static let keptInflaters = 16

    let settings: DeflateSettings
    private var inflateBuffer: UnsafeMutableRawBufferPointer?
    private var deflateBuffer: UnsafeMutableRawBufferPointer?
    private var idleInflaters: [Inflater] = []
    /// Compressors for connections without context takeover, by window bits.
    private var sharedDeflaters: [Int: Deflater] = [:]

    public init(settings: DeflateSettings) {
        self.settings = settings
    }

    deinit {
        inflateBuffer?.deallocate()
        deflateBuffer?.deallocate()
    }

    /// Where inflated bytes go; valid until the next inflation step of any connection.
    var inflateOutput: UnsafeMutableRawBufferPointer {
        if let inflateBuffer { return inflateBuffer }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.chunkSize, alignment: 16)
        inflateBuffer = buffer
        return buffer
    }

    /// Where compressed bytes go; valid until the next message is compressed.
    var deflateOutput: UnsafeMutableRawBufferPointer {
        if let deflateBuffer { return deflateBuffer }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.chunkSize, alignment: 16)
        deflateBuffer = buffer
        return buffer
    }

    /// An inflater with a full window (it accepts any client window) for one message.
    func lendInflater() -> Inflater? {
        idleInflaters.popLast() ?? Inflater(windowBits: 15)
    }

    func returnInflater(_ inflater: Inflater) {
        guard idleInflaters.count < Self.keptInflaters else { return }
        inflater.reset()
        idleInflaters.append(inflater)
    }

    /// The compressor shared by connections that keep no context, for a window size.
    func sharedDeflater(windowBits: Int) -> Deflater? {
        if let deflater = sharedDeflaters[windowBits] { return deflater }
        let deflater = Deflater(level: settings.level, windowBits: windowBits, memoryLevel: settings.memoryLevel(windowBits))
        sharedDeflaters[windowBits] = deflater
        return deflater
    }
}
