import CLinux
public import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// The default store: counts in memory, answered on the caller's thread, made durable under a
/// state directory by a flusher thread of its own.
///
/// **Request path.** Counts are spread over `stripes` locks by a hash of (feature, tenant), so
/// every limit of one request (tenant- and user-scoped alike) sits under one lock, taken once:
/// check, count and note the change in that stripe's journal, all in memory, no I/O and no
/// allocation once the tables have grown. A global lock measured about as fast alone and worse
/// with two threads (guidon-bench quota, docs/QUOTAS.md); atomics per count could not check
/// several limits at once.
///
/// **Durability.** Every `flushInterval` (200 ms) the flusher swaps each stripe's journal for an
/// empty one (an O(1) swap under the lock), appends them to `quota.log` as one checksummed
/// frame and `fdatasync`s it; it keeps its own copy of the counts from those same records, and
/// from that copy rewrites `quota.snapshot` (and empties the log) once the log has grown past
/// `compactAfterBytes`, and at every clean stop. So a count acknowledged at time t is in the
/// kernel's page cache by t + `flushInterval` + one write: a `kill -9` loses at most what was
/// acknowledged in the last ~200 ms (documented bound: 1 s), a clean stop nothing, and a power
/// cut what was not yet `fdatasync`ed (the same 200 ms, on disks that honour it).
public final class EmbeddedQuotaStore: SynchronousQuotaStore {
    public struct Configuration: Sendable {
        /// Where `quota.snapshot` and `quota.log` live (created, mode 0700, if missing).
        public var stateDirectory: String
        /// Locks over hashed (feature, tenant); rounded up to a power of two (default 64).
        public var stripes: Int
        /// How often the flusher writes the journals (default 200 ms).
        public var flushInterval: Duration
        /// `fdatasync` the log after each write (default true; off only for benchmarks).
        public var sync: Bool
        /// The most idempotency keys remembered; past it the oldest are forgotten early
        /// (default 1,000,000).
        public var maxReceipts: Int
        /// Rewrite the snapshot once the log is this large and larger than the snapshot
        /// (default 4 MiB).
        public var compactAfterBytes: Int
        /// A count is dropped this long after its window ended (default 60 s, for clocks that
        /// disagree a little).
        public var expiryGrace: Int64
        /// Unix seconds, for dropping expired windows (tests move it).
        public var clock: @Sendable () -> Int64

        public init(
            stateDirectory: String, stripes: Int = 64, flushInterval: Duration = .milliseconds(200), sync: Bool = true,
            maxReceipts: Int = 1_000_000, compactAfterBytes: Int = 4 << 20, expiryGrace: Int64 = 60,
            clock: @escaping @Sendable () -> Int64 = EmbeddedQuotaStore.wallClock
        ) {
            self.stateDirectory = stateDirectory
            self.stripes = stripes
            self.flushInterval = flushInterval
            self.sync = sync
            self.maxReceipts = maxReceipts
            self.compactAfterBytes = compactAfterBytes
            self.expiryGrace = expiryGrace
            self.clock = clock
        }
    }

