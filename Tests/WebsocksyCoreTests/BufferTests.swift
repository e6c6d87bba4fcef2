import Glibc
import Testing
@testable import WebsocksyCore

@Suite struct ByteBufferTests {
    @Test func appendConsumeGrowAndRelease() {
        var b = ByteBuffer()
        let initiallyEmpty = b.isEmpty, initialAllocation = b.allocatedBytes
        #expect(initiallyEmpty && initialAllocation == 0)
        b.append([1, 2, 3])
        b.consume(1)
        #expect(Array(b.readable) == [2, 3])
        let big = [UInt8](repeating: 9, count: 10000)
        b.append(big)
        let count = b.count
        #expect(count == 10002)
        #expect(Array(b.readable.prefix(3)) == [2, 3, 9])
        b.consume(10002)
        let drained = b.isEmpty
        #expect(drained)
        b.releaseIfEmpty()
        let released = b.allocatedBytes
        #expect(released == 0)
    }

    @Test func compactsInsteadOfGrowing() {
        var b = ByteBuffer()
        b.append([UInt8](repeating: 1, count: 4000))
        let capacity = b.allocatedBytes
        b.consume(3990)
        b.append([UInt8](repeating: 2, count: 4000))
        let after = b.allocatedBytes, count = b.count
        #expect(after == capacity)
        #expect(count == 4010)
    }
}

/// Buffers hold their pool unretained (the server's outlives them): each test keeps its pool alive
/// until its buffers are gone.
@Suite struct BlockPoolTests {
    @Test func bufferBorrowsABlockOnlyWhileBytesAreInIt() {
        let pool = BlockPool(blockSize: 4096, reserve: 1)
        withExtendedLifetime(pool) {
            var b = ByteBuffer(pool: pool)
            #expect(pool.lent == 0)
            b.append([1, 2, 3])
            #expect(pool.lent == 1 && b.allocatedBytes == 4096)
            b.releaseBlockIfEmpty()
            #expect(pool.lent == 1)  // not drained: kept
            b.consume(3)
            b.releaseBlockIfEmpty()
            #expect(pool.lent == 0 && pool.resident == 1 && b.allocatedBytes == 0)
            b.append([4])
            #expect(pool.lent == 1 && pool.resident == 1)  // the same block again
        }
    }

    @Test func outgrowingTheBlockMovesTheBytesToMallocAndReturnsIt() {
        let pool = BlockPool(blockSize: 4096, reserve: 0)
        withExtendedLifetime(pool) {
            var b = ByteBuffer(pool: pool)
            b.append([UInt8](repeating: 7, count: 4000))
            b.consume(1000)
            b.append([UInt8](repeating: 8, count: 3000))
            #expect(pool.lent == 0 && b.allocatedBytes == 8192)
            let bytes = Array(b.readable)
            #expect(bytes.count == 6000 && bytes.first == 7 && bytes[2999] == 7 && bytes[3000] == 8 && bytes.last == 8)
            b.consume(6000)
            b.releaseBlockIfEmpty()
            #expect(b.allocatedBytes == 8192)  // malloc'd memory waits for the idle release
            b.releaseIfEmpty()
            #expect(b.allocatedBytes == 0 && pool.lent == 0)
        }
    }

    @Test func aDroppedBufferGivesItsBlockBack() {
        let pool = BlockPool(blockSize: 4096)
        do {
            var b = ByteBuffer(pool: pool)
            b.append([1])
            #expect(pool.lent == 1)
        }
        #expect(pool.lent == 0 && pool.resident == 1)
        withExtendedLifetime(pool) {}
    }

    @Test func trimReleasesWhatTheLastIntervalDidNotNeed() {
        let size = 16384
        let pool = BlockPool(blockSize: size, reserve: 2)
        var blocks = (0..<10).map { _ in pool.take()! }
        #expect(pool.lent == 10 && pool.resident == 10)
        #expect(Set(blocks).count == 10)
        for block in blocks { (block + size / 2).storeBytes(of: 0xAB, as: UInt8.self); pool.give(block) }
        pool.trim()  // the interval needed all ten
        #expect(pool.lent == 0 && pool.resident == 10)
        blocks = (0..<3).map { _ in pool.take()! }  // this interval needs three
        for block in blocks { pool.give(block) }
        pool.trim()
        #expect(pool.resident == 3)
        pool.trim()  // nothing needed since: down to the reserve
        #expect(pool.resident == 2)
        // Every block can be taken again; the released ones come back zeroed, still mapped.
        blocks = (0..<10).map { _ in pool.take()! }
        #expect(pool.resident == 10 && pool.lent == 10)
        let zeroed = blocks.filter { ($0 + size / 2).load(as: UInt8.self) == 0 }.count
        #expect(zeroed == 8)
        for block in blocks { pool.give(block) }
    }

    @Test func slabsHoldSixteenColouredBlocks() {
        let pool = BlockPool(blockSize: 4096)
        let blocks = (0..<17).map { _ in pool.take()! }
        let addresses = blocks.prefix(16).map { UInt(bitPattern: $0) }.sorted()
        #expect(addresses.last! - addresses.first! == 15 * UInt(pool.stride))  // one mapping
        // Each at another offset into its page, a whole number of cache lines.
        #expect(Set(addresses.map { $0 % 4096 }).count == 16)
        #expect(addresses.allSatisfy { $0 % 64 == 0 })
        for block in blocks { pool.give(block) }
    }
}
