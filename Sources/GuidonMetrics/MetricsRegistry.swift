public import GuidonEngine
public import GuidonEntitlements
import NIOConcurrencyHelpers

/// Every loop's counters, merged when read.
///
/// Its lock is taken when a loop takes a new configuration (`LoopCounters.adopt`), when a loop
/// is added, and by `collect`; never on the request path.
public final class MetricsRegistry: Sendable {
    private struct State {
        var loops: [LoopCounters] = []
        /// Counts of evaluation arrays that loops have replaced, by flag and variant name:
        /// totals survive reloads, and memory is bounded by the flags that exist plus those
        /// removed since the start.
        var folded: [EvaluationKey: UInt64] = [:]
        /// The layout of the snapshot loops are taking, built once for all of them.
        var cached: (snapshot: Weak<Snapshot>, layout: EvaluationLayout)?
        /// Counts of denial arrays that loops have replaced (a new entitlements document), by
        /// feature key: bounded by the features that exist plus those removed since the start.
        var foldedDenials: [DenialKey: UInt64] = [:]
        /// The denial layout of the entitlements document loops are taking.
        var cachedDenials: (entitlements: Weak<Entitlements>, layout: DenialLayout)?
    }

    private final class Weak<Object: AnyObject>: @unchecked Sendable {
        // Only read and written under the registry's lock.
        weak var object: Object?
        init(_ object: Object) { self.object = object }
    }

    // A pthread-based lock: ThreadSanitizer understands it (as in `Connections`).
    private let state = NIOLockedValueBox(State())
    /// Whether loops count (off: `guidond --no-metrics`).
    public let counting: Bool

    public init(counting: Bool = true) {
        self.counting = counting
    }

    /// Counters for one more loop, laid out for `snapshot`; `exposures` is its queue of exposure
    /// events, when the daemon writes them.
    public func addLoop(serving snapshot: Snapshot, exposures: ExposureQueue? = nil) -> LoopCounters {
        let counters = LoopCounters(registry: self, layout: layout(for: snapshot), counting: counting, exposures: exposures)
        state.withLockedValue { $0.loops.append(counters) }
        return counters
    }

    /// The layout for `snapshot`: the one built for it already, or a new one.
    public func layout(for snapshot: Snapshot) -> EvaluationLayout {
        state.withLockedValue { state in
            if let cached = state.cached, cached.snapshot.object === snapshot { return cached.layout }
            let layout = EvaluationLayout(snapshot)
            state.cached = (Weak(snapshot), layout)
            return layout
        }
    }

    /// The denial layout for the entitlements document `entitlements` (`nil`: none served): the
    /// one built for it already, or a new one.
    public func denialLayout(for entitlements: Entitlements?) -> DenialLayout {
        guard let entitlements else { return .none }
        return state.withLockedValue { state in
            if let cached = state.cachedDenials, cached.entitlements.object === entitlements { return cached.layout }
            let layout = DenialLayout(features: entitlements.features.map(\.key))
            state.cachedDenials = (Weak(entitlements), layout)
            return layout
        }
    }

    /// Runs `body`, which replaces a loop's denial array and folds the old one into the totals
    /// it is lent, under the lock readers take.
    func replacingDenials(_ body: (inout [DenialKey: UInt64]) -> Void) {
        state.withLockedValue { body(&$0.foldedDenials) }
    }

    /// Adds the denial counts of `cells`, laid out by `layout`, to `totals`.
    static func fold(_ cells: UnsafeMutablePointer<LoopCounters.Cell>, _ layout: DenialLayout, into totals: inout [DenialKey: UInt64]) {
        layout.forEachCounted({ LoopCounters.load(cells + $0) }) { feature, reason, check, count in
            totals[DenialKey(feature: feature, reason: reason, check: check), default: 0] &+= count
        }
    }

    /// Runs `body`, which replaces a loop's evaluation array and folds the old one into the
    /// totals it is lent, under the lock readers take.
    func replacing(_ body: (inout [EvaluationKey: UInt64]) -> Void) {
        state.withLockedValue { body(&$0.folded) }
    }

    /// Adds the counts of `cells`, laid out by `layout`, to `totals`.
    static func fold(_ cells: UnsafeMutablePointer<LoopCounters.Cell>, _ layout: EvaluationLayout, into totals: inout [EvaluationKey: UInt64]) {
        layout.forEachCounted({ LoopCounters.load(cells + $0) }) { flag, variant, reason, count in
            totals[EvaluationKey(flag: flag, variant: variant, reason: reason), default: 0] &+= count
        }
    }

    /// Every loop's counters added up, now.
    public func collect() -> CounterSample {
        var fixed = [UInt64](repeating: 0, count: LoopCounters.blockCount)
        var exposures = ExposureCounts()
        let (evaluations, denials) = state.withLockedValue { state in
            var totals = state.folded
            var denials = state.foldedDenials
            for loop in state.loops {
                loop.addFixed(into: &fixed)
                loop.addEvaluations(into: &totals)
                loop.addDenials(into: &denials)
                if let queue = loop.exposures { exposures.add(queue.counts) }
            }
            return (totals, denials)
        }
        var sample = CounterSample(fixed: fixed, evaluations: evaluations, exposures: exposures)
        sample.denials = denials
        return sample
    }
}

/// The loops' counters added up at one moment (each counter read once; counters of different
/// families may be a few requests apart).
public struct CounterSample: Sendable {
    /// The fixed blocks added up (see `LoopCounters`).
    let fixed: [UInt64]
    public var evaluations: [EvaluationKey: UInt64]
    /// Entitlement denials by feature, reason and check (only those counted).
    public var denials: [DenialKey: UInt64] = [:]
    /// What the loops counted of exposure events (`written` is the writer's, added by the caller).
    public var exposures: ExposureCounts

    init(fixed: [UInt64], evaluations: [EvaluationKey: UInt64], exposures: ExposureCounts) {
        self.fixed = fixed
        self.evaluations = evaluations
        self.exposures = exposures
    }

    /// Nothing counted.
    public init() {
        self.init(fixed: [UInt64](repeating: 0, count: LoopCounters.blockCount), evaluations: [:], exposures: ExposureCounts())
    }

    /// The counts of a closed-label family, one per value of `family.values`.
    public func counts(_ family: CounterFamily) -> [UInt64] {
        var base = 0
        for known in MetricTable.counterFamilies {
            if known == family { return Array(fixed[base..<base + known.values.count]) }
            base += known.values.count
        }
        return []
    }

    /// Requests answered per latency bucket (not cumulative), `+Inf` last.
    public var latencyBuckets: [UInt64] {
        Array(fixed[LoopCounters.latencyBase..<LoopCounters.latencyBase + LatencyBuckets.count])
    }

    /// The sum of the latencies counted, in nanoseconds.
    public var latencySumNanoseconds: UInt64 { fixed[LoopCounters.latencySum] }
}
