/// A JSON value together with where its text is, down to every member and element: what an
/// editor needs to change one value of a document and leave every other byte as it was.
///
/// Only for the small part of a document being edited (one flag's definition): a located tree
/// takes several times the memory of a plain one. To find that part in a large document without
/// parsing the rest, see `JSONParser.members(ofObjectAt:in:)`.
public struct LocatedJSON: Sendable {
    /// What the children of a value are.
    public enum Children: Sendable {
        case none
        /// An object's members, in document order.
        case members([LocatedMember])
        /// An array's elements, in order.
        case elements([LocatedJSON])
    }

    public let value: JSONValue
    /// The value's text: from its first byte (`{`, `[`, `"`, a digit…) to just after its last.
    public let range: Range<Int>
    public let children: Children

    public init(value: JSONValue, range: Range<Int>, children: Children = .none) {
        self.value = value
        self.range = range
        self.children = children
    }

    /// An object's members (empty for anything else).
    public var members: [LocatedMember] {
        if case .members(let members) = children { return members }
        return []
    }

    /// An array's elements (empty for anything else).
    public var elements: [LocatedJSON] {
        if case .elements(let elements) = children { return elements }
        return []
    }

    /// The member named `key`, when this is an object that has one.
    public func member(_ key: String) -> LocatedMember? {
        members.first { $0.key == key }
    }
}

/// One member of an object, located.
public struct LocatedMember: Sendable {
    public let key: String
    /// The key's text, quotes included.
    public let keyRange: Range<Int>
    public let value: LocatedJSON

    public init(key: String, keyRange: Range<Int>, value: LocatedJSON) {
        self.key = key
        self.keyRange = keyRange
        self.value = value
    }

    /// From the key's opening quote to the end of the value.
    public var range: Range<Int> { keyRange.lowerBound..<value.range.upperBound }
}

/// One member of an object, delimited but its value not parsed (see `JSONParser.members(ofObjectAt:in:)`).
public struct MemberSpan: Sendable, Hashable {
    public let key: String
    /// The key's text, quotes included.
    public let keyRange: Range<Int>
    /// The value's text.
    public let valueRange: Range<Int>

    /// From the key's opening quote to the end of the value.
    public var range: Range<Int> { keyRange.lowerBound..<valueRange.upperBound }
}

/// An object whose members are delimited: where it is and where each member is.
public struct ObjectSpans: Sendable, Hashable {
    /// From the `{` to just after the `}`.
    public let range: Range<Int>
    public let members: [MemberSpan]

    public func member(_ key: String) -> MemberSpan? {
        members.first { $0.key == key }
    }
}