    /// Unix seconds from the system clock.
    public static let wallClock: @Sendable () -> Int64 = {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec)
    }

    private enum State {
        case idle
        case running(pthread_t)
        case stopped
    }

    public let configuration: Configuration
    private let logger: Logger
    private let stripes: [Stripe]
    private let mask: Int
    private let lifecycle = NIOLockedValueBox(State.idle)
    private let flusher: Flusher

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        var count = 1
        while count < max(1, configuration.stripes) { count <<= 1 }
        stripes = (0..<count).map { _ in Stripe() }
        mask = count - 1
        flusher = Flusher(configuration: configuration, stripes: stripes, logger: logger)
    }

    // MARK: - Lifecycle

    /// Reads the state directory back (dropping expired windows) and starts the flusher.
    public func start() throws(QuotaStoreError) {
        let result: Result<Void, QuotaStoreError> = lifecycle.withLockedValue { state in
            guard case .idle = state else { return .success(()) }
            do throws(QuotaStoreError) {
                try flusher.recover()
            } catch {
                return .failure(error)
            }
            for stripe in stripes { stripe.state.withLockedValue { $0.open = true } }
            let box = Unmanaged.passRetained(flusher).toOpaque()
            var thread = pthread_t()
            let created = pthread_create(&thread, nil, { box in
                let flusher = Unmanaged<Flusher>.fromOpaque(box!).takeRetainedValue()
                _ = pthread_setname_np(pthread_self(), "guidon-quota")
                flusher.run()
                return nil
            }, box)
            precondition(created == 0, "cannot start the quota flusher thread: \(created)")
            state = .running(thread)
            return .success(())
        }
        try result.get()
    }

    /// Refuses new requests, writes every count (log, then a fresh snapshot) and stops the
    /// flusher. Safe to call twice.
    public func shutdown() {
        let thread: pthread_t? = lifecycle.withLockedValue { state in
            defer { state = .stopped }
            if case .running(let thread) = state { return thread }
            return nil
        }
        guard let thread else { return }
        for stripe in stripes { stripe.state.withLockedValue { $0.open = false } }
        flusher.stop()
        pthread_join(thread, nil)
    }

    // MARK: - Requests (any thread)

    private struct Slot {
        var window: CalendarWindow
        /// The first limit reading the same count.
        var owner: Int
        var before: Int64 = 0
        var after: Int64 = 0
        /// Where the count is in the stripe's table (set for owners whose count exists), so that
        /// it is hashed once per request, not twice.
        var handle: CounterTable.Handle?
    }

    @inline(__always)
    private func stripe(_ subject: QuotaSubject) -> Stripe {
        stripes[Self.stripeIndex(feature: subject.feature, tenant: subject.tenant) & mask]
    }

    static func stripeIndex(feature: String, tenant: String) -> Int {
        SubjectHash.of(feature: feature, tenant: tenant)
    }

    /// The digests of a request's subject: the tenant's counts' and the user's counts'.
    private struct Digests {
        var tenant: Int
        var user: Int
        init(_ subject: QuotaSubject) {
            let tenant = SubjectHash.of(feature: subject.feature, tenant: subject.tenant)
            self.tenant = tenant
            user = subject.user.map { SubjectHash.of(featureTenant: tenant, user: $0) } ?? tenant
        }
    }

    @inline(__always)
    private static func counterKey(_ subject: QuotaSubject, _ digests: Digests, _ limit: QuotaLimit, _ window: CalendarWindow) -> CounterKey {
        let user = limit.scope == .user
        return CounterKey(feature: subject.feature, tenant: subject.tenant, user: user ? subject.user ?? "" : "",
                          unit: limit.per, windowStart: window.start, digest: user ? digests.user : digests.tenant)
    }

    public func consume(_ request: QuotaRequest) throws(QuotaStoreError) -> QuotaAnswer {
        try QuotaDecision.validate(request)
        let limits = request.limits
        let subject = request.subject
        let amount = request.amount
        let now = request.now
        let result = withUnsafeTemporaryAllocation(of: Slot.self, capacity: limits.count) { slots -> Result<QuotaAnswer, QuotaStoreError> in
            for i in limits.indices {
                slots.initializeElement(at: i, to: Slot(
                    window: request.window(i), owner: QuotaDecision.counterOwner(limits, i)))
            }
            defer { _ = slots.deinitialize() }
            let digests = Digests(subject)
            return stripes[digests.tenant & mask].state.withLockedValue { state -> Result<QuotaAnswer, QuotaStoreError> in
                guard state.open else { return .failure(QuotaStoreError(.stopped, "the quota store is not running")) }
                var receiptKey: ReceiptKey?
                if let idempotencyKey = request.idempotencyKey {
                    let key = ReceiptKey(feature: subject.feature, tenant: subject.tenant, user: subject.user ?? "", idempotencyKey: idempotencyKey)
                    if let receipt = state.receipts[key], receipt.expiresAt > now {
                        state.replayed &+= 1
                        var answer = receipt.answer
                        answer.replayed = true
                        return .success(answer)
                    }
                    receiptKey = key
                }
                for i in limits.indices {
                    let owner = slots[i].owner
                    if owner == i {
                        let user = limits[i].scope == .user
                        let handle = state.counters.find(
                            digest: user ? digests.user : digests.tenant, unit: limits[i].per, windowStart: slots[i].window.start,
                            feature: subject.feature, tenant: subject.tenant, user: user ? subject.user ?? "" : "")
                        slots[i].handle = handle
                        slots[i].before = handle.map { state.counters[$0].used } ?? 0
                    } else {
                        slots[i].before = slots[owner].before
                    }
                }
                let refused: Int?
                do throws(QuotaStoreError) {
                    refused = try QuotaDecision.refusingLimit(limits, amount: amount) { slots[$0].before }
                } catch {
                    return .failure(error)
                }
                for i in limits.indices { slots[i].after = slots[i].before &+ (refused == nil ? amount : 0) }
                if refused == nil {
                    // Existing counts first, in place: an insertion may move the others.
                    for i in limits.indices where slots[i].owner == i {
                        guard let handle = slots[i].handle else { continue }
                        state.record(handle, used: slots[i].after)
                    }
                    for i in limits.indices where slots[i].owner == i && slots[i].handle == nil {
                        state.insert(Self.counterKey(subject, digests, limits[i], slots[i].window), Counter(used: slots[i].after, resetAt: slots[i].window.end))
                    }
                    state.consumed &+= 1
                } else {
                    state.denied &+= 1
                }
                let answer = QuotaDecision.answer(
                    limits, amount: amount, refusedBy: refused, window: { slots[$0].window }, before: { slots[$0].before }, after: { slots[$0].after })
                if let receiptKey {
                    let receipt = Receipt(answer: answer, expiresAt: now + QuotaRequest.idempotencyWindow)
                    state.receipts[receiptKey] = receipt
                    QuotaRecord.appendReceipt(receiptKey, receipt, to: &state.journal)
                }
                return .success(answer)
            }
        }
        return try result.get()
    }

    public func usage(_ request: QuotaUsageRequest) throws(QuotaStoreError) -> [QuotaLimitStatus] {
        try QuotaDecision.validate(request.subject, request.limits)
        let limits = request.limits
        let windows = limits.map { request.zone.window($0.per, containing: request.now) }
        let digests = Digests(request.subject)
        let result = stripes[digests.tenant & mask].state.withLockedValue { state -> Result<[Int64], QuotaStoreError> in
            guard state.open else { return .failure(QuotaStoreError(.stopped, "the quota store is not running")) }
            return .success(limits.indices.map { i in
                state.counters[Self.counterKey(request.subject, digests, limits[i], windows[i])]?.used ?? 0
            })
        }
        let used = try result.get()
        return QuotaDecision.usage(limits, window: { windows[$0] }, used: { used[$0] })
    }

    public func reset(_ subject: QuotaSubject) throws(QuotaStoreError) -> Int {
        try QuotaDecision.key(subject.feature, "feature")
        try QuotaDecision.key(subject.tenant, "tenant")
        let result = stripe(subject).state.withLockedValue { state -> Result<Int, QuotaStoreError> in
            guard state.open else { return .failure(QuotaStoreError(.stopped, "the quota store is not running")) }
            // A scan of one stripe (1/64 of the counts): an audited admin operation, not a request.
            let doomed = state.counters.keys.filter { $0.matches(feature: subject.feature, tenant: subject.tenant, user: subject.user) }
            for key in doomed { state.counters.removeValue(forKey: key) }
            QuotaRecord.appendReset(feature: subject.feature, tenant: subject.tenant, user: subject.user, to: &state.journal)
            return .success(doomed.count)
        }
        return try result.get()
    }

    public var statistics: QuotaStoreStatistics {
        var total = QuotaStoreStatistics()
        for stripe in stripes {
            stripe.state.withLockedValue { state in
                total.consumed &+= state.consumed
                total.denied &+= state.denied
                total.replayed &+= state.replayed
            }
        }
        return total
    }

    /// How many counts the stripes hold (tests).
    var countsInMemory: Int { stripes.reduce(0) { n, stripe in n + stripe.state.withLockedValue { $0.counters.count } } }

    /// Writes what has been counted so far, now, and returns once it is in the log (tests and
    /// benchmarks; the flusher does this every `flushInterval` by itself).
    public func flushNow() { flusher.flushNow() }
}

