import GuidonJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A strict RFC 8259 reader over borrowed bytes, used to decode request lines without
/// copying them. It reads one value at a time, so a caller can walk an object's members
/// and decode only the ones it needs.
///
/// Strict like `GuidonJSON.JSONParser`: no comments, no trailing commas, no leading zeros,
/// no lone surrogates, no invalid UTF-8, no raw control characters in strings, duplicate
/// object keys rejected, nesting limited to `maxDepth`.
struct JSONScanner {
    let bytes: UnsafeRawBufferPointer
    let maxDepth: Int
    var position = 0

    init(_ bytes: UnsafeRawBufferPointer, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    /// Problems are reported as a message with a 1-based column (request lines are single lines).
    struct Failure: Error {
        var message: String
    }

    func fail(_ reason: String, at offset: Int? = nil) -> Failure {
        Failure(message: "column \((offset ?? position) + 1): \(reason)")
    }

    var atEnd: Bool { position >= bytes.count }

    /// Whether the bytes from the position on begin with `prefix` (never, when it is empty).
    func remaining(startWith prefix: [UInt8]) -> Bool {
        guard !prefix.isEmpty, bytes.count - position >= prefix.count else { return false }
        return prefix.withUnsafeBytes { memcmp(bytes.baseAddress! + position, $0.baseAddress!, prefix.count) == 0 }
    }

    var current: UInt8 { bytes[position] }

    func describeCurrent() -> String {
        guard position < bytes.count else { return "end of line" }
        let b = bytes[position]
        if b >= 0x21 && b < 0x7F { return "'\(Character(Unicode.Scalar(b)))'" }
        return "byte 0x\(String(b, radix: 16, uppercase: true))"
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0D, 0x0A: position += 1
            default: return
            }
        }
    }

    mutating func expect(_ byte: UInt8, _ what: String) throws(Failure) {
        skipWhitespace()
        guard position < bytes.count, bytes[position] == byte else {
            throw fail("expected \(what), found \(describeCurrent())")
        }
        position += 1
    }

    /// After an object member: `true` when another member follows, `false` at the closing brace.
    mutating func nextMember() throws(Failure) -> Bool {
        skipWhitespace()
        guard position < bytes.count else { throw fail("unexpected end of line inside an object") }
        switch bytes[position] {
        case UInt8(ascii: ","): position += 1; return true
        case UInt8(ascii: "}"): position += 1; return false
        default: throw fail("expected ',' or '}' in object, found \(describeCurrent())")
        }
    }

    /// Opens an object: `true` when it has members (positioned before the first key).
    mutating func openObject(depth: Int) throws(Failure) -> Bool {
        if depth > maxDepth { throw fail("nesting deeper than \(maxDepth) levels") }
        try expect(UInt8(ascii: "{"), "'{'")
        skipWhitespace()
        if position < bytes.count && bytes[position] == UInt8(ascii: "}") {
            position += 1
            return false
        }
        return true
    }

    /// A member name, as raw bytes when it has no escapes (the common case, compared without
    /// allocating), followed by its `:`.
    mutating func memberName() throws(Failure) -> (raw: UnsafeRawBufferPointer?, decoded: String?, offset: Int) {
        skipWhitespace()
        let offset = position
        guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
            throw fail("expected a member name in double quotes, found \(describeCurrent())")
        }
        let end = nextSpecialByte(from: position + 1)
        if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
            let raw = UnsafeRawBufferPointer(rebasing: bytes[(position + 1)..<end])
            position = end + 1
            try expect(UInt8(ascii: ":"), "':' after the member name")
            return (raw, nil, offset)
        }
        let name = try string()
        try expect(UInt8(ascii: ":"), "':' after the member name")
        return (nil, name, offset)
    }

    // MARK: Values

    mutating func value(depth: Int) throws(Failure) -> JSONValue {
        skipWhitespace()
        guard position < bytes.count else { throw fail("unexpected end of line, expected a value") }
        switch bytes[position] {
        case UInt8(ascii: "{"): return .object(try object(depth: depth + 1))
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw fail("unexpected \(describeCurrent()), expected a value")
        }
    }

    mutating func literal(_ text: StaticString) throws(Failure) {
        let count = text.utf8CodeUnitCount
        guard bytes.count - position >= count else { throw fail("invalid literal, expected '\(text)'") }
        for i in 0..<count where bytes[position + i] != text.utf8Start[i] {
            throw fail("invalid literal, expected '\(text)'")
        }
        position += count
    }

    mutating func object(depth: Int) throws(Failure) -> JSONObject {
        var object = JSONObject()
        guard try openObject(depth: depth) else { return object }
        repeat {
            skipWhitespace()
            let keyOffset = position
            let key = try string()
            try expect(UInt8(ascii: ":"), "':' after the member name")
            let member = try value(depth: depth)
            if object.contains(key) { throw fail("duplicate member \"\(key)\"", at: keyOffset) }
            object[key] = member
        } while try nextMember()
        return object
    }

    mutating func array(depth: Int) throws(Failure) -> JSONValue {
        if depth > maxDepth { throw fail("nesting deeper than \(maxDepth) levels") }
        position += 1  // [
        var elements: [JSONValue] = []
        skipWhitespace()
        if position < bytes.count && bytes[position] == UInt8(ascii: "]") {
            position += 1
            return .array(elements)
        }
        while true {
            elements.append(try value(depth: depth))
            skipWhitespace()
            guard position < bytes.count else { throw fail("unexpected end of line inside an array") }
            switch bytes[position] {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"): position += 1; return .array(elements)
            default: throw fail("expected ',' or ']' in array, found \(describeCurrent())")
            }
        }
    }

    @inline(__always)
    func isDigit(_ b: UInt8) -> Bool { b &- UInt8(ascii: "0") < 10 }

    mutating func digits() throws(Failure) {
        guard position < bytes.count, isDigit(bytes[position]) else {
            throw fail("invalid number: expected a digit, found \(describeCurrent())")
        }
        while position < bytes.count && isDigit(bytes[position]) { position += 1 }
    }

    /// An integer that fits in `Int64` is an `.int`; anything else a finite `.double`.
    mutating func number() throws(Failure) -> JSONValue {
        let start = position
        let negative = bytes[position] == UInt8(ascii: "-")
        if negative { position += 1 }
        let intStart = position
        if position < bytes.count && bytes[position] == UInt8(ascii: "0") {
            position += 1
            if position < bytes.count && isDigit(bytes[position]) {
                throw fail("invalid number: leading zeros are not allowed", at: start)
            }
        } else {
            try digits()
        }
        let intEnd = position
        var isInteger = true
        if position < bytes.count && bytes[position] == UInt8(ascii: ".") {
            isInteger = false
            position += 1
            try digits()
        }
        if position < bytes.count && (bytes[position] | 0x20) == UInt8(ascii: "e") {
            isInteger = false
            position += 1
            if position < bytes.count && (bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-")) {
                position += 1
            }
            try digits()
        }
        if isInteger {
            var value: Int64 = 0
            var overflow = false
            for i in intStart..<intEnd {
                let digit = Int64(bytes[i] &- UInt8(ascii: "0"))
                let (m, o1) = value.multipliedReportingOverflow(by: 10)
                let (s, o2) = negative ? m.subtractingReportingOverflow(digit) : m.addingReportingOverflow(digit)
                if o1 || o2 { overflow = true; break }
                value = s
            }
            if !overflow { return .int(value) }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        guard let value = Double(text), value.isFinite else {
            throw fail("number \(text) is out of range", at: start)
        }
        return .double(value)
    }

    /// A string without escapes, as the bytes between its quotes (valid UTF-8, no control
    /// characters), so that it can be matched or reused without building a `String`.
    /// `nil`, with the position unchanged, when the string has an escape or a problem:
    /// `string()` then decodes it or reports what is wrong.
    mutating func plainString() -> UnsafeRawBufferPointer? {
        guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { return nil }
        let start = position + 1
        var end = nextSpecialByte(from: start)
        var nonASCII = false
        while end < bytes.count && bytes[end] >= 0x80 {
            nonASCII = true
            end = nextSpecialByte(from: end + 1)
        }
        guard end < bytes.count, bytes[end] == UInt8(ascii: "\"") else { return nil }
        let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
        guard !nonASCII || firstInvalidUTF8Offset(in: raw) == nil else { return nil }
        position = end + 1
        return raw
    }

    /// The index of the first byte from `start` on that is a quote, a backslash, a control
    /// character or not ASCII (`bytes.count` when there is none), found eight bytes at a time.
    @inline(__always)
    func nextSpecialByte(from start: Int) -> Int {
        var i = start
        while i + 8 <= bytes.count {
            let special = Self.specialBytes(UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
            if special != 0 { return i + special.trailingZeroBitCount / 8 }
            i += 8
        }
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") || b < 0x20 || b >= 0x80 { return i }
            i += 1
        }
        return i
    }

    /// The high bit of each byte of `word` (little-endian) that is a quote, a backslash, below
    /// 0x20 or above 0x7F. Bits above the lowest one may be false alarms (a borrow carries into
    /// the next byte), but the lowest one marks the first such byte exactly.
    @inline(__always)
    static func specialBytes(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        func zeroBytes(_ v: UInt64) -> UInt64 { (v &- ones) & ~v & highs }
        let control = (word &- ones &* 0x20) & ~word & highs
        return (word & highs) | control
            | zeroBytes(word ^ (ones &* UInt64(UInt8(ascii: "\"")))) | zeroBytes(word ^ (ones &* UInt64(UInt8(ascii: "\\"))))
    }

    mutating func string() throws(Failure) -> String {
        if let raw = plainString() { return String(decoding: raw, as: UTF8.self) }
        let open = position
        guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
            throw fail("expected a string, found \(describeCurrent())")
        }
        position += 1
        let start = position
        var highBits: UInt8 = 0
        while position < bytes.count {
            let b = bytes[position]
            if b == UInt8(ascii: "\"") {
                let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<position])
                position += 1
                guard highBits < 0x80 || firstInvalidUTF8Offset(in: raw) == nil else { throw fail("invalid UTF-8 in string", at: open) }
                return String(decoding: raw, as: UTF8.self)
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw fail("unescaped control character 0x\(String(b, radix: 16)) in string") }
            highBits |= b
            position += 1
        }
        guard position < bytes.count else { throw fail("unterminated string", at: open) }
        var utf8 = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[start..<position]))
        while position < bytes.count {
            let b = bytes[position]
            switch b {
            case UInt8(ascii: "\""):
                position += 1
                guard utf8.withUnsafeBytes({ firstInvalidUTF8Offset(in: $0) }) == nil else { throw fail("invalid UTF-8 in string", at: open) }
                return String(decoding: utf8, as: UTF8.self)
            case UInt8(ascii: "\\"):
                do {
                    position = try JSONEscape.decode(bytes, backslash: position, into: &utf8)
                } catch {
                    throw fail(error.reason, at: error.offset)
                }
            default:
                if b < 0x20 { throw fail("unescaped control character 0x\(String(b, radix: 16)) in string") }
                utf8.append(b)
                position += 1
            }
        }
        throw fail("unterminated string", at: open)
    }
}
