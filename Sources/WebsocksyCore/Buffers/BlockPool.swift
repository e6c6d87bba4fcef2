import Glibc

/// Fixed-size blocks (128 KiB) for connection buffers, lent while bytes are in them and given back
/// as soon as they are drained, so an idle connection holds no buffer at all.
///
/// Why not malloc: a read buffer held by each new connection for the second until the sweep
/// noticed it idle put some 340 MB of 64 KiB chunks into malloc's heap during a ramp-up of 10 000
/// connections, and the connections' small objects landed between them; freed, those chunks could
/// not go back to the system (the heap shrinks only at its top), so each idle connection cost
/// 3.9 KB of RSS for 1.7 KB of live objects. Blocks live outside the heap, in slabs of 16 mapped
/// at once (a mapping per block could reach the kernel's limit on mappings, 65 530 by default),
/// are reused last-in first-out (the most recently used is the one still in cache), and the ones
/// the last interval did not need give their pages back (`MADV_DONTNEED`; the address range stays).
///
/// Blocks are coloured: each starts 320 bytes further into its page than the one before. Blocks
/// all starting at the same page offset hit the same cache sets when the kernel copies one into a
/// socket while another fills: with them, a 64 KiB stream ran at 0.7x the speed of malloc'd
/// buffers, with three times as much time in `_copy_from_iter` (perf); coloured, it is on par.
/// 128 KiB rather than 64: a 64 KiB message and its header fit in one read.
///
/// One per loop; not thread-safe.
public final class BlockPool {
    public let blockSize: Int
    /// Free blocks, a stack of `freeCount` (a plain array of pointers: a Swift Array's uniqueness
    /// and bounds checks cost some 70 instructions per echoed message). The bottom ones are the
    /// longest unused, and the bottom `released` of them have given their pages back.
    private var free: UnsafeMutablePointer<UnsafeMutableRawPointer>
    private var freeCapacity = 1024
    private var freeCount = 0
    private var released = 0
    /// Blocks lent and not given back.
    public private(set) var lent = 0
    /// The fewest blocks the free list held since the last trim: that many were not needed.
    private var leastFree = 0
    /// Free blocks kept resident through a trim, for the next burst.
    let reserve: Int
    /// The slab blocks are carved from, and how many of its blocks are still uncarved.
    private var slab: UnsafeMutableRawPointer?
    private var slabLeft = 0
    private var slabs: [UnsafeMutableRawPointer] = []
    static let blocksPerSlab = 16
    /// Distance between blocks in a slab: a block and five cache lines (the colouring).
    var stride: Int { blockSize + 320 }
    /// Pages given back per trim at most (a madvise each), so that the sweep stays short.
    static let releasesPerTrim = 1024

    public init(blockSize: Int = 128 << 10, reserve: Int = 8) {
        self.blockSize = blockSize
        self.reserve = reserve
        free = .allocate(capacity: freeCapacity)
    }

    /// Buffers hold their pool: when it goes, no block is lent.
    deinit {
        for slab in slabs { munmap(slab, stride * Self.blocksPerSlab) }
        free.deallocate()
    }

    /// Blocks holding memory: lent, or free and not released.
    public var resident: Int { lent + freeCount - released }

    /// A block, or nil when no memory can be mapped (the caller falls back to malloc).
    @inline(__always)
    func take() -> UnsafeMutableRawPointer? {
        if freeCount > 0 {
            freeCount -= 1
            lent += 1
            if freeCount < leastFree { leastFree = freeCount }
            if freeCount < released { released = freeCount }
            return free[freeCount]
        }
        leastFree = 0
        if slabLeft == 0 {
            let size = stride * Self.blocksPerSlab
            guard let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                  mapped != MAP_FAILED else { return nil }
            slab = mapped
            slabs.append(mapped)
            slabLeft = Self.blocksPerSlab
        }
        slabLeft -= 1
        lent += 1
        return slab! + slabLeft * stride
    }

    @inline(__always)
    func give(_ block: UnsafeMutableRawPointer) {
        lent -= 1
        if freeCount == freeCapacity {
            // Lent blocks come back here: the stack never holds more than were ever mapped.
            let grown = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: 2 * freeCapacity)
            grown.moveInitialize(from: free, count: freeCount)
            free.deallocate()
            free = grown
            freeCapacity *= 2
        }
        free[freeCount] = block
        freeCount += 1
    }

    /// Releases the pages of the free blocks the interval since the last trim never reached for,
    /// down to the reserve, coldest first. Called from the periodic sweep.
    public func trim() {
        let unneeded = min(leastFree, freeCount - reserve, released + Self.releasesPerTrim)
        while released < unneeded {
            releasePages(of: free[released])
            released += 1
        }
        leastFree = freeCount
    }

    private static let pageSize = UInt(sysconf(Int32(_SC_PAGESIZE)))

    /// The whole pages inside a block go back to the system (coloured blocks do not start on a
    /// page: the partial pages at either end are shared with the neighbours and stay).
    private func releasePages(of block: UnsafeMutableRawPointer) {
        let mask = Self.pageSize - 1
        let start = (UInt(bitPattern: block) + mask) & ~mask
        let end = (UInt(bitPattern: block) + UInt(blockSize)) & ~mask
        guard end > start, let first = UnsafeMutableRawPointer(bitPattern: start) else { return }
        madvise(first, Int(end - start), MADV_DONTNEED)
    }
}
