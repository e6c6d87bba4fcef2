/// A latency histogram with fixed buckets, in the shape Prometheus expects (cumulative `le`
/// buckets, a sum and a count). Observing is a short scan and two additions: no allocation.
struct Histogram {
    /// Upper bounds in microseconds: 0.5 ms to 10 s, for peer connects and backend queries.
    static let bounds: [Int] = [500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
                                500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000]

    /// Per bucket, not cumulative; the last counts what is above every bound.
    private(set) var counts = [Int](repeating: 0, count: Histogram.bounds.count + 1)
    private(set) var sumMicroseconds = 0
    private(set) var count = 0

    mutating func observe(microseconds: Int) {
        var i = 0
        while i < Self.bounds.count && microseconds > Self.bounds[i] { i += 1 }
        counts[i] += 1
        sumMicroseconds += microseconds
        count += 1
    }
}
