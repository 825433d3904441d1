import GuidonEngine
import GuidonJSON

/// A context object of the usual kind, *flat*: at most 16 members with distinct ASCII names
/// without escapes, each a string without escapes, a number, `true`, `false` or `null`.
///
/// `check` tells such an object in one pass, without building anything. When (and if) the
/// context is read, `update` changes the context decoded before into it in place, or `decode`
/// builds it afresh; neither checks anything again.
enum FlatContext {
    /// Whether the object at the scanner's position is a flat context (which
    /// `ContextSlot.decode` accepts): the scanner is then left after it; when not, somewhere
    /// in it. (At most 16 members: the check for repeated names is quadratic.)
    ///
    /// Within these bounds names are equal exactly when their bytes are (which is how the
    /// decoder finds repeated ones, `targetingKey` included); strings are held to the rules of
    /// `JSONScanner.plainString` and numbers and literals are read by the scanner's own
    /// functions, so the two agree on every such object. One pass, eight bytes at a time
    /// through strings.
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
    /// that the next context can be decoded by changing only the values that changed.
    struct Layout {
        /// The text; empty when the layout describes no decoded context.
        var text: [UInt8] = []
        var members: [Member] = []

        struct Member {
            /// From the name's opening quote to the end of the value.
            var bytes: Range<Int>
            /// The name, without its quotes.
            var name: Range<Int>
            /// A string value's content, without its quotes.
            var string: Range<Int>?
            /// The attribute the member became (`nil`: the targeting key).
            var attribute: Int?
        }

        mutating func removeAll() {
            text.removeAll(keepingCapacity: true)
            members.removeAll(keepingCapacity: true)
        }
    }

    /// The context in `text`, a flat object that `check` accepted: a string `targetingKey`
    /// becomes the targeting key, every other member an attribute (as `EvaluationContext(json:)`
    /// reads it). Strings equal to the ones at the same place in `previous` are reused rather
    /// than built again. `layout` is filled in for `text`.
    static func decode(
        _ text: UnsafeRawBufferPointer, maxDepth: Int, into context: inout EvaluationContext, layout: inout Layout,
        previous: EvaluationContext
    ) {
        layout.removeAll()
        layout.text.append(contentsOf: text)
        var i = 1  // after the brace
        skipWhitespace(text, &i)
        while i < text.count && text[i] == UInt8(ascii: "\"") {
            let member = scan(text, &i)
            let name = UnsafeRawBufferPointer(rebasing: text[member.name])
            if let string = member.string, equals(name, "targetingKey") {
                context.targetingKey = reusing(previous.targetingKey, for: UnsafeRawBufferPointer(rebasing: text[string]))
                layout.members.append(Layout.Member(bytes: member.bytes, name: member.name, string: string, attribute: nil))
                continue
            }
            let index = context.attributes.count
            let value: JSONValue
            if let string = member.string {
                let before = index < previous.attributes.count ? previous.attributes.values[index].string : nil
                value = .string(reusing(before, for: UnsafeRawBufferPointer(rebasing: text[string])))
            } else {
                value = scalar(member, text, maxDepth: maxDepth)
            }
            let key = equals(name, "targetingKey")
                ? "targetingKey" : reusing(index < previous.attributes.count ? previous.attributes.keys[index] : nil, for: name)
            context.attributes.appendUnique(key, value)
            layout.members.append(Layout.Member(bytes: member.bytes, name: member.name, string: member.string, attribute: index))
        }
    }

