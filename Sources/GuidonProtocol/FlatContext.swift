import GuidonEngine
import GuidonJSON

/// A context object of the usual kind, *flat*: at most 16 members with distinct ASCII names
/// without escapes, each a string without escapes, a number, `true`, `false` or `null`.
///
/// `check` tells such an object in one pass, without building anything; `decode` then builds
/// its `EvaluationContext` without checking anything again, when (and if) it is read.
enum FlatContext {
    /// Whether the object at the scanner's position is a flat context that
    /// `ContextSlot.decode` accepts:
    /// at most 16 members (the check for repeated names is quadratic) with distinct ASCII names without escapes, each a string
    /// without escapes or a number, `true`, `false` or `null`. When it is, the scanner is left
    /// after it; when not, somewhere in it.
    ///
    /// Within these bounds names are equal exactly when their bytes are (which is how the
    /// decoder finds repeated ones, `targetingKey` included); strings are held to the rules of
    /// `JSONScanner.plainString` and numbers and literals are read by the scanner's own
    /// functions, so the two agree on every such object. One pass, byte by byte.
    static func check(_ s: inout JSONScanner) -> Bool {
        let bytes = s.bytes
        let end = bytes.count
        var i = s.position
        guard s.maxDepth >= 2, i < end, bytes[i] == UInt8(ascii: "{") else { return false }
        i += 1
        skipWhitespace(bytes, &i)
        if i < end && bytes[i] == UInt8(ascii: "}") {
            s.position = i + 1
            return true
        }
        // Where each name starts, and its length, to find a repeated one.
        var names = InlineArray<16, (start: Int, count: Int)>(repeating: (0, 0))
        for member in names.indices {
            // The name: printable ASCII, no quote or backslash.
            guard i < end, bytes[i] == UInt8(ascii: "\"") else { return false }
            let start = i + 1
            i = s.nextSpecialByte(from: start)
            guard i < end, bytes[i] == UInt8(ascii: "\"") else { return false }
            let count = i - start
            for j in 0..<member where names[j].count == count {
                if count == 0 || memcmp(bytes.baseAddress! + names[j].start, bytes.baseAddress! + start, count) == 0 { return false }
            }
            names[member] = (start, count)
            i += 1
            skipWhitespace(bytes, &i)
            guard i < end, bytes[i] == UInt8(ascii: ":") else { return false }
            i += 1
            skipWhitespace(bytes, &i)
            guard i < end else { return false }
            switch bytes[i] {
            case UInt8(ascii: "\""):
                // A string: no backslash, no control character, valid UTF-8.
                let start = i + 1
                var nonASCII = false
                i = s.nextSpecialByte(from: start)
                while i < end && bytes[i] >= 0x80 {
                    nonASCII = true
                    i = s.nextSpecialByte(from: i + 1)
                }
                guard i < end, bytes[i] == UInt8(ascii: "\"") else { return false }
                if nonASCII && firstInvalidUTF8Offset(in: UnsafeRawBufferPointer(rebasing: bytes[start..<i])) != nil {
                    return false
                }
                i += 1
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                return false
            default:
                s.position = i
                guard (try? s.value(depth: 2)) != nil else { return false }
                i = s.position
            }
            skipWhitespace(bytes, &i)
            guard i < end else { return false }
            if bytes[i] == UInt8(ascii: "}") {
                s.position = i + 1
                return true
            }
            guard bytes[i] == UInt8(ascii: ",") else { return false }
            i += 1
            skipWhitespace(bytes, &i)
        }
        return false
    }

    /// Where the members of a decoded flat context lie in its text and what each became, so
    /// that the next decode can take a member whose bytes are unchanged (most are, from one
    /// request of a client to the next) as it was, without comparing or building strings.
    struct Layout {
        var text: [UInt8] = []
        /// Each member's bytes in `text` (from its name's opening quote to the end of its
        /// value), and the index of the attribute it became (`nil`: the targeting key).
        var members: [(bytes: Range<Int>, attribute: Int?)] = []

        mutating func removeAll() {
            text.removeAll(keepingCapacity: true)
            members.removeAll(keepingCapacity: true)
        }
    }

