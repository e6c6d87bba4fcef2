import Glibc

/// A growable byte queue over one block of memory: bytes are appended at the writer index and
/// consumed from the reader index. It is owned by exactly one connection (`~Copyable`), allocates
/// nothing until first used, and gives its memory back when drained so idle connections stay small.
///
/// With a `BlockPool`, up to a block's size is borrowed from the pool (and handed back the moment
/// it is drained: `releaseBlockIfEmpty`); more than that moves to malloc'd memory, grown by doubling.
public struct ByteBuffer: ~Copyable {
    @usableFromInline var base: UnsafeMutableRawPointer?
    @usableFromInline var capacity: Int = 0
    @usableFromInline var readerIndex: Int = 0
    @usableFromInline var writerIndex: Int = 0
    private let pool: BlockPool?
    /// `base` is the pool's block, not malloc's.
    private var isBlock = false

    public init(pool: BlockPool? = nil) {
        self.pool = pool
    }

    deinit {
        if isBlock { pool!.give(base!) } else { free(base) }
    }

    @inlinable public var count: Int { writerIndex - readerIndex }
    @inlinable public var isEmpty: Bool { writerIndex == readerIndex }
    /// Bytes held in memory, for accounting (includes free space).
    public var allocatedBytes: Int { capacity }

    /// The unconsumed bytes, valid until the next mutating call.
    @inlinable public var readable: UnsafeMutableRawBufferPointer {
        guard let base else { return UnsafeMutableRawBufferPointer(start: nil, count: 0) }
        return UnsafeMutableRawBufferPointer(start: base + readerIndex, count: writerIndex - readerIndex)
    }

    /// Makes room for at least `minimum` more bytes and returns the free tail to write into;
    /// call `commit(_:)` with what was written.
    public mutating func writableTail(minimum: Int) -> UnsafeMutableRawBufferPointer {
        if capacity - writerIndex < minimum {
            makeRoom(minimum)
        }
        return UnsafeMutableRawBufferPointer(start: base! + writerIndex, count: capacity - writerIndex)
    }

    @inlinable public mutating func commit(_ written: Int) {
        precondition(written >= 0 && writerIndex + written <= capacity)
        writerIndex += written
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        let tail = writableTail(minimum: bytes.count)
        tail.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        writerIndex += bytes.count
    }

    public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// Drops `n` bytes from the front. A drained buffer rewinds to the start of its block.
    @inlinable public mutating func consume(_ n: Int) {
        precondition(n >= 0 && n <= count)
        readerIndex += n
        if readerIndex == writerIndex {
            readerIndex = 0
            writerIndex = 0
        }
    }

    public mutating func removeAll() {
        readerIndex = 0
        writerIndex = 0
    }

    /// Frees the memory if the buffer is empty: called when a connection goes idle.
    public mutating func releaseIfEmpty() {
        guard isEmpty, let base else { return }
        if isBlock { pool!.give(base) } else { free(base) }
        self.base = nil
        capacity = 0
        isBlock = false
    }

    /// Gives a drained pool block back (a few instructions: called after every read and flush);
    /// malloc'd memory, grown past a block for a large message, is kept until the buffer idles.
    @inline(__always)
    public mutating func releaseBlockIfEmpty() {
        if isBlock && readerIndex == writerIndex { releaseIfEmpty() }
    }

    private mutating func makeRoom(_ minimum: Int) {
        let live = count
        // Slide live bytes to the front when that alone makes enough room.
        if let base, readerIndex > 0, capacity - live >= minimum {
            memmove(base, base + readerIndex, live)
            readerIndex = 0
            writerIndex = live
            return
        }
        if base == nil, let pool, minimum <= pool.blockSize, let block = pool.take() {
            base = block
            capacity = pool.blockSize
            isBlock = true
            return
        }
        var newCapacity = max(capacity, 4096)
        while newCapacity - live < minimum { newCapacity *= 2 }
        if isBlock, let block = base {
            // Outgrew the block: the bytes move to malloc'd memory and the block goes back.
            guard let grown = malloc(newCapacity) else {
                fatalError("out of memory growing a buffer to \(newCapacity) bytes")
            }
            grown.copyMemory(from: block + readerIndex, byteCount: live)
            pool!.give(block)
            isBlock = false
            base = grown
            capacity = newCapacity
            readerIndex = 0
            writerIndex = live
            return
        }
        if readerIndex > 0, let base {
            memmove(base, base + readerIndex, live)
        }
        guard let grown = realloc(base, newCapacity) else {
            fatalError("out of memory growing a buffer to \(newCapacity) bytes")
        }
        base = grown
        capacity = newCapacity
        readerIndex = 0
        writerIndex = live
    }
}
