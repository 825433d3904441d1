public import Atomics
public import GuidonEngine
import GuidonJSON
import GuidonProtocol

#if canImport(Glibc)
import Glibc
#endif

/// What was counted of exposure events.
public struct ExposureCounts: Sendable, Hashable {
    /// Written to the events file (counted by the writer).
    public var written: UInt64 = 0
    /// Left out: the same (targeting key, flag, variant) was recorded within the window.
    public var deduplicated: UInt64 = 0
    /// Dropped because the writer had not yet taken the events before them (the queue was full).
    public var droppedQueueFull: UInt64 = 0
    /// Dropped because the event does not fit a queue slot (keys of hundreds of bytes).
    public var droppedTooLarge: UInt64 = 0
    /// Dropped because writing the file failed (counted by the writer).
    public var droppedWriteFailed: UInt64 = 0

    public init() {}

    public var dropped: UInt64 { droppedQueueFull + droppedTooLarge + droppedWriteFailed }

    public mutating func add(_ other: ExposureCounts) {
        written &+= other.written
        deduplicated &+= other.deduplicated
        droppedQueueFull &+= other.droppedQueueFull
        droppedTooLarge &+= other.droppedTooLarge
        droppedWriteFailed &+= other.droppedWriteFailed
    }
}

/// Which (targeting key, flag, variant) were recorded lately: one table for all loops, so that
/// an event is recorded once within the window whichever loop answers.
///
/// A fixed table of 64-bit words, each a 40-bit fingerprint of the triple's hash and the second
/// (of a 24-bit monotonic clock) it was recorded, read and written with relaxed atomics: no
/// lock, no allocation, bounded memory (512 KiB) however many users there are. It forgets
/// rather than remembers wrongly: two triples whose hashes share a slot evict each other, so a
/// repeat may be recorded again (never an event left out for another's sake, but for a shared
/// 40-bit fingerprint: about 1 in 10^12); two loops recording the same new triple in the same
/// instant may both record it.
///
/// `@unchecked Sendable`: the table is atomics.
public final class ExposureDeduplicator: @unchecked Sendable {
    public typealias Cell = UInt64.AtomicRepresentation
    private let slots: UnsafeMutablePointer<Cell>
    private let mask: UInt64
    /// 0: every evaluation is recorded.
    public let windowSeconds: UInt32

    /// At most `maxWindowSeconds` (the clock has 24 bits).
    public static let maxWindowSeconds: UInt32 = 30 * 86_400

    public init(windowSeconds: UInt32, slotCount: Int = 1 << 16) {
        precondition(slotCount > 0 && slotCount & (slotCount - 1) == 0, "a power of two")
        self.windowSeconds = min(windowSeconds, Self.maxWindowSeconds)
        mask = UInt64(slotCount - 1)
        slots = .allocate(capacity: slotCount)
        slots.initialize(repeating: Cell(0), count: slotCount)
    }

    deinit { slots.deallocate() }

    /// Whether to record the triple with `hash` at `now` (seconds of a monotonic clock), and if
    /// so, remembers it.
    @inlinable
    public func admit(_ hash: UInt64, now: UInt32) -> Bool {
        admit(hash, now: now, window: windowSeconds)
    }

    @usableFromInline
    func admit(_ hash: UInt64, now: UInt32, window: UInt32) -> Bool {
        guard window > 0 else { return true }
        let slot = slots + Int(hash & mask)
        let fingerprint = hash >> 24
        let seen = Cell.atomicLoad(at: slot, ordering: .relaxed)
        let time = UInt64(now) & 0xff_ffff
        if seen >> 24 == fingerprint && (time &- seen) & 0xff_ffff < UInt64(window) { return false }
        Cell.atomicStore(fingerprint << 24 | time, at: slot, ordering: .relaxed)
        return true
    }
}

/// One loop's exposure events on their way to the writer: a single-producer, single-consumer
/// ring of fixed-size slots, each holding one event's bytes.
///
/// The loop writes a slot and publishes it with one releasing store; the writer thread takes
/// slots with acquiring loads. Nothing is allocated and nothing waits: when the writer has not
/// taken the slots before, the event is dropped and counted (`guidon_exposure_events_dropped_total`),
/// so a writer that falls behind (a slow disk) costs events, never latency or memory.
///
/// `@unchecked Sendable`: the producer's fields are touched by the loop's thread only, the
/// consumer's by the writer's; they meet through the atomic `head` and `tail`.
public final class ExposureQueue: @unchecked Sendable {
    public static let slotBytes = 512
    static let headerBytes = 20
    static let none: UInt16 = 0xffff