extension CounterKey {
    func matches(feature: String, tenant: String, user: String?) -> Bool {
        self.feature == feature && self.tenant == tenant && (user == nil || self.user == user)
    }
}

/// One lock's share of the counts.
final class Stripe: Sendable {
    let state = NIOLockedValueBox(StripeState())
}

struct StripeState {
    /// Refuses requests before `start` and after `shutdown`.
    var open = false
    var counters = CounterTable()
    var receipts: [ReceiptKey: Receipt] = [:]
    /// Records of the changes since the flusher last took them.
    var journal: [UInt8] = []
    var consumed: UInt64 = 0
    var denied: UInt64 = 0
    var replayed: UInt64 = 0

    /// Bumped by the flusher each time it takes the journal.
    var generation: UInt32 = 1

    init() { journal.reserveCapacity(16 * 1024) }

    /// Sets the count at `handle` and notes it in the journal (rewriting its record in place when
    /// the journal already holds one).
    @inline(__always)
    mutating func record(_ handle: CounterTable.Handle, used: Int64) {
        let generation = self.generation
        let rewrite = counters.update(handle) { counter -> Int? in
            counter.used = used
            return counter.journalGeneration == generation ? Int(counter.journalOffset) : nil
        }
        if let rewrite {
            journal.withUnsafeMutableBytes {
                $0.storeBytes(of: used.littleEndian, toByteOffset: rewrite + QuotaRecord.counterUsedOffset, as: Int64.self)
            }
            return
        }
        let offset = journal.count
        QuotaRecord.appendCounter(counters.key(handle), counters[handle], to: &journal)
        if offset <= Int(Int32.max) {
            counters.update(handle) { counter in
                counter.journalOffset = Int32(offset)
                counter.journalGeneration = generation
            }
        }
    }

    /// Adds a new count and notes it in the journal.
    mutating func insert(_ key: CounterKey, _ counter: Counter) {
        var counter = counter
        let offset = journal.count
        QuotaRecord.appendCounter(key, counter, to: &journal)
        if offset <= Int(Int32.max) {
            counter.journalOffset = Int32(offset)
            counter.journalGeneration = generation
        }
        counters.insert(key, counter)
    }
}
