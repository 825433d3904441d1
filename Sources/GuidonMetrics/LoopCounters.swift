public import Atomics
public import GuidonEngine
public import GuidonEntitlements
public import GuidonProtocol

#if canImport(Glibc)
import Glibc
#endif

/// One event loop's counters. The loop's thread is their only writer; any thread may read them.
///
/// Nothing on the request path is shared between threads: a count is a relaxed atomic load and
/// store of a counter only this loop writes (on x86-64 the same `mov`/`add`/`mov` as a plain
/// increment, and no `lock` prefix), so the loops never contend for a cache line, and a reader
/// (`MetricsRegistry.collect`) loads the counters without asking the loop for anything: a
/// wedged or busy loop does not delay `/metrics`, and a scrape puts no task on the loops.
///
/// Two parts: a fixed block (the closed-label counter families of `MetricTable.counterFamilies`
/// and the latency histogram), and the evaluation counters, a flat array laid out by the
/// snapshot being served (`EvaluationLayout`): a flag's counters are found by its position,
/// so that counting an evaluation hashes nothing and allocates nothing. When the loop takes a
/// new configuration (`adopt(_:)`), the array is replaced by one laid out for it and the old
/// one's counts are folded into the registry's totals, kept by flag and variant name.
///
/// `@unchecked Sendable`: the counters are atomics; `evaluations` and `layout` are replaced by
/// the loop's thread only, under the registry's lock, which readers take too.
public final class LoopCounters: @unchecked Sendable {
    public typealias Cell = UInt64.AtomicRepresentation

    @usableFromInline let block: UnsafeMutablePointer<Cell>
    @usableFromInline let latencyBounds: UnsafeMutablePointer<UInt64>
    // `@exclusivity(unchecked)`: read on the request path, where a dynamic exclusivity check
    // would cost more than the count (about 30 instructions each: measured with callgrind); only
    // `adopt`, on the same thread, writes them.
    @usableFromInline @exclusivity(unchecked) var evaluations: UnsafeMutablePointer<Cell>
    /// How `evaluations` is laid out: by the snapshot the loop answers from.
    @exclusivity(unchecked) public internal(set) var layout: EvaluationLayout
    /// `layout`'s row starts and tracked flags, as pointers: the request path reads them
    /// without touching `layout`, an object every loop shares (calling it would count
    /// references to it, an atomic operation on memory the loops' cores pass back and forth).
    @usableFromInline @exclusivity(unchecked) var offsets: UnsafeMutablePointer<Int>
    @usableFromInline @exclusivity(unchecked) var tracked: UnsafeMutablePointer<Bool>
    private var evaluationBytes: Int
    /// The entitlement denial counters, laid out by the entitlements document being served
    /// (`denialLayout`; its row count copied, as `offsets` is), replaced with it like
    /// `evaluations`.
    @usableFromInline @exclusivity(unchecked) var denials: UnsafeMutablePointer<Cell>
    @usableFromInline @exclusivity(unchecked) var denialRows: Int
    @exclusivity(unchecked) public internal(set) var denialLayout: DenialLayout
    private var denialBytes: Int
    /// What this loop's contexts ask `{"entitled": …}` and `$tenant.…` of: the entitlements
    /// being served, counting the denials the operator answers (`nil` without entitlements, or
    /// when nothing is counted).
    @exclusivity(unchecked) public private(set) var tenantDirectory: CountingTenantDirectory?
    unowned let registry: MetricsRegistry
    /// Where this loop's exposure events go, when the daemon writes them.
    public let exposures: ExposureQueue?
    /// Whether anything is counted (`guidond --no-metrics` turns it off, to measure its cost).
    public let isCounting: Bool

    // The fixed block: each counter family's values, then the histogram's buckets and sum.
    // (Copied into each instance: reading a global on the request path costs a call.)
    static let requestErrorsBase = MetricTable.requests.values.count
    static let evaluationErrorsBase = requestErrorsBase + MetricTable.requestErrors.values.count
    static let latencyBase = MetricTable.counterFamilies.reduce(0) { $0 + $1.values.count }
    static let latencySum = latencyBase + LatencyBuckets.count
    static let blockCount = latencySum + 1
    @usableFromInline let invalidRequests = MetricTable.requests.values.count - 1
    @usableFromInline let requestErrorsBase = LoopCounters.requestErrorsBase
    @usableFromInline let evaluationErrorsBase = LoopCounters.evaluationErrorsBase
    @usableFromInline let latencyBase = LoopCounters.latencyBase
    @usableFromInline let latencySum = LoopCounters.latencySum
    @usableFromInline let finiteBounds = LatencyBuckets.boundsNanoseconds.count