    /// Changes `context`, decoded from `layout.text`, into the context in `text` (a flat object
    /// that `check` accepted) in place, when `text` has the same members in the same order,
    /// each the targeting key or an attribute as before, and only values differ: the usual
    /// case from one request of a client to the next, where only the values that changed are
    /// decoded. `false`, with nothing changed, for any other `text`.
    static func update(_ context: inout EvaluationContext, layout: inout Layout, to text: UnsafeRawBufferPointer, maxDepth: Int) -> Bool {
        guard !layout.text.isEmpty else { return false }
        var members = InlineArray<16, Scanned>(repeating: Scanned())
        var changed: UInt32 = 0
        var count = 0
        let same = layout.text.withUnsafeBytes { before -> Bool in
            var i = 1
            skipWhitespace(text, &i)
            while i < text.count && text[i] == UInt8(ascii: "\"") {
                guard count < layout.members.count else { return false }
                let member = scan(text, &i)
                let was = layout.members[count]
                if !sameBytes(text, member.bytes, before, was.bytes) {
                    guard sameBytes(text, member.name, before, was.name) else { return false }
                    let isTargetingKey = member.string != nil && equals(UnsafeRawBufferPointer(rebasing: text[member.name]), "targetingKey")
                    guard isTargetingKey == (was.attribute == nil) else { return false }
                    changed |= 1 << count
                }
                members[count] = member
                count += 1
            }
            return count == layout.members.count
        }
        guard same else { return false }
        for k in 0..<count {
            let member = members[k]
            if changed & (1 << k) != 0 {
                if let attribute = layout.members[k].attribute {
                    let value = member.string.map { JSONValue.string(String(decoding: UnsafeRawBufferPointer(rebasing: text[$0]), as: UTF8.self)) }
                        ?? scalar(member, text, maxDepth: maxDepth)
                    context.attributes.replaceValue(at: attribute, with: value)
                } else {
                    context.targetingKey = String(decoding: UnsafeRawBufferPointer(rebasing: text[member.string!]), as: UTF8.self)
                }
            }
            layout.members[k].bytes = member.bytes
            layout.members[k].name = member.name
            layout.members[k].string = member.string
        }
        layout.text.removeAll(keepingCapacity: true)
        layout.text.append(contentsOf: text)
        return true
    }

    /// Where the parts of one member of a checked flat object lie.
    private struct Scanned {
        var bytes: Range<Int> = 0..<0
        var name: Range<Int> = 0..<0
        /// A string value's content.
        var string: Range<Int>?
        /// Any other value's text.
        var scalar: Range<Int> = 0..<0
    }

    /// The member whose name's opening quote is at `i`; `i` is left at the next member's name
    /// (or the closing brace).
    @inline(__always)
    private static func scan(_ text: UnsafeRawBufferPointer, _ i: inout Int) -> Scanned {
        var member = Scanned()
        let start = i
        let nameEnd = closingQuote(text, i + 1)
        member.name = (i + 1)..<nameEnd
        i = nameEnd + 1
        skipWhitespace(text, &i)
        i += 1  // the colon
        skipWhitespace(text, &i)
        if i < text.count && text[i] == UInt8(ascii: "\"") {
            let end = closingQuote(text, i + 1)
            member.string = (i + 1)..<end
            i = end + 1
        } else {
            // A number or a literal: no whitespace, comma or brace inside.
            let valueStart = i
            while i < text.count, text[i] != UInt8(ascii: ","), text[i] != UInt8(ascii: "}"), text[i] > 0x20 { i += 1 }
            member.scalar = valueStart..<i
        }
        member.bytes = start..<i
        skipWhitespace(text, &i)
        if i < text.count && text[i] == UInt8(ascii: ",") { i += 1 }
        skipWhitespace(text, &i)
        return member
    }

    /// A number or a literal, read by the function `check` read it with.
    private static func scalar(_ member: Scanned, _ text: UnsafeRawBufferPointer, maxDepth: Int) -> JSONValue {
        var s = JSONScanner(text, maxDepth: maxDepth)
        s.position = member.scalar.lowerBound
        return (try? s.value(depth: 2)) ?? .null
    }
}

@inline(__always)
private func sameBytes(_ a: UnsafeRawBufferPointer, _ ra: Range<Int>, _ b: UnsafeRawBufferPointer, _ rb: Range<Int>) -> Bool {
    ra.count == rb.count && (ra.isEmpty || memcmp(a.baseAddress! + ra.lowerBound, b.baseAddress! + rb.lowerBound, ra.count) == 0)
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
