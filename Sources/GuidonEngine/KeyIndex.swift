/// Flag key → position, by the key's bytes: an open-addressing table of positions, probed
/// linearly from a hash of the key's UTF-8.
///
/// Looking a key up this way costs a fraction of a `[String: Int]` lookup, which hashes with
/// SipHash and normalises for canonical equivalence. So a snapshot looks keys up here first and
/// asks its dictionary only when a key is not found byte for byte (a missing flag, or a key
/// spelled in another canonically equivalent way), which keeps the dictionary's answers.
/// Keys come from the flag file, so collisions are not an attacker's to choose.
///
/// The index holds the keys' bytes itself, so that a lookup reads no flag's key: copying one
/// (a string too long to be stored inline) would count a reference to storage that every
/// thread shares, an atomic operation.
struct KeyIndex: Sendable {
    /// Positions plus one; 0 marks an empty slot.
    private let slots: [Int32]
    private let mask: Int
    /// Every key's UTF-8, one after the other, and where each (by position) ends.
    private let bytes: [UInt8]
    private let ends: [Int]

    /// Indexes `keys` by position (the first of byte-identical keys wins).
    init(_ keys: [String]) {
        var bytes: [UInt8] = []
        var ends: [Int] = []
        ends.reserveCapacity(keys.count)
        for key in keys {
            bytes.append(contentsOf: key.utf8)
            ends.append(bytes.count)
        }
        self.bytes = bytes
        self.ends = ends
        var capacity = 8
        while capacity < keys.count * 2 { capacity *= 2 }
        var slots = [Int32](repeating: 0, count: capacity)
        let mask = capacity - 1
        self.mask = mask
        bytes.withUnsafeBufferPointer { all in
            for position in keys.indices {
                let key = Self.bytes(of: position, in: all, ends: ends)
                var slot = Self.hash(key) & mask
                while slots[slot] != 0 {
                    if sameBytes(Self.bytes(of: Int(slots[slot]) - 1, in: all, ends: ends), key) { break }
                    slot = (slot + 1) & mask
                }
                if slots[slot] == 0 { slots[slot] = Int32(position + 1) }
            }
        }
        self.slots = slots
    }

    /// The position of the key whose bytes are `key`'s.
    @inline(__always)
    func position(of key: String) -> Int? {
        if let found = key.utf8.withContiguousStorageIfAvailable({ position(ofBytes: $0) }) { return found }
        var key = key
        return key.withUTF8 { position(ofBytes: $0) }
    }

    @inline(__always)
    private func position(ofBytes key: UnsafeBufferPointer<UInt8>) -> Int? {
        bytes.withUnsafeBufferPointer { all in
            var slot = Self.hash(key) & mask
            while slots[slot] != 0 {
                let position = Int(slots[slot]) - 1
                if sameBytes(Self.bytes(of: position, in: all, ends: ends), key) { return position }
                slot = (slot + 1) & mask
            }
            return nil
        }
    }

    @inline(__always)
    private static func bytes(of position: Int, in all: UnsafeBufferPointer<UInt8>, ends: [Int]) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(rebasing: all[(position == 0 ? 0 : ends[position - 1])..<ends[position]])
    }

    /// A hash of `bytes` taken eight bytes at a time (the last few together), each word folded
    /// in with a multiply and a shift: flag keys are 10–30 bytes, and a multiply per byte showed
    /// in profiles of 16-flag batches.
    @inline(__always)
    static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var hash = 0x9e37_79b9_7f4a_7c15 ^ UInt64(bytes.count)
        guard let base = bytes.baseAddress else { return Int(truncatingIfNeeded: hash) }
        let words = UnsafeRawPointer(base)
        var i = 0
        while i + 8 <= bytes.count {
            hash = mix(hash ^ words.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            i += 8
        }
        if i < bytes.count {
            var tail: UInt64 = 0
            var shift: UInt64 = 0
            while i < bytes.count {
                tail |= UInt64(base[i]) << shift
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
