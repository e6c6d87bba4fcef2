import Glibc

/// Fixed-size blocks for the first 64 KiB of connection buffers, lent while bytes are in them and
/// given back as soon as they are drained, so an idle connection holds no buffer at all.
///
/// Why not malloc: a read buffer held by each new connection for the second until the sweep
/// noticed it idle put some 340 MB of 64 KiB chunks into malloc's heap during a ramp-up of 10 000
/// connections, and the connections' small objects landed between them; freed, those chunks could
/// not go back to the system (the heap shrinks only at its top), so each idle connection cost
/// 3.9 KB of RSS for 1.7 KB of live objects. Blocks are mapped on their own, outside the heap,
/// reused last-in first-out (the most recently used one is the one still in cache), and unmapped
/// when the pool holds more than the last interval needed.
///
/// One per loop; not thread-safe.
public final class BlockPool {
    public let blockSize: Int
    private var free: [UnsafeMutableRawPointer] = []
    /// Blocks lent and not given back.
    public private(set) var lent = 0
    /// The fewest blocks the free list held since the last trim: that many were not needed.
    private var leastFree = 0
    /// Free blocks kept through a trim, for the next burst.
    let reserve: Int

    public init(blockSize: Int = 65536, reserve: Int = 8) {
        self.blockSize = blockSize
        self.reserve = reserve
        free.reserveCapacity(1024)
    }

    deinit {
        for block in free { munmap(block, blockSize) }
    }

    /// Blocks mapped: lent plus free.
    public var mapped: Int { lent + free.count }

    @inline(__always)
    func take() -> UnsafeMutableRawPointer {
        lent += 1
        if let block = free.popLast() {
            if free.count < leastFree { leastFree = free.count }
            return block
        }
        guard let block = mmap(nil, blockSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              block != MAP_FAILED else {
            fatalError("out of memory mapping a \(blockSize)-byte buffer block")
        }
        leastFree = 0
        return block
    }

    @inline(__always)
    func give(_ block: UnsafeMutableRawPointer) {
        lent -= 1
        free.append(block)
    }

    /// Unmaps the free blocks the interval since the last trim never reached for, down to the
    /// reserve; the coldest (longest unused) go first. Called from the periodic sweep.
    public func trim() {
        let surplus = min(leastFree, free.count - reserve)
        if surplus > 0 {
            for block in free[0..<surplus] { munmap(block, blockSize) }
            free.removeFirst(surplus)
        }
        leastFree = free.count
    }
}