    /// The context in `text`, a flat object that `check` accepted: a string `targetingKey`
    /// becomes the targeting key, every other member an attribute (as `EvaluationContext(json:)`
    /// reads it). `layout` is filled in for `text`.
    ///
    /// `previous` is the context decoded before, and `previousLayout` where its members lay
    /// (empty when it was not decoded here): a member whose bytes are the same as the member at
    /// the same place then is taken from `previous`; else strings equal to the ones at the
    /// same place in `previous` are reused rather than built again.
    static func decode(
        _ text: UnsafeRawBufferPointer, maxDepth: Int, into context: inout EvaluationContext, layout: inout Layout,
        previous: EvaluationContext, previousLayout: Layout
    ) {
        layout.removeAll()
        layout.text.append(contentsOf: text)
        previousLayout.text.withUnsafeBytes { previousText in
            let end = text.count
            var i = 1  // after the brace
            skipWhitespace(text, &i)
            while i < end && text[i] == UInt8(ascii: "\"") {
                let start = i
                let name = UnsafeRawBufferPointer(rebasing: text[(i + 1)..<closingQuote(text, i + 1)])
                i += name.count + 2
                skipWhitespace(text, &i)
                i += 1  // the colon
                skipWhitespace(text, &i)
                var string: UnsafeRawBufferPointer?
                var scalar = JSONValue.null
                if text[i] == UInt8(ascii: "\"") {
                    let raw = UnsafeRawBufferPointer(rebasing: text[(i + 1)..<closingQuote(text, i + 1)])
                    i += raw.count + 2
                    string = raw
                } else {
                    // A number or a literal, which `check` has read with this very function.
                    var s = JSONScanner(text, maxDepth: maxDepth)
                    s.position = i
                    scalar = (try? s.value(depth: 2)) ?? .null
                    i = s.position
                }
                let bytes = start..<i
                let member = layout.members.count
                if member < previousLayout.members.count, case let before = previousLayout.members[member],
                    before.bytes.count == bytes.count,
                    memcmp(previousText.baseAddress! + before.bytes.lowerBound, text.baseAddress! + start, bytes.count) == 0
                {
                    // The same member as before, which became the same.
                    if let attribute = before.attribute {
                        context.attributes.appendUnique(previous.attributes.keys[attribute], previous.attributes.values[attribute])
                        layout.members.append((bytes, context.attributes.count - 1))
                    } else {
                        context.targetingKey = previous.targetingKey
                        layout.members.append((bytes, nil))
                    }
                } else if let string, equals(name, "targetingKey") {
                    context.targetingKey = reusing(previous.targetingKey, for: string)
                    layout.members.append((bytes, nil))
                } else {
                    let index = context.attributes.count
                    let value: JSONValue
                    if let string {
                        value = .string(reusing(index < previous.attributes.count ? previous.attributes.values[index].string : nil, for: string))
                    } else {
                        value = scalar
                    }
                    append(name, value, to: &context, previous: previous)
                    layout.members.append((bytes, index))
                }
                skipWhitespace(text, &i)
                if i < end && text[i] == UInt8(ascii: ",") { i += 1 }
                skipWhitespace(text, &i)
            }
        }
    }
}

/// Adds an attribute (whose name `check` found to be the only one so spelled), reusing the
/// name at the same place in `previous` when it is the same.
@inline(__always)
private func append(_ name: UnsafeRawBufferPointer, _ value: JSONValue, to context: inout EvaluationContext, previous: EvaluationContext) {
    let index = context.attributes.count
    let key = equals(name, "targetingKey")
        ? "targetingKey" : reusing(index < previous.attributes.count ? previous.attributes.keys[index] : nil, for: name)
    context.attributes.appendUnique(key, value)
}

/// The index of the quote that ends the string whose content starts at `start` (a string
/// without escapes, so the first quote), found eight bytes at a time.
@inline(__always)
private func closingQuote(_ bytes: UnsafeRawBufferPointer, _ start: Int) -> Int {
    let ones: UInt64 = 0x0101_0101_0101_0101
    var i = start
    while i + 8 <= bytes.count {
        // The lowest high bit of a zero byte of `word ^ quotes` marks the first quote exactly.
        let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)) ^ (ones &* 0x22)
        let quotes = (word &- ones) & ~word & (ones &* 0x80)
        if quotes != 0 { return i + quotes.trailingZeroBitCount / 8 }
        i += 8
    }
    while i < bytes.count && bytes[i] != UInt8(ascii: "\"") { i += 1 }
    return i
}

@inline(__always)
private func skipWhitespace(_ bytes: UnsafeRawBufferPointer, _ i: inout Int) {
    while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0D || bytes[i] == 0x0A { i += 1 }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
