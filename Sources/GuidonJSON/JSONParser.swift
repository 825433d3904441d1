/// A syntax error in a JSON text, with where it happened.
public struct JSONSyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Byte offset of the offending byte (0-based).
    public let offset: Int
    /// 1-based line number.
    public let line: Int
    /// 1-based column, counted in bytes.
    public let column: Int
    /// What is wrong, e.g. "expected ':' after object key".
    public let reason: String

    public var description: String { "line \(line), column \(column): \(reason)" }
}

/// Parses JSON text (RFC 8259) into `JSONValue`s.
///
/// Strict: no comments, no trailing commas, no leading zeros, no lone surrogates,
/// no invalid UTF-8, no control characters in strings. Nesting is limited
/// (`maxDepth`) so that hostile input cannot exhaust the stack.
public struct JSONParser: Sendable {
    public enum DuplicateKeys: Sendable {
        /// A repeated key is a syntax error (what a configuration file wants).
        case reject
        /// The last occurrence wins (what most JSON parsers do).
        case lastWins
    }

    public var maxDepth: Int
    public var duplicateKeys: DuplicateKeys

    public init(maxDepth: Int = 256, duplicateKeys: DuplicateKeys = .lastWins) {
        self.maxDepth = maxDepth
        self.duplicateKeys = duplicateKeys
    }

    /// Parses exactly one JSON value, surrounded by optional white space.
    public func parse(_ bytes: UnsafeRawBufferPointer) throws(JSONSyntaxError) -> JSONValue {
        var cursor = Cursor(bytes: bytes, options: self)
        return try cursor.parseDocument()
    }

