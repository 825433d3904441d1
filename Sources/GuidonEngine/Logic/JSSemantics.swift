import GuidonJSON

// Core JSON Logic follows json-logic-js, so its coercions are JavaScript's:
// truthiness, `ToNumber`, `ToString`, abstract (`==`) and strict (`===`) equality,
// and the abstract relational comparison behind `<`. Strings are compared by code
// point (UTF-8 bytes), never by Swift's canonical equivalence.

enum JS {
    /// JSON Logic truthiness: like JavaScript, except that an empty array is false.
    @inline(__always)
    static func truthy(_ value: JSONValue) -> Bool {
        switch value {
        case .null: false
        case .bool(let b): b
        case .int(let i): i != 0
        case .double(let d): d != 0 && !d.isNaN
        case .string(let s): !s.utf8.isEmpty
        case .array(let a): !a.isEmpty
        case .object: true
        }
    }

    /// JavaScript `ToNumber` (arrays through their string form).
    static func number(_ value: JSONValue) -> Double {
        switch value {
        case .null: 0
        case .bool(let b): b ? 1 : 0
        case .int(let i): Double(i)
        case .double(let d): d
        case .string(let s): number(parsing: s)
        case .array: number(parsing: string(value))
        case .object: .nan
        }
    }

    /// JavaScript `StringToNumber`: trimmed decimal, `Infinity`, or 0x/0o/0b literals; else NaN.
    static func number(parsing text: String) -> Double {
        let trimmed = trimmingSpace(text)
        if trimmed.isEmpty { return 0 }
        let bytes = Array(trimmed.utf8)
        if bytes.count > 2, bytes[0] == UInt8(ascii: "0") {
            let radix: Int? =
                switch bytes[1] | 0x20 {
                case UInt8(ascii: "x"): 16
                case UInt8(ascii: "o"): 8
                case UInt8(ascii: "b"): 2
                default: nil
                }
            if let radix {
                var value = 0.0
                for b in bytes[2...] {
                    guard let digit = Int(String(UnicodeScalar(b)), radix: radix) else { return .nan }
                    value = value * Double(radix) + Double(digit)
                }
                return value
            }
        }
        var i = 0
        var sign = 1.0
        if bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") {
            if bytes[i] == UInt8(ascii: "-") { sign = -1 }
            i += 1
        }
        if Array(bytes[i...]) == Array("Infinity".utf8) { return sign * .infinity }
        // StrUnsignedDecimalLiteral: digits [. digits] [exp] | . digits [exp]
        var digits = 0
        while i < bytes.count, isDigit(bytes[i]) { i += 1; digits += 1 }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1
            while i < bytes.count, isDigit(bytes[i]) { i += 1; digits += 1 }
        }
        guard digits > 0 else { return .nan }
        if i < bytes.count, bytes[i] | 0x20 == UInt8(ascii: "e") {
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            var expDigits = 0
            while i < bytes.count, isDigit(bytes[i]) { i += 1; expDigits += 1 }
            guard expDigits > 0 else { return .nan }
        }
        guard i == bytes.count else { return .nan }
        var literal = String(decoding: bytes, as: UTF8.self)
        if literal.hasSuffix(".") { literal += "0" }
        if literal.hasPrefix(".") || literal.hasPrefix("-.") || literal.hasPrefix("+.") {
            literal = literal.replacingFirst(".", with: "0.")
        }
        return Double(literal) ?? .nan
    }

    /// JavaScript `parseFloat(String(value))`: the longest prefix of the text (after white
    /// space) that is a decimal number or `Infinity`, else NaN. No hexadecimal, no exponent
    /// without digits; `null` and booleans are text that is not a number.
    static func parseFloat(_ value: JSONValue) -> Double {
        switch value {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .string(let s): return parseFloat(text: s)
        default: return parseFloat(text: string(value))
        }
    }

    static func parseFloat(text: String) -> Double {
        let bytes = Array(trimmingSpace(text, trailing: false).utf8)
        var i = 0
        var sign = 1.0
        if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") {
            if bytes[i] == UInt8(ascii: "-") { sign = -1 }
            i += 1
        }
        if bytes[i...].starts(with: "Infinity".utf8) { return sign * .infinity }
        let start = i
        var digits = 0
        while i < bytes.count, isDigit(bytes[i]) { i += 1; digits += 1 }
        var end = i
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1
            while i < bytes.count, isDigit(bytes[i]) { i += 1; digits += 1 }
            end = i
        }
        guard digits > 0 else { return .nan }
        if i < bytes.count, bytes[i] | 0x20 == UInt8(ascii: "e") {
            var j = i + 1
            if j < bytes.count, bytes[j] == UInt8(ascii: "+") || bytes[j] == UInt8(ascii: "-") { j += 1 }
            let exponentStart = j
            while j < bytes.count, isDigit(bytes[j]) { j += 1 }
            if j > exponentStart { end = j }
        }
        // Swift's `Double` reads "5." and ".5" only with a digit on each side.
        var literal = Array(bytes[start..<end])
        if literal.first == UInt8(ascii: ".") { literal.insert(UInt8(ascii: "0"), at: 0) }
        if let dot = literal.firstIndex(of: UInt8(ascii: ".")), dot + 1 == literal.count || !isDigit(literal[dot + 1]) {
            literal.insert(UInt8(ascii: "0"), at: dot + 1)
        }
        return sign * (Double(String(decoding: literal, as: UTF8.self)) ?? .nan)
    }

    @inline(__always) static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

    /// JavaScript's white space and line terminators (what `trim`, `Number` and `parseFloat` skip).
    static func isSpace(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x09...0x0D, 0x20, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0xFEFF: true
        default: false
        }
    }

    static func trimmingSpace(_ text: String, trailing: Bool = true) -> Substring {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !isSpace($0) }) else { return text[text.endIndex...] }
        let last = trailing ? scalars.lastIndex(where: { !isSpace($0) })! : scalars.index(before: scalars.endIndex)
        return Substring(scalars[first...last])
    }

    /// JavaScript `ToString` (what `cat`, `in` and `substr` see).
    static func string(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool(let b): b ? "true" : "false"
        case .int(let i): String(i)
        case .double(let d): numberString(d)
        case .string(let s): s
        case .array(let a):
            // Array.prototype.join: null elements become "".
            a.map { $0.isNull ? "" : string($0) }.joined(separator: ",")
        case .object: "[object Object]"
        }
    }

    /// JavaScript's `Number.prototype.toString()`: the shortest round-tripping digits,
    /// positional between 1e-7 and 1e21, exponential outside.
    static func numberString(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
        if d == 0 { return "0" }
        if d == d.rounded(), abs(d) < 1e18 { return String(Int64(d)) }
        // Decompose Swift's shortest representation ("1.25e+20", "0.001", "123.45").
        let text = abs(d).description
        let parts = text.split(separator: "e", maxSplits: 1)
        let mantissa = parts[0]
        let exponent = parts.count > 1 ? Int(parts[1])! : 0
        var digits = Array(mantissa.utf8.filter { $0 != UInt8(ascii: ".") })
        var point = (mantissa.utf8.firstIndex(of: UInt8(ascii: ".")).map { mantissa.utf8.distance(from: mantissa.utf8.startIndex, to: $0) } ?? mantissa.utf8.count) + exponent
        while digits.first == UInt8(ascii: "0") {
            digits.removeFirst()
            point -= 1
        }
        while digits.last == UInt8(ascii: "0") { digits.removeLast() }
        let k = digits.count
        let n = point
        var out = d < 0 ? "-" : ""
        let ds = String(decoding: digits, as: UTF8.self)
        if k <= n && n <= 21 {
            out += ds + String(repeating: "0", count: n - k)
        } else if 0 < n && n <= 21 {
            out += String(ds.prefix(n)) + "." + String(ds.dropFirst(n))
        } else if -6 < n && n <= 0 {
            out += "0." + String(repeating: "0", count: -n) + ds
        } else {
            let e = n - 1
            out += String(ds.prefix(1))
            if k > 1 { out += "." + String(ds.dropFirst()) }
            out += "e" + (e < 0 ? "-" : "+") + String(abs(e))
        }
        return out
    }

    /// Byte-wise (code point) string equality.
    @inline(__always)
    static func same(_ a: String, _ b: String) -> Bool {
        guard a.utf8.count == b.utf8.count else { return false }
        let result = withBytes(a) { x in withBytes(b) { y in sameBytes(x, y) } }
        return (result ?? nil) ?? a.utf8.elementsEqual(b.utf8)
    }

    /// `===`: same type and value (numbers by value; arrays and objects by contents).
    static func strictEquals(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case (.bool(let x), .bool(let y)): x == y
        case (.int(let x), .int(let y)): x == y
        case (.int, .double), (.double, .int), (.double, .double): a.number! == b.number!
        case (.string(let x), .string(let y)): same(x, y)
        case (.array(let x), .array(let y)):
            x.count == y.count && zip(x, y).allSatisfy { strictEquals($0, $1) }
        case (.object(let x), .object(let y)):
            x.count == y.count && x.allSatisfy { member in y[member.key].map { strictEquals(member.value, $0) } ?? false }
        default: false
        }
    }

    /// `==`: JavaScript's abstract equality (arrays compare through their string form
    /// against primitives; two arrays or objects compare by contents).
    static func looseEquals(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.null, _), (_, .null): return false
        case (.string(let x), .string(let y)): return same(x, y)
        case (.int(let x), .int(let y)): return x == y
        case (.bool(let x), .bool(let y)): return x == y
        case (.int, .double), (.double, .int), (.double, .double): return a.number! == b.number!
        case (.array, .array), (.object, .object), (.array, .object), (.object, .array):
            return strictEquals(a, b)
        case (.bool(let x), _): return looseEquals(.int(x ? 1 : 0), b)
        case (_, .bool(let y)): return looseEquals(a, .int(y ? 1 : 0))
        case (.string(let s), .int), (.string(let s), .double): return number(parsing: s) == b.number!
        case (.int, .string(let s)), (.double, .string(let s)): return a.number! == number(parsing: s)
        case (.array, _), (.object, _): return looseEquals(.string(string(a)), b)
        case (_, .array), (_, .object): return looseEquals(a, .string(string(b)))
        }
    }

    /// JavaScript's abstract relational comparison: `nil` when undefined (NaN involved).
    static func compare(_ a: JSONValue, _ b: JSONValue) -> Comparison? {
        switch (a, b) {
        case (.int(let x), .int(let y)): return x < y ? .less : (x == y ? .equal : .greater)
        case (.string(let x), .string(let y)): return compareStrings(x, y)
        default: break
        }
        let pa = primitive(a)
        let pb = primitive(b)
        if case .string(let x) = pa, case .string(let y) = pb { return compareStrings(x, y) }
        let x = number(pa)
        let y = number(pb)
        if x.isNaN || y.isNaN { return nil }
        return x < y ? .less : (x == y ? .equal : .greater)
    }

    enum Comparison { case less, equal, greater }

    static func primitive(_ v: JSONValue) -> JSONValue {
        switch v {
        case .array, .object: .string(string(v))
        default: v
        }
    }

    /// JavaScript compares strings by UTF-16 code units.
    static func compareStrings(_ x: String, _ y: String) -> Comparison {
        var i = x.utf16.makeIterator()
        var j = y.utf16.makeIterator()
        while true {
            switch (i.next(), j.next()) {
            case (nil, nil): return .equal
            case (nil, _): return .less
            case (_, nil): return .greater
            case (let p?, let q?):
                if p != q { return p < q ? .less : .greater }
            }
        }
    }
}

extension String {
    fileprivate func replacingFirst(_ target: Character, with replacement: String) -> String {
        guard let i = firstIndex(of: target) else { return self }
        return String(self[..<i]) + replacement + String(self[index(after: i)...])
    }
}