    init(registry: MetricsRegistry, layout: EvaluationLayout, counting: Bool, exposures: ExposureQueue?) {
        self.registry = registry
        self.isCounting = counting
        self.exposures = exposures
        // Own cache lines: no other thread's data shares them.
        let bytes = (Self.blockCount * MemoryLayout<Cell>.stride + 127) & ~127
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 128)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        block = raw.bindMemory(to: Cell.self, capacity: Self.blockCount)
        latencyBounds = .allocate(capacity: LatencyBuckets.boundsNanoseconds.count)
        latencyBounds.initialize(from: LatencyBuckets.boundsNanoseconds, count: LatencyBuckets.boundsNanoseconds.count)
        self.layout = layout
        offsets = layout.offsets
        tracked = layout.tracked
        (evaluations, evaluationBytes) = Self.zeroedCells(layout.slotCount)
        denialLayout = .none
        denialRows = DenialLayout.none.rows
        (denials, denialBytes) = Self.zeroedCells(DenialLayout.none.slotCount)
    }

    deinit {
        UnsafeMutableRawPointer(block).deallocate()
        latencyBounds.deallocate()
        version.deallocate()
        notes.deallocate()
        noted.deallocate()
        Self.release(evaluations, bytes: evaluationBytes)
        Self.release(denials, bytes: denialBytes)
    }

    // MARK: - On the loop's thread

    /// A request line with operation `op` was answered.
    @inlinable
    public func request(_ op: Request.Operation) {
        Self.bump(block + MetricTable.operationIndex(op))
    }

    /// A request line was refused with `code` (and, for `INVALID_REQUEST` and `UNKNOWN_OP`,
    /// counted as a request of operation `invalid`).
    @inlinable
    public func refused(_ code: ProtocolErrorCode) {
        if code == .invalidRequest || code == .unknownOp {
            Self.bump(block + invalidRequests)
        }
        let index = MetricTable.requestErrorCodes.firstIndex(of: code) ?? 0
        Self.bump(block + requestErrorsBase + index)
    }

    /// One evaluation: of the flag at `position` in the snapshot being served (`nil` for an
    /// unknown key, counted without it), serving the variant at `variant` (or none).
    @inlinable
    public func evaluation(position: Int?, variant: Int?, reason: Reason, error: ErrorCode?) {
        if let position {
            let width = EvaluationLayout.rowWidth
            let row = variant.map { offsets[position] + $0 * width } ?? (offsets[position + 1] - width)
            Self.bump(evaluations + row + MetricTable.reasonIndex(reason))
        }
        if let error {
            Self.bump(block + evaluationErrorsBase + (MetricTable.evaluationErrorCodes.firstIndex(of: error) ?? 0))
        }
    }

    /// A tenant was told no by an entitlement (`denial`: which feature and why), by `check`.
    @inlinable
    public func denied(_ denial: EntitlementDenial, by check: EntitlementCheck) {
        Self.bump(denials + DenialLayout.slot(denial, check, rows: denialRows))
    }

    /// `requests` request lines were answered `nanoseconds` after the read that brought them.
    @inlinable
    public func answered(_ requests: Int, nanoseconds: UInt64) {
        let n = UInt64(requests)
        Self.bump(block + latencyBase + LatencyBuckets.index(nanoseconds, bounds: latencyBounds, finite: finiteBounds), by: n)
        Self.bump(block + latencySum, by: nanoseconds &* n)
    }

    /// Where a counter family's counters start in the block: for features that count with
    /// `count(_:_:)` (resolve it once, not per event).
    public func handle(_ family: CounterFamily) -> CounterHandle {
        var base = 0
        for known in MetricTable.counterFamilies {
            if known == family { return CounterHandle(base: base) }
            base += known.values.count
        }
        preconditionFailure("\(family.family.name) is not in MetricTable.counterFamilies")
    }

    /// One event of `handle`'s family, with the label value at `value`.
    @inlinable
    public func count(_ handle: CounterHandle, _ value: Int, by n: UInt64 = 1) {
        Self.bump(block + handle.base + value, by: n)
    }

    /// The flag at `position` asks for exposure events (and the daemon writes them).
    @inlinable
    public func tracks(_ position: Int) -> Bool {
        exposures != nil && tracked[position]
    }

    /// Records an exposure event for the flag at `position` (which `tracks`), serving the
    /// variant at `variant` (or none), for `targetingKey` in `tenant`: everything but the two
    /// context strings is read from this loop's copies (no shared object's references counted).
    public func exposure(
        position: Int, variant: Int?, reason: Reason, error: ErrorCode?, targetingKey: String?, tenant: () -> String?
    ) {
        guard let queue = exposures else { return }
        let layout = Unmanaged.passUnretained(layout)
        layout._withUnsafeGuaranteedRef { layout in
            let entry = layout.nameEntry(position, variant: variant)
            queue.record(
                flag: layout.name(layout.names[position]), variant: variant == nil ? nil : layout.name(entry),
                pairHash: layout.pairHashes[entry], reason: reason, error: error, targetingKey: targetingKey, tenant: tenant,
                configVersion: UnsafeRawBufferPointer(start: version, count: versionCount),
                monotonicSeconds: ExposureQueue.monotonicSeconds(), unixNanoseconds: ExposureQueue.unixNanoseconds)
        }
    }

    /// Notes that the flag at `position` (which `tracks`) was evaluated, for `recordNotedExposures`
    /// once the reply is written (when the request's context is read). In raw memory: no
    /// allocation and no exclusivity check per result.
    @inlinable
    public func noteExposure(position: Int, variant: Int?, reason: Reason, error: ErrorCode?) {
        let count = noted.pointee
        guard count < Self.notedCapacity else {
            exposures?.countDropped()
            return
        }
        (notes + count).initialize(to: NotedExposure(position: position, variant: variant ?? -1, reason: reason, error: error))
        noted.pointee = count + 1
    }

    public var hasPendingExposures: Bool { noted.pointee > 0 }

    /// Records the noted exposures for `targetingKey` in `tenant` (asked for only when an event
    /// is recorded rather than left out as a repeat), and forgets them.
    public func recordNotedExposures(targetingKey: String?, tenant: () -> String?) {
        for i in 0..<noted.pointee {
            let note = (notes + i).move()
            exposure(
                position: note.position, variant: note.variant < 0 ? nil : note.variant, reason: note.reason, error: note.error,
                targetingKey: targetingKey, tenant: tenant)
        }
        noted.pointee = 0
    }

    /// Exposures noted in one request (an `evalAll` of more tracked flags drops the rest, counted).
    @usableFromInline static let notedCapacity = 256
    @usableFromInline let notes = UnsafeMutablePointer<NotedExposure>.allocate(capacity: LoopCounters.notedCapacity)
    @usableFromInline let noted: UnsafeMutablePointer<Int> = {
        let count = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        count.initialize(to: 0)
        return count
    }()

    @usableFromInline
    struct NotedExposure {
        var position: Int
        var variant: Int
        var reason: Reason
        var error: ErrorCode?

        @usableFromInline
        init(position: Int, variant: Int, reason: Reason, error: ErrorCode?) {
            self.position = position
            self.variant = variant
            self.reason = reason
            self.error = error
        }
    }

    /// The configuration version's bytes, for exposure events (this loop's copy; 64 bytes at most).
    private let version = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
    @exclusivity(unchecked) private var versionCount = 0

    /// The loop answers from `snapshot` (version `version`) and the entitlements document
    /// `entitlements` (`nil`: none) from now on: lay the evaluation and denial counters out for
    /// them. Call on the loop's thread, before answering from them.
    public func adopt(_ snapshot: Snapshot, version: String = "", entitlements: Entitlements? = nil) {
        let versionBytes = Array(version.utf8.prefix(64))
        versionBytes.withUnsafeBytes { if let base = $0.baseAddress { self.version.copyMemory(from: base, byteCount: $0.count) } }
        versionCount = versionBytes.count
        if tenantDirectory?.entitlements !== entitlements {
            tenantDirectory = isCounting ? entitlements.map { CountingTenantDirectory($0, counters: self) } : nil
        }
        adoptDenials(registry.denialLayout(for: entitlements))
        let new = registry.layout(for: snapshot)
        guard new !== layout else { return }
        let (cells, bytes) = Self.zeroedCells(new.slotCount)
        let (oldCells, oldBytes, oldLayout) = (evaluations, evaluationBytes, layout)
        registry.replacing { totals in
            evaluations = cells
            evaluationBytes = bytes
            layout = new
            offsets = new.offsets
            tracked = new.tracked
            MetricsRegistry.fold(oldCells, oldLayout, into: &totals)
        }
        Self.release(oldCells, bytes: oldBytes)
    }

    private func adoptDenials(_ new: DenialLayout) {
        guard new !== denialLayout else { return }
        let (cells, bytes) = Self.zeroedCells(new.slotCount)
        let (oldCells, oldBytes, oldLayout) = (denials, denialBytes, denialLayout)
        registry.replacingDenials { totals in
            denials = cells
            denialBytes = bytes
            denialLayout = new
            denialRows = new.rows
            MetricsRegistry.fold(oldCells, oldLayout, into: &totals)
        }
        Self.release(oldCells, bytes: oldBytes)
    }

    @inlinable @inline(__always)
    static func bump(_ cell: UnsafeMutablePointer<Cell>, by n: UInt64 = 1) {
        let value = Cell.atomicLoad(at: cell, ordering: .relaxed)
        Cell.atomicStore(value &+ n, at: cell, ordering: .relaxed)
    }

    // MARK: - From any thread (under the registry's lock for `evaluations`)

    static func load(_ cell: UnsafeMutablePointer<Cell>) -> UInt64 {
        Cell.atomicLoad(at: cell, ordering: .relaxed)
    }

    func fixed(_ index: Int) -> UInt64 { Self.load(block + index) }

    /// Adds this loop's fixed counters into `sums` (`blockCount` long).
    func addFixed(into sums: inout [UInt64]) {
        for i in 0..<Self.blockCount { sums[i] &+= Self.load(block + i) }
    }

    /// Adds this loop's evaluation counts into `totals`. Call under the registry's lock.
    func addEvaluations(into totals: inout [EvaluationKey: UInt64]) {
        MetricsRegistry.fold(evaluations, layout, into: &totals)
    }

    /// Adds this loop's denial counts into `totals`. Call under the registry's lock.
    func addDenials(into totals: inout [DenialKey: UInt64]) {
        MetricsRegistry.fold(denials, denialLayout, into: &totals)
    }

    // MARK: - Memory

    /// Zeroed counters from `mmap`: pages that no evaluation touches are never made resident,
    /// so 10,000 flags of which a few are asked for cost a few pages, not 1.2 MB per loop.
    private static func zeroedCells(_ count: Int) -> (UnsafeMutablePointer<Cell>, Int) {
        let bytes = max(1, count) * MemoryLayout<Cell>.stride
        let mapped = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let mapped, mapped != MAP_FAILED else { preconditionFailure("out of memory for \(count) counters") }
        return (mapped.bindMemory(to: Cell.self, capacity: max(1, count)), bytes)
    }

    private static func release(_ cells: UnsafeMutablePointer<Cell>, bytes: Int) {
        munmap(UnsafeMutableRawPointer(cells), bytes)
    }
}

/// A counter family's place in a loop's block (`LoopCounters.handle(_:)`).
public struct CounterHandle: Sendable {
    @usableFromInline let base: Int
}

/// An evaluation counter's identity across reloads: flag and variant by name.
public struct EvaluationKey: Hashable, Sendable {
    public var flag: String
    /// `""` when no variant was served.
    public var variant: String
    /// The position of the reason in `MetricTable.reasons`.
    public var reason: Int

    public init(flag: String, variant: String, reason: Int) {
        self.flag = flag
        self.variant = variant
        self.reason = reason
    }
}