    public let capacity: Int
    private let storage: UnsafeMutableRawPointer
    /// The next slot the producer writes, and the next the consumer reads (each on a cache line
    /// of its own, with the producer's counters).
    private let head: UnsafeMutablePointer<Int.AtomicRepresentation>
    private let tail: UnsafeMutablePointer<Int.AtomicRepresentation>
    private let producerCounts: UnsafeMutablePointer<UInt64.AtomicRepresentation>
    private let lines: UnsafeMutableRawPointer
    /// The producer's copy of `tail`, refreshed only when the ring looks full. (Unchecked: the
    /// producer's alone, and a dynamic exclusivity check would cost more than the read.)
    @exclusivity(unchecked) private var knownTail = 0
    public let deduplicator: ExposureDeduplicator

    /// `capacity` slots (a power of two; 1,024 by default: 512 KiB per loop).
    public init(capacity: Int = 1024, deduplicator: ExposureDeduplicator) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "a power of two")
        self.capacity = capacity
        self.deduplicator = deduplicator
        storage = .allocate(byteCount: capacity * Self.slotBytes, alignment: 64)
        lines = .allocate(byteCount: 3 * 128, alignment: 128)
        lines.initializeMemory(as: UInt8.self, repeating: 0, count: 3 * 128)
        head = lines.bindMemory(to: Int.AtomicRepresentation.self, capacity: 1)
        tail = (lines + 128).bindMemory(to: Int.AtomicRepresentation.self, capacity: 1)
        producerCounts = (lines + 256).bindMemory(to: UInt64.AtomicRepresentation.self, capacity: 3)
    }

    deinit {
        storage.deallocate()
        lines.deallocate()
    }

    // MARK: - On the loop's thread (the producer)

    /// Records the evaluation of `flag` (with `variant`, or none) for `targetingKey` in `tenant`,
    /// unless the deduplicator has seen the triple within its window. `monotonicSeconds` is for
    /// the window; `unixNanoseconds` (the event's time) is read only for an event recorded.
    public func record(
        flag: String, variant: String?, reason: Reason, error: ErrorCode?, targetingKey: String?, tenant: String?,
        configVersion: String, monotonicSeconds: UInt32, unixNanoseconds: () -> UInt64
    ) {
        let flagBytes = Array(flag.utf8)
        let variantBytes = variant.map { Array($0.utf8) } ?? []
        let versionBytes = Array(configVersion.utf8)
        var pair = Self.fnvBasis
        Self.hash(flagBytes, into: &pair)
        Self.hash(variantBytes, into: &pair)
        flagBytes.withUnsafeBytes { flagRaw in
            variantBytes.withUnsafeBytes { variantRaw in
                versionBytes.withUnsafeBytes { versionRaw in
                    record(
                        flag: flagRaw, variant: variant == nil ? nil : variantRaw, pairHash: pair, reason: reason, error: error,
                        targetingKey: targetingKey, tenant: { tenant }, configVersion: versionRaw,
                        monotonicSeconds: monotonicSeconds, unixNanoseconds: unixNanoseconds)
                }
            }
        }
    }

    /// `record` from the bytes of the names and `pairHash`, the FNV-1a hash of the flag's key
    /// and the variant's name (`EvaluationLayout` keeps both for tracked flags): on the request
    /// path, an event reads no string that other threads share.
    public func record(
        flag: UnsafeRawBufferPointer, variant: UnsafeRawBufferPointer?, pairHash: UInt64, reason: Reason, error: ErrorCode?,
        targetingKey: String?, tenant: () -> String?, configVersion: UnsafeRawBufferPointer, monotonicSeconds: UInt32,
        unixNanoseconds: () -> UInt64
    ) {
        var hash = pairHash
        if var targetingKey {
            targetingKey.withUTF8 { Self.hash(UnsafeRawBufferPointer($0), into: &hash) }
        } else {
            hash ^= 0xfe  // no key is not the empty key
            hash &*= 0x0000_0100_0000_01b3
        }
        guard deduplicator.admit(hash, now: monotonicSeconds) else {
            return bump(0)
        }
        let tenant = tenant()
        var total = Self.headerBytes + flag.count + configVersion.count + (variant?.count ?? 0)
        total += (targetingKey?.utf8.count ?? 0) + (tenant?.utf8.count ?? 0)
        guard total <= Self.slotBytes else { return bump(2) }
        let position = Int.AtomicRepresentation.atomicLoad(at: head, ordering: .relaxed)
        if position - knownTail >= capacity {
            knownTail = Int.AtomicRepresentation.atomicLoad(at: tail, ordering: .acquiring)
            guard position - knownTail < capacity else { return bump(1) }
        }
        let slot = storage + (position & (capacity - 1)) * Self.slotBytes
        slot.storeBytes(of: unixNanoseconds(), as: UInt64.self)
        slot.storeBytes(of: UInt8(MetricTable.reasonIndex(reason)), toByteOffset: 8, as: UInt8.self)
        let errorIndex = error.flatMap { MetricTable.evaluationErrorCodes.firstIndex(of: $0) }.map { UInt8($0 + 1) } ?? 0
        slot.storeBytes(of: errorIndex, toByteOffset: 9, as: UInt8.self)
        var offset = Self.headerBytes
        func put(_ bytes: UnsafeRawBufferPointer?, _ i: Int) {
            guard let bytes else { return slot.storeBytes(of: Self.none, toByteOffset: 10 + 2 * i, as: UInt16.self) }
            if let base = bytes.baseAddress { (slot + offset).copyMemory(from: base, byteCount: bytes.count) }
            slot.storeBytes(of: UInt16(bytes.count), toByteOffset: 10 + 2 * i, as: UInt16.self)
            offset += bytes.count
        }
        func put(_ text: String?, _ i: Int) {
            guard var text else { return put(nil as UnsafeRawBufferPointer?, i) }
            text.withUTF8 { put(UnsafeRawBufferPointer($0), i) }
        }
        put(flag, 0)
        put(variant, 1)
        put(targetingKey, 2)
        put(tenant, 3)
        put(configVersion, 4)
        Int.AtomicRepresentation.atomicStore(position + 1, at: head, ordering: .releasing)
    }

    /// An event dropped before it reached the queue (too many in one request), counted as
    /// `queue_full`.
    public func countDropped() { bump(1) }

    private func bump(_ counter: Int) {
        let cell = producerCounts + counter
        let value = UInt64.AtomicRepresentation.atomicLoad(at: cell, ordering: .relaxed)
        UInt64.AtomicRepresentation.atomicStore(value &+ 1, at: cell, ordering: .relaxed)
    }

    static let fnvBasis: UInt64 = 0xcbf2_9ce4_8422_2325

    /// FNV-1a of the bytes, then a separator no UTF-8 text contains.
    static func hash(_ bytes: UnsafeRawBufferPointer, into hash: inout UInt64) {
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        hash ^= 0xff
        hash &*= 0x0000_0100_0000_01b3
    }

    static func hash(_ bytes: [UInt8], into hash: inout UInt64) {
        bytes.withUnsafeBytes { Self.hash($0, into: &hash) }
    }

    // MARK: - From any thread

    /// The producer's counts (deduplicated and dropped ones; `written` is the writer's).
    public var counts: ExposureCounts {
        var counts = ExposureCounts()
        counts.deduplicated = UInt64.AtomicRepresentation.atomicLoad(at: producerCounts, ordering: .relaxed)
        counts.droppedQueueFull = UInt64.AtomicRepresentation.atomicLoad(at: producerCounts + 1, ordering: .relaxed)
        counts.droppedTooLarge = UInt64.AtomicRepresentation.atomicLoad(at: producerCounts + 2, ordering: .relaxed)
        return counts
    }

    // MARK: - On the writer's thread (the consumer)

    /// Takes every event waiting, oldest first; returns how many.
    @discardableResult
    public func drain(_ body: (ExposureEvent) -> Void) -> Int {
        let first = Int.AtomicRepresentation.atomicLoad(at: tail, ordering: .relaxed)
        let end = Int.AtomicRepresentation.atomicLoad(at: head, ordering: .acquiring)
        for position in first..<end {
            body(event(at: storage + (position & (capacity - 1)) * Self.slotBytes))
        }
        Int.AtomicRepresentation.atomicStore(end, at: tail, ordering: .releasing)
        return end - first
    }

    private func event(at slot: UnsafeMutableRawPointer) -> ExposureEvent {
        var offset = Self.headerBytes
        var fields: [String?] = []
        for i in 0..<5 {
            let length = slot.load(fromByteOffset: 10 + 2 * i, as: UInt16.self)
            if length == Self.none {
                fields.append(nil)
            } else {
                fields.append(String(decoding: UnsafeRawBufferPointer(start: slot + offset, count: Int(length)), as: UTF8.self))
                offset += Int(length)
            }
        }
        let errorIndex = Int(slot.load(fromByteOffset: 9, as: UInt8.self))
        return ExposureEvent(
            unixNanoseconds: slot.load(as: UInt64.self),
            flag: fields[0] ?? "", variant: fields[1],
            reason: MetricTable.reasons[Int(slot.load(fromByteOffset: 8, as: UInt8.self))],
            error: errorIndex == 0 ? nil : MetricTable.evaluationErrorCodes[errorIndex - 1],
            targetingKey: fields[2], tenant: fields[3], configVersion: fields[4] ?? "")
    }

    // MARK: - Clocks

    /// Seconds of `CLOCK_MONOTONIC_COARSE` (read from memory the kernel updates: no clock
    /// read), for the deduplication window.
    public static func monotonicSeconds() -> UInt32 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &now)
        return UInt32(truncatingIfNeeded: now.tv_sec)
    }

    public static func unixNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}

