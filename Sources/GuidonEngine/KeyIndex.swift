/// Flag key → position, by the key's bytes: an open-addressing table of positions, probed
/// linearly from a 64-bit FNV-1a hash of the key's UTF-8.
///
/// Looking a key up this way costs a fraction of a `[String: Int]` lookup, which hashes with
/// SipHash and normalises for canonical equivalence. So a snapshot looks keys up here first and
/// asks its dictionary only when a key is not found byte for byte (a missing flag, or a key
/// spelled in another canonically equivalent way), which keeps the dictionary's answers.
/// Keys come from the flag file, so collisions are not an attacker's to choose.
struct KeyIndex: Sendable {
    /// Positions plus one; 0 marks an empty slot.
    private let slots: [Int32]
    private let mask: Int

    /// Indexes `keys` by position (the first of byte-identical keys wins).
    init(_ keys: [String]) {
        var capacity = 8
        while capacity < keys.count * 2 { capacity *= 2 }
        var slots = [Int32](repeating: 0, count: capacity)
        mask = capacity - 1
        for (position, key) in keys.enumerated() {
            var slot = Self.hash(key) & mask
            while slots[slot] != 0 {
                if JS.same(keys[Int(slots[slot]) - 1], key) { break }
                slot = (slot + 1) & mask
            }
            if slots[slot] == 0 { slots[slot] = Int32(position + 1) }
        }
        self.slots = slots
    }

    /// The position of the key whose bytes are `key`'s, given the keys by position.
    @inline(__always)
    func position(of key: String, keys: (Int) -> String) -> Int? {
        var slot = Self.hash(key) & mask
        while slots[slot] != 0 {
            let position = Int(slots[slot]) - 1
            if JS.same(keys(position), key) { return position }
            slot = (slot + 1) & mask
        }
        return nil
    }

    @inline(__always)
    static func hash(_ key: String) -> Int {
        var key = key
        return key.withUTF8 { bytes in
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in bytes {
                hash = (hash ^ UInt64(byte)) &* 0x0100_0000_01b3
            }
            return Int(truncatingIfNeeded: hash ^ (hash >> 32))
        }
    }
}
