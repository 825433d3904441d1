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

    /// For tracked flags, the bytes an exposure event copies, as raw memory (an event then
    /// touches no string or array that every loop shares): flag `i`'s names start at entry
    /// `names[i]` (−1 when untracked) of `nameRanges` — the key, each variant's name, then an
    /// empty name for "no variant" — and `pairHashes` holds, per variant entry, the FNV-1a hash
    /// of the key and the variant name, which the event's deduplication continues with the
    /// targeting key.
    @usableFromInline let names: UnsafeMutablePointer<Int>
    @usableFromInline let nameRanges: UnsafeMutablePointer<(start: Int, count: Int)>
    @usableFromInline let pairHashes: UnsafeMutablePointer<UInt64>
    @usableFromInline let nameBytes: UnsafeMutableRawPointer

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
        for i in flags.indices {
            offsets[i] = offset
            offset += (flags[i].variants.count + 1) * Self.rowWidth
            let wants = !flags[i].metadata.isEmpty && flags[i].metadata["trackEvents"] == .bool(true)
            tracked[i] = wants
            any = any || wants
        }
        offsets[flags.count] = offset
        anyTracked = any

        // Names of tracked flags.
        names = .allocate(capacity: max(1, flags.count))
        var entries: [(start: Int, count: Int)] = []
        var hashes: [UInt64] = []
        var bytes: [UInt8] = []
        for (i, flag) in flags.enumerated() {
            guard tracked[i] else {
                names[i] = -1
                continue
            }
            names[i] = entries.count
            let key = Array(flag.key.utf8)
            entries.append((bytes.count, key.count))
            hashes.append(0)
            bytes += key
            var keyHash = ExposureQueue.fnvBasis
            ExposureQueue.hash(key, into: &keyHash)
            for name in flag.variants.map({ Array($0.utf8) }) + [[]] {
                entries.append((bytes.count, name.count))
                var pair = keyHash
                ExposureQueue.hash(name, into: &pair)
                hashes.append(pair)
                bytes += name
            }
        }
        nameRanges = .allocate(capacity: max(1, entries.count))
        nameRanges.initialize(from: entries, count: entries.count)
        pairHashes = .allocate(capacity: max(1, hashes.count))
        pairHashes.initialize(from: hashes, count: hashes.count)
        nameBytes = .allocate(byteCount: max(1, bytes.count), alignment: 8)
        bytes.withUnsafeBytes { if let base = $0.baseAddress { nameBytes.copyMemory(from: base, byteCount: $0.count) } }
    }

    deinit {
        offsets.deallocate()
        tracked.deallocate()
        names.deallocate()
        nameRanges.deallocate()
        pairHashes.deallocate()
        nameBytes.deallocate()
    }

    /// The entry of flag `position`'s name (`variant: nil`) or of one of its variants' (the
    /// entry after the last variant is "no variant"). The flag must be tracked.
    @inlinable
    func nameEntry(_ position: Int, variant: Int?) -> Int {
        let base = names[position]
        guard let variant else { return base + 1 + (offsets[position + 1] - offsets[position]) / Self.rowWidth - 1 }
        return base + 1 + variant
    }

    @inlinable
    func name(_ entry: Int) -> UnsafeRawBufferPointer {
        let range = nameRanges[entry]
        return UnsafeRawBufferPointer(start: nameBytes + range.start, count: range.count)
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
