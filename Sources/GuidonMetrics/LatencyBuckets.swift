/// The fixed buckets of `guidon_request_duration_seconds`: upper bounds of 1, 2 and 5 times each
/// power of ten from 1 µs to 1 s, then `+Inf`.
///
/// A request line takes 2–10 µs in the daemon on an idle machine (the `recv`, the answer and the
/// `send`), tens of µs on a busy one and in large pipelined bursts; steps of 2–2.5× give
/// percentiles within that factor from 20 counters, and the bounds read as round numbers in
/// Prometheus (`le="5e-06"`).
public enum LatencyBuckets {
    /// Upper bounds in nanoseconds (inclusive), without `+Inf`.
    public static let boundsNanoseconds: [UInt64] = {
        var bounds: [UInt64] = []
        var decade: UInt64 = 1_000
        while decade <= 1_000_000_000 {
            for step: UInt64 in [1, 2, 5] where decade * step <= 1_000_000_000 { bounds.append(decade * step) }
            decade *= 10
        }
        return bounds
    }()

    /// Buckets including `+Inf`.
    public static let count = boundsNanoseconds.count + 1

    /// The bucket of a duration: the first of the `finite` `bounds` that is at least
    /// `nanoseconds`, else `finite` (`+Inf`). (The bounds are passed in so that the request
    /// path reads no global.)
    @inlinable
    public static func index(_ nanoseconds: UInt64, bounds: UnsafePointer<UInt64>, finite: Int) -> Int {
        var i = 0
        while i < finite && nanoseconds > bounds[i] { i += 1 }
        return i
    }

    /// The bound as Prometheus writes it (`1e-06`, `0.002`, `+Inf`).
    public static func label(_ index: Int) -> String {
        guard index < boundsNanoseconds.count else { return "+Inf" }
        return secondsText(boundsNanoseconds[index])
    }

    /// A bound in seconds, shortest exact text.
    static func secondsText(_ nanoseconds: UInt64) -> String {
        let seconds = Double(nanoseconds) / 1e9
        return seconds == 1 ? "1" : "\(seconds)"
    }

    /// The `q` quantile (0…1) of the observations counted in `counts` (one per bucket, not
    /// cumulative), in nanoseconds, interpolated linearly within its bucket as Prometheus'
    /// `histogram_quantile` does; `nil` when nothing was counted. A quantile in `+Inf` is
    /// reported as the last finite bound.
    public static func quantile(_ q: Double, counts: [UInt64]) -> Double? {
        let total = counts.reduce(0, +)
        guard total > 0 else { return nil }
        let rank = q * Double(total)
        var below: UInt64 = 0
        for (i, count) in counts.enumerated() {
            if count > 0 && Double(below + count) >= rank {
                guard i < boundsNanoseconds.count else { return Double(boundsNanoseconds.last!) }
                let lower = i == 0 ? 0 : Double(boundsNanoseconds[i - 1])
                let upper = Double(boundsNanoseconds[i])
                let within = max(0, rank - Double(below)) / Double(count)
                return lower + (upper - lower) * within
            }
            below += count
        }
        return Double(boundsNanoseconds.last!)
    }
}
