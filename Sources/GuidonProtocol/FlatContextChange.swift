#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GuidonEngine
import GuidonJSON

extension FlatContext {
    /// How a context's text differs from the text of a decoded flat context (`Layout.text`)
    /// when it differs only inside one string value: the usual case when a client sends one
    /// request per user, where only the targeting key changes.
    struct Change {
        /// The member (an index into `Layout.members`) whose string value changed; `nil`
        /// when the text is the decoded one.
        var member: Int?
        /// The member's new string content, without its quotes, in the new text.
        var string: Range<Int> = 0..<0
        /// How much longer the new text is than the decoded one.
        var delta = 0
    }

    /// The change from `layout.text` to the context object at the scanner's position, when the
    /// object is that text with (at most) one string value's content replaced by printable
    /// ASCII: the scanner is then left after the object, which is flat without checking it
    /// again. `nil`, with the position unchanged, for anything else (`check` then decides).
    ///
    /// The object is compared with the decoded text from its start: the first byte that
    /// differs must lie in a string value's content (or be its closing quote), and from there
    /// (or from the start of a non-ASCII character cut there) the new content must run to a
    /// quote without a special byte, after which the bytes must be the decoded text's from
    /// that string's closing quote on. Two passes of
    /// comparing words instead of one of checking every byte, and nothing to decode but the
    /// one string when the context is read.
    static func change(_ s: inout JSONScanner, from layout: Layout) -> Change? {
        let old = layout.text
        guard s.maxDepth >= 2, !old.isEmpty else { return nil }
        let bytes = s.bytes
        let start = s.position
        return old.withUnsafeBytes { old -> Change? in
            let n = old.count
            var p = commonPrefix(old, UnsafeRawBufferPointer(rebasing: bytes[start...]))
            if p == n {
                s.position = start + n
                return Change()
            }
            guard let member = layout.members.firstIndex(where: { $0.string.map { $0.lowerBound <= p && p <= $0.upperBound } ?? false })
            else { return nil }
            let string = layout.members[member].string!
            // The content kept must end with a whole character: the new bytes are then ASCII
            // up to the quote, which makes the new content valid UTF-8 as the old one was.
            while p > string.lowerBound && old[p - 1] >= 0x80 { p -= 1 }
            let quote = s.nextSpecialByte(from: start + p)
            let tail = n - string.upperBound
            guard quote < bytes.count, bytes[quote] == UInt8(ascii: "\""), bytes.count - quote >= tail,
                memcmp(bytes.baseAddress! + quote, old.baseAddress! + string.upperBound, tail) == 0
            else { return nil }
            s.position = quote + tail
            return Change(member: member, string: string.lowerBound..<(quote - start), delta: quote - start - string.upperBound)
        }
    }

    /// Changes `context`, decoded from `layout.text`, into the context in `text`, which differs
    /// from it as `change` (found by `change(_:from:)`) says; `layout` then describes `text`.
    static func apply(_ change: Change, to context: inout EvaluationContext, layout: inout Layout, text: UnsafeRawBufferPointer) {
        if let k = change.member {
            let value = String(decoding: UnsafeRawBufferPointer(rebasing: text[change.string]), as: UTF8.self)
            if let attribute = layout.members[k].attribute {
                context.attributes.replaceValue(at: attribute, with: .string(value))
            } else {
                context.targetingKey = value
            }
            layout.members[k].string = change.string
            layout.members[k].bytes = layout.members[k].bytes.lowerBound..<(layout.members[k].bytes.upperBound + change.delta)
            let delta = change.delta
            for j in layout.members.indices.dropFirst(k + 1) where delta != 0 {
                layout.members[j].bytes = (layout.members[j].bytes.lowerBound + delta)..<(layout.members[j].bytes.upperBound + delta)
                layout.members[j].name = (layout.members[j].name.lowerBound + delta)..<(layout.members[j].name.upperBound + delta)
                layout.members[j].string = layout.members[j].string.map { ($0.lowerBound + delta)..<($0.upperBound + delta) }
            }
        }
        layout.text.removeAll(keepingCapacity: true)
        layout.text.append(contentsOf: text)
    }
}

/// How many bytes `a` and `b` have in common from their start, compared eight at a time.
@inline(__always)
private func commonPrefix(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
    let count = min(a.count, b.count)
    var i = 0
    while i + 8 <= count {
        let x = a.loadUnaligned(fromByteOffset: i, as: UInt64.self) ^ b.loadUnaligned(fromByteOffset: i, as: UInt64.self)
        if x != 0 { return i + UInt64(littleEndian: x).trailingZeroBitCount / 8 }
        i += 8
    }
    while i < count && a[i] == b[i] { i += 1 }
    return i
}
