import CZlib

/// A raw-DEFLATE decompressor (zlib inflate) for one message stream. zlib allocates its window on
/// first use, so a stream that has inflated nothing costs only its state (about 7 KiB).
final class Inflater {
    private let stream: UnsafeMutablePointer<z_stream>

    enum Status: Equatable {
        case progress
        /// A block with BFINAL set ended the DEFLATE stream; nothing more of the message is read.
        case streamEnd
        case dataError(String)
    }

    init?(windowBits: Int) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        guard czlib_inflate_init_raw(stream, Int32(windowBits)) == Z_OK else {
            stream.deallocate()
            return nil
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }

    /// Forgets the window: the next message starts a new stream.
    func reset() { inflateReset(stream) }

    /// Starts a new stream after one ended, with the old one's window as its dictionary.
    func restartKeepingWindow() {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1 << 15) { window in
            var length: UInt32 = 0
            inflateGetDictionary(stream, window.baseAddress, &length)
            inflateReset(stream)
            if length > 0 { inflateSetDictionary(stream, window.baseAddress, length) }
        }
    }

    /// Inflates as much of `input` into `output` as fits; returns what was consumed and produced.
    func inflate(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> (consumed: Int, produced: Int, status: Status) {
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: UInt8.self))
        stream.pointee.avail_in = UInt32(input.count)
        stream.pointee.next_out = output.baseAddress?.assumingMemoryBound(to: UInt8.self)
        stream.pointee.avail_out = UInt32(output.count)
        let rc = CZlib.inflate(stream, Z_SYNC_FLUSH)
        let consumed = input.count - Int(stream.pointee.avail_in)
        let produced = output.count - Int(stream.pointee.avail_out)
        stream.pointee.next_in = nil
        stream.pointee.next_out = nil
        switch rc {
        case Z_OK, Z_BUF_ERROR: return (consumed, produced, .progress)
        case Z_STREAM_END: return (consumed, produced, .streamEnd)
        default:
            let why = stream.pointee.msg.map { String(cString: $0) } ?? "zlib error \(rc)"
            return (consumed, produced, .dataError(why))
        }
    }
}

/// A raw-DEFLATE compressor (zlib deflate). Its memory is about 2^(window+2) + 2^(memLevel+9)
/// bytes plus 6 KiB of state (zlib's own formula): 22 KiB at 11 bits and level 4, 262 KiB at 15/8.
final class Deflater {
    private let stream: UnsafeMutablePointer<z_stream>

    /// `windowBits` 8 to 15. zlib cannot make raw streams with an 8-bit window; for a peer that
    /// accepts no more (RFC 7692 allows asking for 8) it runs with 9 bits and only run-length
    /// matches (distance 1), which no window can be too small for.
    init?(level: Int, windowBits: Int, memoryLevel: Int) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let bits = max(9, windowBits), strategy = windowBits < 9 ? Z_RLE : Z_DEFAULT_STRATEGY
        guard czlib_deflate_init_raw(stream, Int32(level), Int32(bits), Int32(memoryLevel), strategy) == Z_OK else {
            stream.deallocate()
            return nil
        }
    }

    deinit {
        deflateEnd(stream)
        stream.deallocate()
    }

    /// Forgets the window: the next message is compressed on its own.
    func reset() { deflateReset(stream) }

    /// Starts compressing `input`; `flush(into:)` then produces the output.
    func begin(_ input: UnsafeRawBufferPointer) {
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: UInt8.self))
        stream.pointee.avail_in = UInt32(input.count)
    }

    /// Compresses with a sync flush (the output ends on a byte boundary with 00 00 ff ff) into
    /// `output`; returns the bytes written, the input taken so far less the output still held
    /// (a measure of the gain), and whether the flush is complete (when not, call again with more
    /// room, as zlib requires).
    func flush(into output: UnsafeMutableRawBufferPointer) -> (produced: Int, heldOutput: Int, inputLeft: Int, complete: Bool) {
        stream.pointee.next_out = output.baseAddress?.assumingMemoryBound(to: UInt8.self)
        stream.pointee.avail_out = UInt32(output.count)
        _ = deflate(stream, Z_SYNC_FLUSH)
        let produced = output.count - Int(stream.pointee.avail_out)
        let complete = stream.pointee.avail_out > 0
        stream.pointee.next_out = nil
        if complete { stream.pointee.next_in = nil }
        var held: UInt32 = 0
        if !complete { deflatePending(stream, &held, nil) }
        return (produced, Int(held), Int(stream.pointee.avail_in), complete)
    }
}