extension JSONParser {
    /// Parses the one value whose text is `bytes[span]` (a value at nesting `depth` of the document
    /// `bytes`, as for `parse(_:valueIn:depth:)`) and reports where each of its parts is. A key
    /// repeated within an object is always an error here: an edit must know which one it changes.
    public func parseLocated(_ bytes: [UInt8], valueIn span: Range<Int>, depth: Int) throws(JSONSyntaxError) -> LocatedJSON {
        let result: Result<LocatedJSON, JSONSyntaxError> = bytes.withUnsafeBytes { buffer in
            var cursor = Cursor(bytes: UnsafeRawBufferPointer(rebasing: buffer[..<span.upperBound]), options: self)
            cursor.position = span.lowerBound
            do throws(JSONSyntaxError) {
                cursor.skipWhitespace()
                let value = try cursor.parseLocated(depth: depth)
                cursor.skipWhitespace()
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

    /// Parses a whole document, located (see `parseLocated(_:valueIn:depth:)`).
    public func parseLocated(_ bytes: [UInt8]) throws(JSONSyntaxError) -> LocatedJSON {
        try parseLocated(bytes, valueIn: 0..<bytes.count, depth: 0)
    }

    /// The members of the object whose `{` is at `start` in `bytes`, each delimited without
    /// parsing its value: keys are parsed and checked (a repeated key is an error), scalar values
    /// are parsed, and object and array values are only stepped over, following strings and
    /// brackets. So finding one flag among 10,000 costs one pass over the text and no tree.
    ///
    /// What the stepping does not check (the inside of a skipped value) is for a later parse: the
    /// editor parses the one definition it changes, and validates the whole result by compiling it.
    ///
    /// `knownEnd`, given a member's key and where its object or array value starts, may say
    /// where that value ends when the caller knows it already (an editor whose compiled value
    /// remembers where 100,000 tenants are): the value is then not stepped over.
    public func members(
        ofObjectAt start: Int, in bytes: [UInt8], knownEnd: ((_ key: String, _ valueStart: Int) -> Int?)? = nil
    ) throws(JSONSyntaxError) -> ObjectSpans {
        let result: Result<ObjectSpans, JSONSyntaxError> = bytes.withUnsafeBytes { buffer in
            var cursor = Cursor(bytes: buffer, options: self)
            cursor.position = start
            do throws(JSONSyntaxError) {
                return .success(try cursor.delimitMembers(knownEnd: knownEnd))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Where the JSON value that starts at `start` ends, found by its structure alone (as
    /// `objectEnd(in:from:)`, for any value and any depth up to `maxDepth`); `nil` when the text
    /// there is cut short, mismatched or not a value.
    public func valueEnd(in bytes: [UInt8], from start: Int) -> Int? {
        bytes.withUnsafeBytes { buffer in
            var cursor = Cursor(bytes: buffer, options: self)
            cursor.position = start
            return cursor.stepOverValue() ? cursor.position : nil
        }
    }
}

extension Cursor {
    mutating func parseLocated(depth: Int) throws(JSONSyntaxError) -> LocatedJSON {
        guard position < bytes.count else { throw error("unexpected end of input, expected a value") }
        let start = position
        switch bytes[position] {
        case UInt8(ascii: "{"):
            if depth + 1 > options.maxDepth { throw error("nesting deeper than \(options.maxDepth) levels") }
            position += 1
            var object = JSONObject()
            var members: [LocatedMember] = []
            skipWhitespace()
            if position < bytes.count && bytes[position] == UInt8(ascii: "}") {
                position += 1
                return LocatedJSON(value: .object(object), range: start..<position, children: .members(members))
            }
            while true {
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
                    throw error("expected a string key in object, found \(describeCurrent())")
                }
                let keyStart = position
                let key = try parseString()
                let keyRange = keyStart..<position
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else {
                    throw error("expected ':' after object key \"\(key)\", found \(describeCurrent())")
                }
                position += 1
                skipWhitespace()
                let value = try parseLocated(depth: depth + 1)
                guard object.insertNew(key, value.value) else {
                    throw error("duplicate key \"\(key)\" in object", at: keyStart)
                }
                members.append(LocatedMember(key: key, keyRange: keyRange, value: value))
                skipWhitespace()
                guard position < bytes.count else { throw error("unexpected end of input inside an object") }
                switch bytes[position] {
                case UInt8(ascii: ","): position += 1
                case UInt8(ascii: "}"):
                    position += 1
                    return LocatedJSON(value: .object(object), range: start..<position, children: .members(members))
                default: throw error("expected ',' or '}' in object, found \(describeCurrent())")
                }
            }
        case UInt8(ascii: "["):
            if depth + 1 > options.maxDepth { throw error("nesting deeper than \(options.maxDepth) levels") }
            position += 1
            var elements: [LocatedJSON] = []
            skipWhitespace()
            if position < bytes.count && bytes[position] == UInt8(ascii: "]") {
                position += 1
                return LocatedJSON(value: .array([]), range: start..<position, children: .elements(elements))
            }
            while true {
                skipWhitespace()
                elements.append(try parseLocated(depth: depth + 1))
                skipWhitespace()
                guard position < bytes.count else { throw error("unexpected end of input inside an array") }
                switch bytes[position] {
                case UInt8(ascii: ","): position += 1
                case UInt8(ascii: "]"):
                    position += 1
                    return LocatedJSON(value: .array(elements.map(\.value)), range: start..<position, children: .elements(elements))
                default: throw error("expected ',' or ']' in array, found \(describeCurrent())")
                }
            }
        default:
            let value = try parseValue(depth: depth)
            return LocatedJSON(value: value, range: start..<position)
        }
    }

    mutating func delimitMembers(knownEnd: ((_ key: String, _ valueStart: Int) -> Int?)? = nil) throws(JSONSyntaxError) -> ObjectSpans {
        let start = position
        guard position < bytes.count, bytes[position] == UInt8(ascii: "{") else {
            throw error("expected an object, found \(describeCurrent())")
        }
        position += 1
        var members: [MemberSpan] = []
        var seen: Set<String> = []
        skipWhitespace()
        if position < bytes.count && bytes[position] == UInt8(ascii: "}") {
            position += 1
            return ObjectSpans(range: start..<position, members: members)
        }
        while true {
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
                throw error("expected a string key in object, found \(describeCurrent())")
            }
            let keyStart = position
            let key = try parseString()
            let keyRange = keyStart..<position
            guard seen.insert(key).inserted else { throw error("duplicate key \"\(key)\" in object", at: keyStart) }
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else {
                throw error("expected ':' after object key \"\(key)\", found \(describeCurrent())")
            }
            position += 1
            skipWhitespace()
            let valueStart = position
            guard position < bytes.count else { throw error("unexpected end of input, expected a value") }
            switch bytes[position] {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                if let end = knownEnd?(key, valueStart), end > valueStart, end <= bytes.count {
                    position = end
                    break
                }
                guard stepOverValue() else {
                    position = valueStart
                    throw error("unterminated or mismatched \(bytes[valueStart] == UInt8(ascii: "{") ? "object" : "array")")
                }
            default:
                _ = try parseValue(depth: 1)
            }
            members.append(MemberSpan(key: key, keyRange: keyRange, valueRange: valueStart..<position))
            skipWhitespace()
            guard position < bytes.count else { throw error("unexpected end of input inside an object") }
            switch bytes[position] {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"):
                position += 1
                return ObjectSpans(range: start..<position, members: members)
            default: throw error("expected ',' or '}' in object, found \(describeCurrent())")
            }
        }
    }

    /// Steps over one value by its structure (strings and brackets); `false`, position
    /// unspecified, when it is cut short, mismatched or nested deeper than `maxDepth`.
    mutating func stepOverValue() -> Bool {
        guard position < bytes.count else { return false }
        switch bytes[position] {
        case UInt8(ascii: "\""):
            return stepOverString()
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var closers: [UInt8] = []
            while position < bytes.count {
                switch bytes[position] {
                case UInt8(ascii: "\""):
                    guard stepOverString() else { return false }
                    continue
                case UInt8(ascii: "{"):
                    guard closers.count < options.maxDepth else { return false }
                    closers.append(UInt8(ascii: "}"))
                case UInt8(ascii: "["):
                    guard closers.count < options.maxDepth else { return false }
                    closers.append(UInt8(ascii: "]"))
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    guard closers.popLast() == bytes[position] else { return false }
                    if closers.isEmpty {
                        position += 1
                        return true
                    }
                default:
                    break
                }
                position += 1
            }
            return false
        default:
            let start = position
            while position < bytes.count {
                switch bytes[position] {
                case UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x0A, 0x0D, 0x09: return position > start
                default: position += 1
                }
            }
            return position > start
        }
    }

    /// Steps over the string whose opening quote is at the position.
    private mutating func stepOverString() -> Bool {
        position += 1
        while position < bytes.count {
            switch bytes[position] {
            case UInt8(ascii: "\""):
                position += 1
                return true
            case UInt8(ascii: "\\"):
                position += 2
            default:
                position += 1
            }
        }
        return false
    }
}