/// One exposure event, as the writer takes it from a queue.
public struct ExposureEvent: Sendable, Hashable {
    public var unixNanoseconds: UInt64
    public var flag: String
    public var variant: String?
    public var reason: Reason
    public var error: ErrorCode?
    public var targetingKey: String?
    public var tenant: String?
    public var configVersion: String

    public init(
        unixNanoseconds: UInt64, flag: String, variant: String?, reason: Reason, error: ErrorCode? = nil,
        targetingKey: String?, tenant: String?, configVersion: String
    ) {
        self.unixNanoseconds = unixNanoseconds
        self.flag = flag
        self.variant = variant
        self.reason = reason
        self.error = error
        self.targetingKey = targetingKey
        self.tenant = tenant
        self.configVersion = configVersion
    }
}

extension ExposureEvent {
    /// The event as one JSON line, with OpenTelemetry's `feature_flag.evaluation` event
    /// attributes (`feature_flag.key`, `feature_flag.result.variant`,
    /// `feature_flag.result.reason`, `feature_flag.context.id`, `feature_flag.version`,
    /// `error.type`); the tenant, which has no convention, is `guidon.tenant.id`.
    public func writeJSONLine(into out: inout [UInt8]) {
        var object: JSONObject = [
            "time": .string(Self.time(unixNanoseconds)),
            "event.name": "feature_flag.evaluation",
            "feature_flag.key": .string(flag),
        ]
        if let variant { object["feature_flag.result.variant"] = .string(variant) }
        object["feature_flag.result.reason"] = .string(MetricTable.label(reason))
        if let error { object["error.type"] = .string(error.rawValue.lowercased()) }
        if let targetingKey { object["feature_flag.context.id"] = .string(targetingKey) }
        if let tenant { object["guidon.tenant.id"] = .string(tenant) }
        object["feature_flag.version"] = .string(configVersion)
        object["feature_flag.provider.name"] = "guidon"
        JSONWriter.write(.object(object), into: &out)
        out.append(UInt8(ascii: "\n"))
    }

    /// RFC 3339 UTC with milliseconds: `2026-11-21T12:03:07.123Z`.
    static func time(_ unixNanoseconds: UInt64) -> String {
        let seconds = Int64(unixNanoseconds / 1_000_000_000)
        let millis = Int(unixNanoseconds / 1_000_000 % 1000)
        let whole = Timestamp.rfc3339(seconds)
        let digits = String(millis)
        return whole.dropLast() + "." + String(repeating: "0", count: 3 - digits.count) + digits + "Z"
    }
}
