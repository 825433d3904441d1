public import GuidonEngine
import GuidonJSON

/// Where each flag's evaluation counters lie in a loop's flat array, for one snapshot: flag `i`
/// has one row per variant plus one for results without a variant, each row one counter per
/// reason, from `offsets[i]` to `offsets[i + 1]`. Also which flags ask for exposure events
/// (`metadata.trackEvents: true`).
///
/// Built once per snapshot (by the first loop that takes it, or ahead of them; see
/// `MetricsRegistry.layout(for:)`), shared by every loop, and kept by a loop's counters only:
/// it holds the flags' names, not the snapshot, so a replaced snapshot is freed as before.
///
/// `@unchecked Sendable`: written in `init`, only read afterwards.
public final class EvaluationLayout: @unchecked Sendable {
    public let keys: [String]
    /// Each flag's variant names, in document order (the engine's variant indexes).
    public let variants: [[String]]
    /// `keys.count + 1` row starts; the last is the array's size.
    @usableFromInline let offsets: UnsafeMutablePointer<Int>
    /// Whether flag `i` asks for exposure events.
    @usableFromInline let tracked: UnsafeMutablePointer<Bool>
    public let anyTracked: Bool
    public var slotCount: Int { offsets[keys.count] }

    /// Counters per row: one per reason (`MetricTable.reasons`).
    @inlinable static var rowWidth: Int { 5 }

    public init(_ snapshot: Snapshot) {
        let flags = snapshot.flags
        keys = flags.map(\.key)
        variants = flags.map(\.variants)
        offsets = .allocate(capacity: flags.count + 1)
        tracked = .allocate(capacity: max(1, flags.count))
        var offset = 0
        var any = false
        for (i, flag) in flags.enumerated() {
            offsets[i] = offset
            offset += (flag.variants.count + 1) * Self.rowWidth
            let wants = flag.metadata["trackEvents"] == .bool(true)
            tracked[i] = wants
            any = any || wants
        }
        offsets[flags.count] = offset
        anyTracked = any
    }

    deinit {
        offsets.deallocate()
        tracked.deallocate()
    }

    /// The counter of flag `position` serving `variant` (or none) for the reason at `reason`.
    @inlinable
    func slot(_ position: Int, variant: Int?, reason: Int) -> Int {
        let row = variant.map { offsets[position] + $0 * Self.rowWidth } ?? (offsets[position + 1] - Self.rowWidth)
        return row + reason
    }

    @inlinable
    public func isTracked(_ position: Int) -> Bool { tracked[position] }

    /// Calls `body` with the flag, variant (`""` for none) and reason index of every slot in
    /// `[0, slotCount)` whose count is not zero.
    func forEachCounted(_ counts: (Int) -> UInt64, _ body: (_ flag: String, _ variant: String, _ reason: Int, _ count: UInt64) -> Void) {
        for (i, key) in keys.enumerated() {
            let names = variants[i]
            var slot = offsets[i]
            for row in 0...names.count {
                for reason in 0..<Self.rowWidth {
                    let count = counts(slot)
                    if count != 0 { body(key, row < names.count ? names[row] : "", reason, count) }
                    slot += 1
                }
            }
        }
    }
}