    public func parse(_ bytes: [UInt8]) throws(JSONSyntaxError) -> JSONValue {
        // withUnsafeBytes cannot rethrow a typed error directly; carry it out.
        let result: Result<JSONValue, JSONSyntaxError> = bytes.withUnsafeBytes { buffer in
            do throws(JSONSyntaxError) { return .success(try parse(buffer)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    public func parse(_ text: String) throws(JSONSyntaxError) -> JSONValue {
        try parse(Array(text.utf8))
    }

    /// Decides whether one member's value is skipped: given the member's position in its
    /// object, its key and the offset where its value starts, returns where the value ends to
    /// skip it, or `nil` to parse it.
    public typealias SkipFilter = (_ index: Int, _ key: String, _ valueStart: Int) -> Int?

    /// Parses like `parse(_:)`, except inside the object that is the root object's member
    /// `member`: for each of its members, `skip` may take the value as known, in which case
    /// it is not parsed and stands as `.null` in the result. Returns, with the value, where
    /// each of that object's member values is in `bytes`, in order (none when there is no such
    /// object).
    ///
    /// A skipped value is not looked at, so `skip` must return exactly where the value ends, and
    /// skip only text it knows to be one well-formed JSON value at that depth (text identical to
    /// a value that parsed there before, say) or that the caller parses later (see `objectEnd`).
    /// Everything else, keys included, is parsed and checked as usual.
    ///
    /// `shouldSkip`, when given, is asked once, on reaching `member`, with the root members
    /// parsed before it; if it says no, nothing is skipped.
    public func parse(
        _ bytes: [UInt8], skippingIn member: String, when shouldSkip: ((JSONObject) -> Bool)? = nil,
        where skip: SkipFilter
    ) throws(JSONSyntaxError) -> (value: JSONValue, spans: [Range<Int>]) {
        let result: Result<(JSONValue, [Range<Int>]), JSONSyntaxError> = withoutActuallyEscaping(skip) { skip in
            bytes.withUnsafeBytes { buffer in
                var cursor = Cursor(bytes: buffer, options: self)
                cursor.skimmed = (member, { before in shouldSkip?(before) ?? true }, skip)
                do throws(JSONSyntaxError) {
                    let value = try cursor.parseDocument()
                    return .success((value, cursor.spans))
                } catch {
                    return .failure(error)
                }
            }
        }
        return try result.get()
    }
}

extension JSONParser {
    /// Where the object that starts at `start` in `bytes` ends, found by following its structure
    /// alone: strings are stepped over and brackets must match, nothing else is looked at. For a
    /// skimming parse (`parse(_:skippingIn:when:where:)`) that leaves a member's value to be
    /// parsed later, on its own, by `parse(_:valueIn:depth:)`, which checks everything else.
    /// `nil` when the text at `start` is not an object, or is cut short, mismatched or nested
    /// deeper than 64 levels: the skimming parse should then parse it, and report what is wrong.
    public static func objectEnd(in bytes: [UInt8], from start: Int) -> Int? {
        bytes.withUnsafeBufferPointer { text in
            guard start < text.count, text[start] == UInt8(ascii: "{") else { return nil }
            var arrays: UInt64 = 0  // bit n: whether nesting level n is an array
            var depth = 0
            var i = start
            while i < text.count {
                switch text[i] {
                case UInt8(ascii: "\""):
                    i += 1
                    while i < text.count && text[i] != UInt8(ascii: "\"") {
                        i += text[i] == UInt8(ascii: "\\") ? 2 : 1
                    }
                    guard i < text.count else { return nil }
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    guard depth < 64 else { return nil }
                    if text[i] == UInt8(ascii: "[") { arrays |= 1 << depth } else { arrays &= ~(1 << depth) }
                    depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    guard (arrays & (1 << depth) != 0) == (text[i] == UInt8(ascii: "]")) else { return nil }
                    if depth == 0 { return i + 1 }
                default:
                    break
                }
                i += 1
            }
            return nil
        }
    }

    /// Parses the one value whose text is `bytes[span]`, a member value at nesting `depth` of
    /// the document `bytes` (2 for a member of a root member's object): limits apply as in a
    /// parse of the whole document, and errors give positions in all of `bytes`.
    public func parse(_ bytes: [UInt8], valueIn span: Range<Int>, depth: Int) throws(JSONSyntaxError) -> JSONValue {
        let result: Result<JSONValue, JSONSyntaxError> = bytes.withUnsafeBytes { buffer in
            var cursor = Cursor(bytes: UnsafeRawBufferPointer(rebasing: buffer[..<span.upperBound]), options: self)
            cursor.position = span.lowerBound
            do throws(JSONSyntaxError) {
                let value = try cursor.parseValue(depth: depth)
                if cursor.position < span.upperBound {
                    throw cursor.error("unexpected \(cursor.describeCurrent()) after the value")
                }
                return .success(value)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}

/// Line and column (both 1-based, column in bytes) of a byte offset.
public func jsonLineColumn(of offset: Int, in bytes: UnsafeRawBufferPointer) -> (line: Int, column: Int) {
    var line = 1
    var lineStart = 0
    let end = min(offset, bytes.count)
    var i = 0
    while i < end {
        if bytes[i] == UInt8(ascii: "\n") {
            line += 1
            lineStart = i + 1
        }
        i += 1
    }
    return (line, offset - lineStart + 1)
}

struct Cursor {
    let bytes: UnsafeRawBufferPointer
    let options: JSONParser
    var position = 0
    /// The root member whose object's members may be skipped, and who decides.
    var skimmed: (member: String, shouldSkip: (JSONObject) -> Bool, skip: JSONParser.SkipFilter)?
    /// Where the skimmed object's member values are.
    var spans: [Range<Int>] = []

    init(bytes: UnsafeRawBufferPointer, options: JSONParser) {
        self.bytes = bytes
        self.options = options
    }

    mutating func parseDocument() throws(JSONSyntaxError) -> JSONValue {
        skipWhitespace()
        let value = try parseValue(depth: 0)
        skipWhitespace()
        if position < bytes.count {
            throw error("unexpected \(describeCurrent()) after the JSON value")
        }
        return value
    }

    func error(_ reason: String, at offset: Int? = nil) -> JSONSyntaxError {
        let at = offset ?? position
        let (line, column) = jsonLineColumn(of: at, in: bytes)
        return JSONSyntaxError(offset: at, line: line, column: column, reason: reason)
    }

    func describeCurrent() -> String {
        guard position < bytes.count else { return "end of input" }
        let b = bytes[position]
        if b >= 0x21 && b < 0x7F { return "character '\(Character(Unicode.Scalar(b)))'" }
        return "byte 0x\(String(b, radix: 16, uppercase: true))"
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    mutating func parseValue(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        guard position < bytes.count else { throw error("unexpected end of input, expected a value") }
        switch bytes[position] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected \(describeCurrent()), expected a value")
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONSyntaxError) {
        let start = position
        let count = literal.utf8CodeUnitCount
        guard bytes.count - position >= count else {
            throw error("invalid literal, expected '\(literal)'", at: start)
        }
        let lit = literal.utf8Start
        for i in 0..<count where bytes[position + i] != lit[i] {
            throw error("invalid literal, expected '\(literal)'", at: start)
        }
        position += count
    }

    /// `skip`, when given, decides which of the members' values are only delimited.
    mutating func parseObject(depth: Int, skip: JSONParser.SkipFilter? = nil) throws(JSONSyntaxError) -> JSONValue {
        if depth > options.maxDepth { throw error("nesting deeper than \(options.maxDepth) levels") }
        position += 1  // {
        var object = JSONObject()
        skipWhitespace()
        if position < bytes.count && bytes[position] == UInt8(ascii: "}") {
            position += 1
            return .object(object)
        }
        var index = 0
        while true {
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
                throw error("expected a string key in object, found \(describeCurrent())")
            }
            let keyStart = position
            let key = try parseString()
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else {
                throw error("expected ':' after object key \"\(key)\", found \(describeCurrent())")
            }
            position += 1
            skipWhitespace()
            let value: JSONValue
            if let skip {
                let start = position
                if let end = skip(index, key, start) {
                    guard end > start, end <= bytes.count else { throw error("skipped a value of no length") }
                    position = end
                    value = .null
                } else {
                    value = try parseValue(depth: depth)
                }
                spans.append(start..<position)
            } else if depth == 1, let skimmed, position < bytes.count, bytes[position] == UInt8(ascii: "{"),
                key == skimmed.member
            {
                value = try parseObject(depth: depth + 1, skip: skimmed.shouldSkip(object) ? skimmed.skip : { _, _, _ in nil })
            } else {
                value = try parseValue(depth: depth)
            }
            index += 1
            if object.contains(key) && options.duplicateKeys == .reject {
                throw error("duplicate key \"\(key)\" in object", at: keyStart)
            }
            object[key] = value
            skipWhitespace()
            guard position < bytes.count else { throw error("unexpected end of input inside an object") }
            switch bytes[position] {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"): position += 1; return .object(object)
            default: throw error("expected ',' or '}' in object, found \(describeCurrent())")
            }
        }
    }

    mutating func parseArray(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        if depth > options.maxDepth { throw error("nesting deeper than \(options.maxDepth) levels") }
        position += 1  // [
        var array: [JSONValue] = []
        skipWhitespace()
        if position < bytes.count && bytes[position] == UInt8(ascii: "]") {
            position += 1
            return .array(array)
        }
        while true {
            skipWhitespace()
            array.append(try parseValue(depth: depth))
            skipWhitespace()
            guard position < bytes.count else { throw error("unexpected end of input inside an array") }
            switch bytes[position] {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"): position += 1; return .array(array)
            default: throw error("expected ',' or ']' in array, found \(describeCurrent())")
            }
        }
    }

    mutating func parseNumber() throws(JSONSyntaxError) -> JSONValue {
        let start = position
        var isInteger = true
        if bytes[position] == UInt8(ascii: "-") { position += 1 }
        guard position < bytes.count, isDigit(bytes[position]) else {
            throw error("invalid number: expected a digit", at: position)
        }
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
            if position < bytes.count && isDigit(bytes[position]) {
                throw error("invalid number: leading zeros are not allowed", at: start)
            }
        } else {
            while position < bytes.count && isDigit(bytes[position]) { position += 1 }
        }
        if position < bytes.count && bytes[position] == UInt8(ascii: ".") {
            isInteger = false
            position += 1
            guard position < bytes.count, isDigit(bytes[position]) else {
                throw error("invalid number: expected a digit after '.'")
            }
            while position < bytes.count && isDigit(bytes[position]) { position += 1 }
        }
        if position < bytes.count && (bytes[position] | 0x20) == UInt8(ascii: "e") {
            isInteger = false
            position += 1
            if position < bytes.count && (bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-")) {
                position += 1
            }
            guard position < bytes.count, isDigit(bytes[position]) else {
                throw error("invalid number: expected a digit in the exponent")
            }
            while position < bytes.count && isDigit(bytes[position]) { position += 1 }
        }
        if isInteger, let value = parseInt64(from: start, to: position) {
            return .int(value)
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        guard let value = Double(text), value.isFinite else {
            throw error("number \(text) is out of range", at: start)
        }
        return .double(value)
    }

    func parseInt64(from start: Int, to end: Int) -> Int64? {
        var i = start
        let negative = bytes[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        var value: Int64 = 0
        while i < end {
            let digit = Int64(bytes[i] &- UInt8(ascii: "0"))
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = negative ? m.subtractingReportingOverflow(digit) : m.addingReportingOverflow(digit)
            if o1 || o2 { return nil }
            value = s
            i += 1
        }
        return value
    }

    @inline(__always)
    func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

    mutating func parseString() throws(JSONSyntaxError) -> String {
        let open = position
        position += 1  // opening quote
        let start = position
        // Fast path: no escapes.
        while position < bytes.count {
            let b = bytes[position]
            if b == UInt8(ascii: "\"") {
                let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<position])
                if let bad = firstInvalidUTF8Offset(in: raw) {
                    throw error("invalid UTF-8 in string", at: start + bad)
                }
                position += 1
                return String(decoding: raw, as: UTF8.self)
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw error("unescaped control character 0x\(String(b, radix: 16)) in string") }
            position += 1
        }
        guard position < bytes.count else { throw error("unterminated string", at: open) }
        // Slow path: decode escapes.
        var utf8 = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[start..<position]))
        while position < bytes.count {
            let b = bytes[position]
            switch b {
            case UInt8(ascii: "\""):
                // Escapes are ASCII and decode to whole scalars, so the raw text is valid exactly
                // when the decoded text is, and it holds the offending byte.
                if let bad = firstInvalidUTF8Offset(in: UnsafeRawBufferPointer(rebasing: bytes[start..<position])) {
                    throw error("invalid UTF-8 in string", at: start + bad)
                }
                position += 1
                return String(decoding: utf8, as: UTF8.self)
            case UInt8(ascii: "\\"):
                do {
                    position = try JSONEscape.decode(bytes, backslash: position, into: &utf8)
                } catch {
                    throw self.error(error.reason, at: error.offset)
                }
            default:
                if b < 0x20 { throw error("unescaped control character 0x\(String(b, radix: 16)) in string") }
                utf8.append(b)
                position += 1
            }
        }
        throw error("unterminated string", at: open)
    }
}
