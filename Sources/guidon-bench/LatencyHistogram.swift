/// A log-linear histogram of durations in nanoseconds: exact below 256 ns, then 128
/// sub-buckets per power of two (a quantile is off by at most 0.4 %). Recording is an
/// index computation and an increment, so the load client can record every reply.
struct LatencyHistogram: Sendable {
    private static let subBucketBits = 7
    private static let subBuckets = 1 << subBucketBits
    private static let bucketCount = (64 - subBucketBits) * subBuckets

    private var counts: [UInt64]
    private(set) var count: UInt64 = 0
    private(set) var sum: UInt64 = 0
    private(set) var min: UInt64 = .max
    private(set) var max: UInt64 = 0

    init() {
        counts = [UInt64](repeating: 0, count: Self.bucketCount)
    }

    @inline(__always)
    private static func index(of value: UInt64) -> Int {
        let exponent = 63 - value.leadingZeroBitCount
        if exponent <= subBucketBits { return Int(value) }
        let shift = exponent - subBucketBits
        return (shift + 1) * subBuckets + Int(value >> UInt64(shift)) - subBuckets
    }

    /// The middle of bucket `index`'s range.
    private static func value(at index: Int) -> UInt64 {
        if index < 2 * subBuckets { return UInt64(index) }
        let shift = index / subBuckets - 1
        let lower = UInt64(index % subBuckets + subBuckets) << UInt64(shift)
        return lower + (UInt64(1) << UInt64(shift)) / 2
    }

    @inline(__always)
    mutating func record(_ nanos: UInt64) {
        counts[Self.index(of: nanos)] &+= 1
        count &+= 1
        sum &+= nanos
        if nanos < min { min = nanos }
        if nanos > max { max = nanos }
    }

    mutating func merge(_ other: LatencyHistogram) {
        guard other.count > 0 else { return }
        for i in counts.indices { counts[i] &+= other.counts[i] }
        count += other.count
        sum += other.sum
        min = Swift.min(min, other.min)
        max = Swift.max(max, other.max)
    }

    /// The value at quantile `q` (0...1), in nanoseconds; 0 when empty.
    func quantile(_ q: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        if q >= 1 { return max }
        let rank = Swift.max(1, UInt64((q * Double(count)).rounded(.up)))
        var seen: UInt64 = 0
        for (i, c) in counts.enumerated() where c > 0 {
            seen += c
            if seen >= rank { return Swift.min(Swift.max(Self.value(at: i), min), max) }
        }
        return max
    }

    var mean: Double { count == 0 ? 0 : Double(sum) / Double(count) }
}
