import GuidonJSON

/// A compiled `fractional` rule.
///
/// The recipe is the OpenFeature reference evaluator's: the bucketing value (an explicit
/// first argument, else `[flagKey, targetingKey]`) is encoded as canonical CBOR, hashed with
/// MurmurHash3 x86 32-bit (seed 0), scaled with `(hash × totalWeight) >> 32` and looked up
/// in the cumulative weights, in listed order.
struct Fractional: Sendable {
    enum Bucket: Sendable {
        /// `[name]` or `[name, weight]` written as an array literal.
        case literal(name: Node, weight: Node?)
        /// Anything else: must evaluate to such an array.
        case computed(Node)
    }

    /// The first argument when it is not statically a bucket: evaluated at run time, it is
    /// the bucketing value unless it turns out to be an array (then it is a bucket).
    let first: Node?
    let buckets: [Bucket]
    /// The weights when all are literal integers (used unless a computed first argument
    /// turns out to be an extra bucket).
    let literalWeights: [UInt64]?
    let literalTotal: UInt64

    static let maxTotalWeight: UInt64 = 2_147_483_647

    init(first: Node?, buckets: [Bucket]) {
        self.first = first
        self.buckets = buckets
        var weights: [UInt64] = []
        var total: UInt64 = 0
        scan: for bucket in buckets {
            guard case .literal(_, let weightNode) = bucket else { break scan }
            let weight: UInt64
            switch weightNode {
            case nil: weight = 1
            case .constant(.int(let w))?: weight = Self.weight(.int(w))!
            default: break scan
            }
            weights.append(weight)
            total = min(total + weight, Self.maxTotalWeight + 1)
        }
        literalWeights = weights.count == buckets.count ? weights : nil
        literalTotal = total
    }

    /// The weight a bucket's weight value stands for; `nil` makes the whole rule null.
    @inline(__always)
    static func weight(_ value: JSONValue) -> UInt64? {
        guard case .int(let w) = value else { return nil }
        return UInt64(max(0, min(w, Int64(maxTotalWeight) + 1)))
    }

    /// Which bucket `hash` falls in, given the weights in order.
    @inline(__always)
    static func scale(_ hash: UInt32, total: UInt64) -> UInt64 {
        (UInt64(hash) &* total) >> 32
    }
}

/// MurmurHash3, x86 32-bit variant, fed incrementally (no buffer).
struct Murmur3 {
    private var h: UInt32
    private var tail: UInt32 = 0
    private var tailCount = 0
    private var length = 0

    init(seed: UInt32 = 0) { h = seed }

    private static let c1: UInt32 = 0xcc9e_2d51
    private static let c2: UInt32 = 0x1b87_3593

    @inline(__always)
    private static func mix(_ k: UInt32) -> UInt32 {
        var k = k &* c1
        k = (k << 15) | (k >> 17)
        return k &* c2
    }

    @inline(__always)
    mutating func combine(_ byte: UInt8) {
        tail |= UInt32(byte) << (8 * UInt32(tailCount))
        tailCount += 1
        length += 1
        if tailCount == 4 {
            h ^= Self.mix(tail)
            h = (h << 13) | (h >> 19)
            h = h &* 5 &+ 0xe654_6b64
            tail = 0
            tailCount = 0
        }
    }

    mutating func combine(_ bytes: UnsafeRawBufferPointer) {
        for b in bytes { combine(b) }
    }

    mutating func combine(_ string: String) {
        var string = string
        string.withUTF8 { combine(UnsafeRawBufferPointer($0)) }
    }

    func finalize() -> UInt32 {
        var h = self.h
        if tailCount > 0 { h ^= Self.mix(tail) }
        h ^= UInt32(truncatingIfNeeded: length)
        h ^= h >> 16
        h = h &* 0x85eb_ca6b
        h ^= h >> 13
        h = h &* 0xc2b2_ae35
        h ^= h >> 16
        return h
    }
}

/// Canonical CBOR (RFC 8949 core deterministic encoding) of JSON values, written straight
/// into a hasher. Integral floats within [-2^63, 2^64) are written as integers.
enum CBOR {
    static func head(_ major: UInt8, _ argument: UInt64, into sink: inout Murmur3) {
        let m = major << 5
        switch argument {
        case 0..<24:
            sink.combine(m | UInt8(argument))
        case 24...0xFF:
            sink.combine(m | 24)
            sink.combine(UInt8(argument))
        case 0x100...0xFFFF:
            sink.combine(m | 25)
            for shift in stride(from: 8, through: 0, by: -8) { sink.combine(UInt8(truncatingIfNeeded: argument >> UInt64(shift))) }
        case 0x1_0000...0xFFFF_FFFF:
            sink.combine(m | 26)
            for shift in stride(from: 24, through: 0, by: -8) { sink.combine(UInt8(truncatingIfNeeded: argument >> UInt64(shift))) }
        default:
            sink.combine(m | 27)
            for shift in stride(from: 56, through: 0, by: -8) { sink.combine(UInt8(truncatingIfNeeded: argument >> UInt64(shift))) }
        }
    }

    static func text(_ s: String, into sink: inout Murmur3) {
        head(3, UInt64(s.utf8.count), into: &sink)
        sink.combine(s)
    }

    static func integer(_ i: Int64, into sink: inout Murmur3) {
        if i >= 0 {
            head(0, UInt64(i), into: &sink)
        } else {
            head(1, UInt64(bitPattern: ~i), into: &sink)
        }
    }

    static func encode(_ value: JSONValue, into sink: inout Murmur3) {
        switch value {
        case .null: sink.combine(0xF6)
        case .bool(let b): sink.combine(b ? 0xF5 : 0xF4)
        case .int(let i): integer(i, into: &sink)
        case .double(let d): float(d, into: &sink)
        case .string(let s): text(s, into: &sink)
        case .array(let a):
            head(4, UInt64(a.count), into: &sink)
            for element in a { encode(element, into: &sink) }
        case .object(let o):
            head(5, UInt64(o.count), into: &sink)
            // Members sorted by the bytes of their encoded keys.
            let sorted = o.sorted { lhs, rhs in
                let l = lhs.key.utf8.count
                let r = rhs.key.utf8.count
                if l != r { return l < r }
                return lhs.key.utf8.lexicographicallyPrecedes(rhs.key.utf8)
            }
            for (key, member) in sorted {
                text(key, into: &sink)
                encode(member, into: &sink)
            }
        }
    }

    static func float(_ d: Double, into sink: inout Murmur3) {
        if d == d.rounded(.towardZero), d >= -9_223_372_036_854_775_808.0, d < 18_446_744_073_709_551_616.0 {
            if d < 0 {
                integer(Int64(d), into: &sink)
            } else {
                head(0, UInt64(d), into: &sink)
            }
            return
        }
        #if arch(x86_64) || arch(arm64)
        let half = Float16(d)
        if Double(half) == d || d.isNaN {
            sink.combine(0xF9)
            let bits = half.bitPattern
            sink.combine(UInt8(bits >> 8))
            sink.combine(UInt8(truncatingIfNeeded: bits))
            return
        }
        #endif
        let single = Float(d)
        if Double(single) == d {
            sink.combine(0xFA)
            let bits = single.bitPattern
            for shift in stride(from: 24, through: 0, by: -8) { sink.combine(UInt8(truncatingIfNeeded: bits >> UInt32(shift))) }
            return
        }
        sink.combine(0xFB)
        let bits = d.bitPattern
        for shift in stride(from: 56, through: 0, by: -8) { sink.combine(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
    }
}
