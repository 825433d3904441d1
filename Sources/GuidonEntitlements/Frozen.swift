#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An immutable array in memory of its own, read through a plain pointer.
///
/// The tables answers are read from live in these rather than in Swift arrays so that a
/// resolution reads them through pointers copied into the compiled value: reading a pointer
/// counts no reference, and counting references to storage that every event loop shares
/// would be an atomic operation on a shared cache line per read. Each table is its own owner so
/// that a recompile can share the ones that did not change (the tenant index, when the same
/// tenants are listed in the same order).
final class Frozen<Element: BitwiseCopyable>: @unchecked Sendable {
    // Sendable: written once in `init`, before the object is shared, and only read afterwards.
    let base: UnsafeMutablePointer<Element>
    let count: Int

    init(_ elements: [Element]) {
        count = elements.count
        base = UnsafeMutablePointer<Element>.allocate(capacity: Swift.max(1, elements.count))
        elements.withUnsafeBufferPointer { source in
            if let from = source.baseAddress { base.initialize(from: from, count: source.count) }
        }
    }

    deinit {
        base.deallocate()
    }

    var pointer: UnsafePointer<Element> { UnsafePointer(base) }

    var buffer: UnsafeBufferPointer<Element> { UnsafeBufferPointer(start: base, count: count) }
}

/// Key bytes → position: an open-addressing table, probed linearly from a hash of the key's
/// bytes, like the engine's flag `KeyIndex`, sized for 100,000 tenants: each slot holds the
/// position and 32 bits of the key's hash, so a probe reads a key's bytes only when the hashes
/// agree. Keys are compared byte for byte (a tenant id spelled in another Unicode normal form is
/// another tenant).
struct BytesIndex: Sendable {
    /// The tables a lookup reads, as pointers (see `Frozen`).
    struct Lookup: BitwiseCopyable, @unchecked Sendable {
        // Sendable: pointers into `Frozen` tables that the index keeps alive and never writes.
        /// High 32 bits: the key's hash; low 32 bits: position + 1 (0 marks an empty slot).
        let slots: UnsafePointer<UInt64>
        let mask: Int
        /// Where each key's bytes end in `bytes` (by position); key 0 starts at 0.
        let ends: UnsafePointer<UInt32>
        let bytes: UnsafePointer<UInt8>
        let count: Int

        @inline(__always)
        func position(of key: UnsafeRawBufferPointer) -> Int? {
            let hash = BytesIndex.hash(key)
            let tag = UInt64(truncatingIfNeeded: hash) >> 32
            var slot = hash & mask
            while true {
                let entry = slots[slot]
                if entry == 0 { return nil }
                if entry >> 32 == tag {
                    let position = Int(truncatingIfNeeded: entry & 0xFFFF_FFFF) - 1
                    let start = position == 0 ? 0 : Int(ends[position - 1])
                    let end = Int(ends[position])
                    if end - start == key.count
                        && (key.count == 0 || memcmp(bytes + start, key.baseAddress!, key.count) == 0)
                    {
                        return position
                    }
                }
                slot = (slot + 1) & mask
            }
        }

        @inline(__always)
        func position(of key: String) -> Int? {
            if let found = key.utf8.withContiguousStorageIfAvailable({ position(of: UnsafeRawBufferPointer($0)) }) {
                return found
            }
            var key = key
            return key.withUTF8 { position(of: UnsafeRawBufferPointer($0)) }
        }

        /// The bytes of the key at `position`.
        @inline(__always)
        func key(at position: Int) -> UnsafeRawBufferPointer {
            let start = position == 0 ? 0 : Int(ends[position - 1])
            return UnsafeRawBufferPointer(start: bytes + start, count: Int(ends[position]) - start)
        }
    }

    let lookup: Lookup
    /// Whether two keys have the same bytes (the second is not indexed).
    let hasDuplicates: Bool
    private let slots: Frozen<UInt64>
    private let ends: Frozen<UInt32>
    private let bytes: Frozen<UInt8>

    var count: Int { lookup.count }

