import GuidonJSON

/// A semantic version as `sem_ver` reads it: an optional `v`/`V` prefix, then
/// `MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD]` (missing parts are 0; build is ignored).
///
/// Parts are kept as slices of the original text, so parsing never allocates and
/// numbers of any length compare correctly.
struct SemVer: Sendable {
    enum Operator: String, Sendable, CaseIterable {
        case equal = "=", notEqual = "!=", less = "<", lessOrEqual = "<="
        case greater = ">", greaterOrEqual = ">=", sameMajor = "^", sameMinor = "~"
    }

    let major: Substring
    let minor: Substring
    let patch: Substring
    let prerelease: Substring?

    private static let zero: Substring = "0"

    init?(_ text: String) {
        let utf8 = text.utf8
        var i = utf8.startIndex
        let end = utf8.endIndex
        if i < end, utf8[i] | 0x20 == UInt8(ascii: "v") { i = utf8.index(after: i) }

        func number(_ i: inout String.Index) -> Substring? {
            let start = i
            while i < end, JS.isDigit(utf8[i]) { i = utf8.index(after: i) }
            guard start < i else { return nil }
            // No leading zeros.
            if utf8[start] == UInt8(ascii: "0"), utf8.index(after: start) < i { return nil }
            return text[start..<i]
        }
        func identifiers(_ i: inout String.Index, numericRules: Bool) -> Substring? {
            let start = i
            while true {
                let idStart = i
                var allDigits = true
                while i < end {
                    let b = utf8[i]
                    let alpha = (b | 0x20) >= UInt8(ascii: "a") && (b | 0x20) <= UInt8(ascii: "z")
                    guard JS.isDigit(b) || alpha || b == UInt8(ascii: "-") else { break }
                    if !JS.isDigit(b) { allDigits = false }
                    i = utf8.index(after: i)
                }
                guard idStart < i else { return nil }
                if numericRules, allDigits, utf8[idStart] == UInt8(ascii: "0"), utf8.index(after: idStart) < i { return nil }
                guard i < end, utf8[i] == UInt8(ascii: ".") else { break }
                i = utf8.index(after: i)
            }
            return text[start..<i]
        }

        guard let major = number(&i) else { return nil }
        var minor = Self.zero
        var patch = Self.zero
        if i < end, utf8[i] == UInt8(ascii: ".") {
            i = utf8.index(after: i)
            guard let m = number(&i) else { return nil }
            minor = m
            if i < end, utf8[i] == UInt8(ascii: ".") {
                i = utf8.index(after: i)
                guard let p = number(&i) else { return nil }
                patch = p
            }
        }
        var prerelease: Substring?
        if i < end, utf8[i] == UInt8(ascii: "-") {
            i = utf8.index(after: i)
            guard let p = identifiers(&i, numericRules: true) else { return nil }
            prerelease = p
        }
        if i < end, utf8[i] == UInt8(ascii: "+") {
            i = utf8.index(after: i)
            guard identifiers(&i, numericRules: false) != nil else { return nil }
        }
        guard i == end else { return nil }
        self.major = major
        self.minor = minor
        self.patch = patch
        self.prerelease = prerelease
    }

    /// A JSON value as a version: strings as written, numbers through their text.
    init?(_ value: JSONValue) {
        switch value {
        case .string(let s): self.init(s)
        case .int, .double: self.init(JS.string(value))
        default: return nil
        }
    }

    func satisfies(_ op: Operator, _ other: SemVer) -> Bool {
        switch op {
        case .equal: compare(other) == 0
        case .notEqual: compare(other) != 0
        case .less: compare(other) < 0
        case .lessOrEqual: compare(other) <= 0
        case .greater: compare(other) > 0
        case .greaterOrEqual: compare(other) >= 0
        case .sameMajor: Self.compareNumbers(major, other.major) == 0
        case .sameMinor: Self.compareNumbers(major, other.major) == 0 && Self.compareNumbers(minor, other.minor) == 0
        }
    }

    func compare(_ other: SemVer) -> Int {
        var c = Self.compareNumbers(major, other.major)
        if c == 0 { c = Self.compareNumbers(minor, other.minor) }
        if c == 0 { c = Self.compareNumbers(patch, other.patch) }
        if c != 0 { return c }
        switch (prerelease, other.prerelease) {
        case (nil, nil): return 0
        case (nil, _): return 1
        case (_, nil): return -1
        case (let a?, let b?): return Self.comparePrerelease(a, b)
        }
    }

    /// Decimal digit strings without leading zeros: longer is larger, else byte order.
    static func compareNumbers(_ a: Substring, _ b: Substring) -> Int {
        let (ca, cb) = (a.utf8.count, b.utf8.count)
        if ca != cb { return ca < cb ? -1 : 1 }
        for (x, y) in zip(a.utf8, b.utf8) where x != y { return x < y ? -1 : 1 }
        return 0
    }

    /// Prerelease precedence as the reference evaluator's semver library has it:
    /// identifier by identifier (numbers below words), then the longer string wins.
    static func comparePrerelease(_ a: Substring, _ b: Substring) -> Int {
        var ia = a.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).makeIterator()
        var ib = b.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).makeIterator()
        while let x = ia.next(), let y = ib.next() {
            let xNumeric = x.allSatisfy(JS.isDigit)
            let yNumeric = y.allSatisfy(JS.isDigit)
            let c: Int
            switch (xNumeric, yNumeric) {
            case (true, true): c = compareNumbers(Substring(x), Substring(y))
            case (true, false): c = -1
            case (false, true): c = 1
            case (false, false):
                c = x.lexicographicallyPrecedes(y) ? -1 : (x.elementsEqual(y) ? 0 : 1)
            }
            if c != 0 { return c }
        }
        let (ca, cb) = (a.utf8.count, b.utf8.count)
        return ca == cb ? 0 : (ca < cb ? -1 : 1)
    }
}
