import GuidonJSON

/// A semantic version as `sem_ver` reads it: an optional `v`/`V` prefix, then
/// `MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD]` (missing parts are 0; build is ignored).
///
/// Parts are kept as byte ranges of the original text, so parsing never allocates and
/// numbers of any length compare correctly.
struct SemVer: Sendable {
    enum Operator: String, Sendable, CaseIterable {
        case equal = "=", notEqual = "!=", less = "<", lessOrEqual = "<="
        case greater = ">", greaterOrEqual = ">=", sameMajor = "^", sameMinor = "~"
    }

    let text: String
    /// Digit ranges; an empty range stands for a missing part (0).
    let major: Range<Int>
    let minor: Range<Int>
    let patch: Range<Int>
    let prerelease: Range<Int>?

    init?(_ text: String) {
        let parsed = withBytes(text, Self.parse) ?? Array(text.utf8).withUnsafeBufferPointer(Self.parse)
        guard let parsed else { return nil }
        self.text = text
        (major, minor, patch, prerelease) = parsed
    }

    /// A JSON value as a version: strings as written, numbers through their text. A float of
    /// 1e16 or more is none: the reference evaluator writes it in exponent form (`1e+16`), which is
    /// no version (found by the differential test).
    init?(_ value: JSONValue) {
        switch value {
        case .string(let s): self.init(s)
        case .int: self.init(JS.string(value))
        case .double(let d):
            guard abs(d) < 1e16 else { return nil }
            self.init(JS.string(value))
        default: return nil
        }
    }

    private typealias Parts = (Range<Int>, Range<Int>, Range<Int>, Range<Int>?)

    private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Parts? {
        var i = 0
        let end = bytes.count
        if i < end, bytes[i] | 0x20 == UInt8(ascii: "v") { i += 1 }

        func number(_ i: inout Int) -> Range<Int>? {
            let start = i
            while i < end, JS.isDigit(bytes[i]) { i += 1 }
            guard start < i else { return nil }
            if bytes[start] == UInt8(ascii: "0"), i - start > 1 { return nil }  // no leading zeros
            return start..<i
        }
        func identifiers(_ i: inout Int, numericRules: Bool) -> Range<Int>? {
            let start = i
            while true {
                let idStart = i
                var allDigits = true
                while i < end {
                    let b = bytes[i]
                    let alpha = (b | 0x20) >= UInt8(ascii: "a") && (b | 0x20) <= UInt8(ascii: "z")
                    guard JS.isDigit(b) || alpha || b == UInt8(ascii: "-") else { break }
                    if !JS.isDigit(b) { allDigits = false }
                    i += 1
                }
                guard idStart < i else { return nil }
                if numericRules, allDigits, bytes[idStart] == UInt8(ascii: "0"), i - idStart > 1 { return nil }
                guard i < end, bytes[i] == UInt8(ascii: ".") else { break }
                i += 1
            }
            return start..<i
        }

        guard let major = number(&i) else { return nil }
        var minor = 0..<0
        var patch = 0..<0
        if i < end, bytes[i] == UInt8(ascii: ".") {
            i += 1
            guard let m = number(&i) else { return nil }
            minor = m
            if i < end, bytes[i] == UInt8(ascii: ".") {
                i += 1
                guard let p = number(&i) else { return nil }
                patch = p
            }
        }
        var prerelease: Range<Int>?
        if i < end, bytes[i] == UInt8(ascii: "-") {
            i += 1
            guard let p = identifiers(&i, numericRules: true) else { return nil }
            prerelease = p
        }
        if i < end, bytes[i] == UInt8(ascii: "+") {
            i += 1
            guard identifiers(&i, numericRules: false) != nil else { return nil }
        }
        guard i == end else { return nil }
        return (major, minor, patch, prerelease)
    }