    /// Indexes keys whose bytes are `bytes`, the one at position `i` ending at `ends[i]`.
    /// The first of byte-identical keys wins (a document cannot hold two: its parser rejects
    /// repeated keys).
    init(bytes: [UInt8], ends: [UInt32]) {
        self.bytes = Frozen(bytes)
        self.ends = Frozen(ends)
        var capacity = 8
        while capacity < ends.count * 2 { capacity *= 2 }
        let mask = capacity - 1
        var slots = [UInt64](repeating: 0, count: capacity)
        let keyBytes = self.bytes.pointer
        let keyEnds = self.ends.pointer
        var hasDuplicates = false
        for position in ends.indices {
            let start = position == 0 ? 0 : Int(ends[position - 1])
            let key = UnsafeRawBufferPointer(start: keyBytes + start, count: Int(ends[position]) - start)
            let hash = Self.hash(key)
            let tag = UInt64(truncatingIfNeeded: hash) >> 32
            var slot = hash & mask
            var duplicate = false
            while slots[slot] != 0 {
                let other = Int(truncatingIfNeeded: slots[slot] & 0xFFFF_FFFF) - 1
                let otherStart = other == 0 ? 0 : Int(keyEnds[other - 1])
                let otherCount = Int(keyEnds[other]) - otherStart
                if slots[slot] >> 32 == tag, otherCount == key.count,
                    key.count == 0 || memcmp(keyBytes + otherStart, key.baseAddress!, key.count) == 0
                {
                    duplicate = true
                    break
                }
                slot = (slot + 1) & mask
            }
            if duplicate {
                hasDuplicates = true
            } else {
                slots[slot] = tag << 32 | UInt64(position + 1)
            }
        }
        self.hasDuplicates = hasDuplicates
        self.slots = Frozen(slots)
        lookup = Lookup(
            slots: self.slots.pointer, mask: mask, ends: self.ends.pointer, bytes: keyBytes, count: ends.count)
    }

    init(keys: [String]) {
        var bytes: [UInt8] = []
        var ends: [UInt32] = []
        ends.reserveCapacity(keys.count)
        for key in keys {
            bytes.append(contentsOf: key.utf8)
            ends.append(UInt32(bytes.count))
        }
        self.init(bytes: bytes, ends: ends)
    }

    func key(at position: Int) -> String {
        String(decoding: lookup.key(at: position), as: UTF8.self)
    }

    /// Whether this index holds exactly the keys `bytes` and `ends` describe, in that order.
    func sameKeys(bytes: [UInt8], ends: [UInt32]) -> Bool {
        guard count == ends.count else { return false }
        if count == 0 { return true }
        let byteCount = Int(lookup.ends[count - 1])
        guard byteCount == bytes.count else { return false }
        return ends.withUnsafeBytes { memcmp(lookup.ends, $0.baseAddress!, count * 4) == 0 }
            && bytes.withUnsafeBytes { memcmp(lookup.bytes, $0.baseAddress!, byteCount) == 0 }
    }

    /// A hash of `bytes` taken eight bytes at a time, each word folded in with a multiply and a
    /// shift (tenant ids and feature keys are short; see the engine's `KeyIndex.hash`).
    @inline(__always)
    static func hash(_ bytes: UnsafeRawBufferPointer) -> Int {
        var hash = 0x9e37_79b9_7f4a_7c15 ^ UInt64(bytes.count)
        guard let base = bytes.baseAddress else { return Int(truncatingIfNeeded: mix(hash)) }
        var i = 0
        while i + 8 <= bytes.count {
            hash = mix(hash ^ base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            i += 8
        }
        if i < bytes.count {
            var tail: UInt64 = 0
            var shift: UInt64 = 0
            while i < bytes.count {
                tail |= UInt64(base.load(fromByteOffset: i, as: UInt8.self)) << shift
                shift += 8
                i += 1
            }
            hash = mix(hash ^ tail)
        }
        return Int(truncatingIfNeeded: hash)
    }

    @inline(__always)
    private static func mix(_ x: UInt64) -> UInt64 {
        let y = (x ^ (x >> 32)) &* 0xd6e8_feb8_6659_fd93
        return y ^ (y >> 32)
    }
}
