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
    /// The server's pool outlives every connection: held unmanaged, it costs no retain and release
    /// per block taken or given (an `unowned(unsafe)` reference was still retained around each
    /// call: 160 instructions per echoed message, callgrind).
    private let pool: Unmanaged<BlockPool>?
    /// `base` is the pool's block, not malloc's.
    private var isBlock = false

    public init(pool: BlockPool? = nil) {
        self.pool = pool.map { Unmanaged.passUnretained($0) }
    }

    deinit {
        if isBlock { giveBlock() } else { free(base) }
    }

    @inline(__always)
    private func giveBlock() {
        pool.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.give(base.unsafelyUnwrapped) }
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
        if capacity - writerIndex < minimum, !takeBlock(minimum) {
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
        guard isEmpty, base != nil else { return }
        if isBlock { giveBlock() } else { free(base) }
        base = nil
        capacity = 0
        isBlock = false
    }

    /// Gives a drained pool block back (a few instructions: called after every read and flush);
    /// malloc'd memory, grown past a block for a large message, is kept until the buffer idles.
    @inline(__always)
    public mutating func releaseBlockIfEmpty() {
        guard isBlock && readerIndex == writerIndex else { return }
        giveBlock()
        base = nil
        capacity = 0
        readerIndex = 0
        writerIndex = 0
        isBlock = false
    }

    /// An empty buffer borrows a block when `minimum` fits in one: the common case, kept out of
    /// `makeRoom`.
    @inline(__always)
    private mutating func takeBlock(_ minimum: Int) -> Bool {
        guard base == nil, let pool, let block = pool._withUnsafeGuaranteedRef({ minimum <= $0.blockSize ? $0.take() : nil }) else {
            return false
        }
        base = block
        capacity = pool._withUnsafeGuaranteedRef { $0.blockSize }
        isBlock = true
        return true
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
        var newCapacity = max(capacity, 4096)
        while newCapacity - live < minimum { newCapacity *= 2 }
        if isBlock, let block = base {
            // Outgrew the block: the bytes move to malloc'd memory and the block goes back.
            guard let grown = malloc(newCapacity) else {
                fatalError("out of memory growing a buffer to \(newCapacity) bytes")
            }
            grown.copyMemory(from: block + readerIndex, byteCount: live)
            giveBlock()
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