    func satisfies(_ op: Operator, _ other: SemVer) -> Bool {
        let result = withBytes(text) { a in
            withBytes(other.text) { b in satisfies(op, other, a, b) }
        }
        if let r = result ?? nil { return r }
        // Non-contiguous strings (never native ones): compare contiguous copies.
        let a = Array(text.utf8)
        let b = Array(other.text.utf8)
        return a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in satisfies(op, other, a, b) } }
    }

    private func satisfies(_ op: Operator, _ other: SemVer, _ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        func number(_ x: Range<Int>, _ y: Range<Int>) -> Int { Self.compareNumbers(a, x, b, y) }
        switch op {
        case .sameMajor: return number(major, other.major) == 0
        case .sameMinor: return number(major, other.major) == 0 && number(minor, other.minor) == 0
        default: break
        }
        var c = number(major, other.major)
        if c == 0 { c = number(minor, other.minor) }
        if c == 0 { c = number(patch, other.patch) }
        if c == 0 {
            switch (prerelease, other.prerelease) {
            case (nil, nil): c = 0
            case (nil, _): c = 1
            case (_, nil): c = -1
            case (let x?, let y?): c = Self.comparePrerelease(a, x, b, y)
            }
        }
        switch op {
        case .equal: return c == 0
        case .notEqual: return c != 0
        case .less: return c < 0
        case .lessOrEqual: return c <= 0
        case .greater: return c > 0
        case .greaterOrEqual: return c >= 0
        case .sameMajor, .sameMinor: return false  // handled above
        }
    }

    /// Decimal digit strings without leading zeros (an empty range is 0): longer is larger,
    /// else byte order.
    static func compareNumbers(_ a: UnsafeBufferPointer<UInt8>, _ x: Range<Int>, _ b: UnsafeBufferPointer<UInt8>, _ y: Range<Int>) -> Int {
        let zero = UInt8(ascii: "0")
        let lx = max(x.count, 1)
        let ly = max(y.count, 1)
        if lx != ly { return lx < ly ? -1 : 1 }
        for k in 0..<lx {
            let p = x.isEmpty ? zero : a[x.lowerBound + k]
            let q = y.isEmpty ? zero : b[y.lowerBound + k]
            if p != q { return p < q ? -1 : 1 }
        }
        return 0
    }

    /// Prerelease precedence as the reference evaluator's semver library has it:
    /// identifier by identifier (numbers below words), then the longer string wins.
    static func comparePrerelease(_ a: UnsafeBufferPointer<UInt8>, _ x: Range<Int>, _ b: UnsafeBufferPointer<UInt8>, _ y: Range<Int>) -> Int {
        var i = x.lowerBound
        var j = y.lowerBound
        while i < x.upperBound, j < y.upperBound {
            var ie = i
            while ie < x.upperBound, a[ie] != UInt8(ascii: ".") { ie += 1 }
            var je = j
            while je < y.upperBound, b[je] != UInt8(ascii: ".") { je += 1 }
            let xNumeric = (i..<ie).allSatisfy { JS.isDigit(a[$0]) }
            let yNumeric = (j..<je).allSatisfy { JS.isDigit(b[$0]) }
            let c: Int
            switch (xNumeric, yNumeric) {
            case (true, true): c = compareNumbers(a, i..<ie, b, j..<je)
            case (true, false): c = -1
            case (false, true): c = 1
            case (false, false):
                let p = UnsafeBufferPointer(rebasing: a[i..<ie])
                let q = UnsafeBufferPointer(rebasing: b[j..<je])
                c = p.lexicographicallyPrecedes(q) ? -1 : (p.elementsEqual(q) ? 0 : 1)
            }
            if c != 0 { return c }
            i = ie + 1
            j = je + 1
        }
        let (ca, cb) = (x.count, y.count)
        return ca == cb ? 0 : (ca < cb ? -1 : 1)
    }
}

/// Runs `body` over the UTF-8 bytes of a string without copying them (native and small
/// strings); `nil` when the string has no contiguous UTF-8 storage.
@inline(__always)
func withBytes<R>(_ s: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R? {
    s.utf8.withContiguousStorageIfAvailable(body)
}

/// Whether two byte runs are equal, compared eight bytes at a time (`elementsEqual` showed in
/// profiles, and so did a loop over single bytes).
@inline(__always)
func sameBytes(_ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>) -> Bool {
    guard x.count == y.count else { return false }
    guard let a = x.baseAddress, let b = y.baseAddress else { return true }
    let (wordsA, wordsB) = (UnsafeRawPointer(a), UnsafeRawPointer(b))
    var i = 0
    while i + 8 <= x.count {
        if wordsA.loadUnaligned(fromByteOffset: i, as: UInt64.self) != wordsB.loadUnaligned(fromByteOffset: i, as: UInt64.self) {
            return false
        }
        i += 8
    }
    while i < x.count {
        if a[i] != b[i] { return false }
        i += 1
    }
    return true
}
