import GuidonJSON

/// One change to a text: the bytes in `range` replaced by `text` (an insertion when the range
/// is empty, a deletion when the text is).
public struct TextEdit: Sendable, Hashable {
    public var range: Range<Int>
    public var text: [UInt8]

    public init(range: Range<Int>, text: [UInt8]) {
        self.range = range
        self.text = text
    }

    /// `bytes` with `edits` made; the edits must not overlap (an insertion may touch a change).
    public static func apply(_ edits: [TextEdit], to bytes: [UInt8]) -> [UInt8] {
        let sorted = edits.enumerated().sorted { a, b in
            // Insertions before a change that starts at the same place; otherwise in the order made.
            if a.element.range.lowerBound != b.element.range.lowerBound {
                return a.element.range.lowerBound < b.element.range.lowerBound
            }
            if a.element.range.isEmpty != b.element.range.isEmpty { return a.element.range.isEmpty }
            return a.offset < b.offset
        }.map(\.element)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + sorted.reduce(0) { $0 + $1.text.count })
        var copied = 0
        for edit in sorted {
            precondition(edit.range.lowerBound >= copied, "overlapping edits")
            out += bytes[copied..<edit.range.lowerBound]
            out += edit.text
            copied = edit.range.upperBound
        }
        out += bytes[copied...]
        return out
    }
}

/// Turns the text of a JSON value into the text of another, changing as few bytes as possible:
/// an unchanged member or element keeps its text, a changed scalar is replaced in place, a
/// removed member takes its comma and line with it, and a new member is added after the last,
/// in the separator and indentation the container already uses. What is written anew follows the
/// document's `TextStyle`.
///
/// The splice primitives — replace a value, insert an item, remove an item with its comma — are
/// what every edit of a document is made of; they need the item ranges, which a located parse
/// (`LocatedJSON`) or a delimiting pass (`ObjectSpans`) provides.
struct Splicer {
    /// An item of a container (a member with its key, or an element).
    struct Item {
        /// The whole item: from a member's key (or an element's first byte) to the end of the value.
        var range: Range<Int>
        /// A member's key end and value start: the text between is its `:` separator.
        var colon: Range<Int>?
    }

    let bytes: [UInt8]
    let printer: JSONPrinter
    private(set) var edits: [TextEdit] = []

    init(bytes: [UInt8], style: TextStyle) {
        self.bytes = bytes
        printer = JSONPrinter(style: style)
    }

    // MARK: - The minimal change

    /// Edits that turn `old`'s text into a text of `new`.
    mutating func change(_ old: LocatedJSON, to new: JSONValue, inArray: Bool = false) {
        if Self.identical(old.value, new) { return }
        switch (old.children, new) {
        case (.members(let members), .object(let object)) where !members.isEmpty:
            changeObject(old, members, to: object)
        case (.elements(let elements), .array(let array)) where !elements.isEmpty:
            changeArray(old, elements, to: array)
        default:
            replace(old.range, with: new, inArray: inArray)
        }
    }

    /// Adds an edit made elsewhere (an insertion of text written by the caller).
    mutating func insert(_ edit: TextEdit) {
        edits.append(edit)
    }

    /// Replaces a value's text by `new`'s, written where it starts.
    mutating func replace(_ range: Range<Int>, with new: JSONValue, inArray: Bool = false) {
        let text = printer.text(new, indent: indentation(of: range.lowerBound), column: column(of: range.lowerBound), inArray: inArray)
        edits.append(TextEdit(range: range, text: text))
    }

    private mutating func changeObject(_ old: LocatedJSON, _ members: [LocatedMember], to object: JSONObject) {
        let items = members.map { Item(range: $0.range, colon: $0.keyRange.upperBound..<$0.value.range.lowerBound) }
        let keep = members.map { object.contains($0.key) }
        guard keep.contains(true) else {
            // Nothing stays: the container is written anew.
            replace(old.range, with: .object(object))
            return
        }
        // (Checked before the members change: a rewrite of the whole must not overlap their edits.)
        let layout = self.layout(of: old.range, items)
        if !layout.multiline && outgrowsItsLine(old, .object(object)) {
            replace(old.range, with: .object(object))
            return
        }
        for member in members {
            if let value = object[member.key] { change(member.value, to: value) }
        }
        // A new member goes where the new object has it: before the next member that was there
        // already, or after the last.
        let known = Set(members.map(\.key))
        let colon = items.first?.colon.map { Array(bytes[$0]) }
        var appended: [[UInt8]] = []
        var before: [Int: [[UInt8]]] = [:]
        let keys = object.keys
        for (i, key) in keys.enumerated() where !known.contains(key) {
            let text = printer.member(key, object[key]!, indent: layout.indent, colon: colon)
            if let next = keys[(i + 1)...].first(where: known.contains), let j = members.firstIndex(where: { $0.key == next }) {
                before[j, default: []].append(text)
            } else {
                appended.append(text)
            }
        }
        for (j, texts) in before.sorted(by: { $0.key < $1.key }) {
            // Separated as the member it goes before is from the one before it: on the same
            // line when they share one (`"displayName": …, "description": …, "order": …`).
            var separator = layout.separator
            if j > 0 {
                var comma = items[j - 1].range.upperBound
                while comma < items[j].range.lowerBound, bytes[comma] != UInt8(ascii: ",") { comma += 1 }
                separator = Array(bytes[min(comma + 1, items[j].range.lowerBound)..<items[j].range.lowerBound])
            }
            var text: [UInt8] = []
            for item in texts { text += item + [UInt8(ascii: ",")] + separator }
            edits.append(TextEdit(range: items[j].range.lowerBound..<items[j].range.lowerBound, text: text))
        }
        rewriteItems(items, keep: keep, appending: appended, layout: layout)
    }

    private mutating func changeArray(_ old: LocatedJSON, _ elements: [LocatedJSON], to array: [JSONValue]) {
        if array.isEmpty {
            edits.append(TextEdit(range: old.range, text: Array("[]".utf8)))
            return
        }
        // A common prefix and suffix keep their text; what lies between changes.
        var prefix = 0
        while prefix < min(elements.count, array.count), Self.identical(elements[prefix].value, array[prefix]) { prefix += 1 }
        var suffix = 0
        while suffix < min(elements.count, array.count) - prefix,
            Self.identical(elements[elements.count - 1 - suffix].value, array[array.count - 1 - suffix])
        {
            suffix += 1
        }
        let oldMiddle = prefix..<(elements.count - suffix)
        let newMiddle = Array(array[prefix..<(array.count - suffix)])
        if oldMiddle.count == newMiddle.count {
            for (element, value) in zip(elements[oldMiddle], newMiddle) { change(element, to: value, inArray: true) }
            return
        }
        let items = elements.map { Item(range: $0.range, colon: nil) }
        let layout = self.layout(of: old.range, items)
        if !layout.multiline && outgrowsItsLine(old, .array(array)) {
            replace(old.range, with: .array(array))
            return
        }
        let texts = newMiddle.map {
            printer.text($0, indent: layout.indent, column: layout.multiline ? layout.indent.count : column(of: old.range.lowerBound), inArray: true)
        }
        let joined = texts.joined(separator: [UInt8(ascii: ",")] + layout.separator).map { $0 }
        if oldMiddle.isEmpty {
            // An insertion: before the first element of the suffix, or after the last element.
            if prefix < elements.count {
                edits.append(TextEdit(range: elements[prefix].range.lowerBound..<elements[prefix].range.lowerBound,
                                      text: joined + [UInt8(ascii: ",")] + layout.separator))
            } else {
                let end = elements[elements.count - 1].range.upperBound
                edits.append(TextEdit(range: end..<end, text: [UInt8(ascii: ",")] + layout.separator + joined))
            }
        } else if newMiddle.isEmpty {
            if suffix > 0 {
                edits.append(TextEdit(range: elements[oldMiddle.lowerBound].range.lowerBound..<elements[oldMiddle.upperBound].range.lowerBound, text: []))
            } else {
                edits.append(TextEdit(range: elements[prefix - 1].range.upperBound..<elements[oldMiddle.upperBound - 1].range.upperBound, text: []))
            }
        } else {
            edits.append(TextEdit(
                range: elements[oldMiddle.lowerBound].range.lowerBound..<elements[oldMiddle.upperBound - 1].range.upperBound,
                text: joined))
        }
    }

    // MARK: - Items of a container

    /// How a container separates its items: the white space after each comma, and the
    /// indentation of an item on a line of its own.
    struct Layout {
        var separator: [UInt8]
        var indent: [UInt8]
        var multiline: Bool
    }

    /// The layout of the container `range` (from its bracket to just after its closing one),
    /// whose items are `items` (at least one).
    func layout(of range: Range<Int>, _ items: [Item]) -> Layout {
        var gap: ArraySlice<UInt8>
        if items.count >= 2 {
            var comma = items[0].range.upperBound
            while comma < items[1].range.lowerBound, bytes[comma] != UInt8(ascii: ",") { comma += 1 }
            gap = bytes[min(comma + 1, items[1].range.lowerBound)..<items[1].range.lowerBound]
        } else {
            gap = bytes[(range.lowerBound + 1)..<items[0].range.lowerBound]
        }
        if let newline = gap.lastIndex(of: 0x0A) {
            return Layout(separator: Array(gap), indent: Array(bytes[(newline + 1)..<gap.endIndex]), multiline: true)
        }
        // Several items to a line, on several lines (`"plan": …, "status": …,⏎ "overrides": …`):
        // laid out on lines all the same, continued as the last line break does.
        for i in stride(from: items.count - 1, to: 0, by: -1) {
            var comma = items[i - 1].range.upperBound
            while comma < items[i].range.lowerBound, bytes[comma] != UInt8(ascii: ",") { comma += 1 }
            let between = bytes[min(comma + 1, items[i].range.lowerBound)..<items[i].range.lowerBound]
            if let newline = between.lastIndex(of: 0x0A) {
                return Layout(separator: Array(between), indent: Array(bytes[(newline + 1)..<between.endIndex]), multiline: true)
            }
        }
        if items.count < 2 { gap = printer.style.comma.dropFirst()[...] }
        return Layout(separator: Array(gap), indent: indentation(of: range.lowerBound), multiline: false)
    }

    /// Removes the items not kept (each with its comma and the white space before the next one)
    /// and appends `texts` after the last kept item. At least one item is kept.
    mutating func rewriteItems(_ items: [Item], keep: [Bool], appending texts: [[UInt8]], layout: Layout) {
        guard let lastKept = keep.lastIndex(of: true) else { preconditionFailure("an item must be kept") }
        // An item removed before the first kept one takes the separator after it; any other, the
        // separator before it (so that the line break after it, if any, stays).
        let firstKept = keep.firstIndex(of: true)!
        for i in 0..<lastKept where !keep[i] {
            let range = i < firstKept ? items[i].range.lowerBound..<items[i + 1].range.lowerBound : items[i - 1].range.upperBound..<items[i].range.upperBound
            edits.append(TextEdit(range: range, text: []))
        }
        var appended: [UInt8] = []
        for text in texts { appended += [UInt8(ascii: ",")] + layout.separator + text }
        let end = items[lastKept].range.upperBound
        let trailingEnd = lastKept < items.count - 1 ? items[items.count - 1].range.upperBound : end
        if trailingEnd > end || !appended.isEmpty {
            edits.append(TextEdit(range: end..<trailingEnd, text: appended))
        }
    }

    /// Appends the member `key` to the object `range` whose members are `items`, or writes the
    /// object anew (with that member alone) when it is empty.
    mutating func appendMember(_ key: String, _ value: JSONValue, toObject range: Range<Int>, items: [Item]) {
        guard !items.isEmpty else {
            replace(range, with: .object(JSONObject([(key, value)])))
            return
        }
        let layout = self.layout(of: range, items)
        let colon = items[0].colon.map { Array(bytes[$0]) }
        let text = printer.member(key, value, indent: layout.indent, colon: colon)
        rewriteItems(items, keep: items.map { _ in true }, appending: [text], layout: layout)
    }

    /// Removes item `index` of the container `range` with its comma; empties the container when
    /// it is the only one.
    mutating func remove(_ index: Int, of range: Range<Int>, items: [Item]) {
        guard items.count > 1 else {
            edits.append(TextEdit(range: (range.lowerBound + 1)..<(range.upperBound - 1), text: []))
            return
        }
        var keep = items.map { _ in true }
        keep[index] = false
        rewriteItems(items, keep: keep, appending: [], layout: layout(of: range, items))
    }

    /// Whether a container written on one line would, as `new`, no longer fit the style's
    /// width there: then it is written anew (and broken into lines) rather than grown in place.
    func outgrowsItsLine(_ old: LocatedJSON, _ new: JSONValue) -> Bool {
        guard printer.style.multiline else { return false }
        let grown = printer.inline(new).count
        return grown > old.range.count && column(of: old.range.lowerBound) + grown > printer.style.width
    }

    // MARK: - Positions

    /// Where the line holding `offset` starts.
    func lineStart(of offset: Int) -> Int {
        var i = offset
        while i > 0, bytes[i - 1] != 0x0A { i -= 1 }
        return i
    }

    /// The white space that begins the line holding `offset`.
    func indentation(of offset: Int) -> [UInt8] {
        var i = lineStart(of: offset)
        var indent: [UInt8] = []
        while i < offset, bytes[i] == 0x20 || bytes[i] == 0x09 {
            indent.append(bytes[i])
            i += 1
        }
        return indent
    }

    func column(of offset: Int) -> Int { offset - lineStart(of: offset) }

    /// Same JSON and same kinds of numbers (so that `1` is not silently kept for `1.0`).
    static func identical(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.int(let x), .int(let y)): return x == y
        case (.double(let x), .double(let y)): return x == y
        case (.array(let x), .array(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { identical($0, $1) }
        case (.object(let x), .object(let y)):
            guard x.count == y.count else { return false }
            for (key, value) in x {
                guard let other = y[key], identical(value, other) else { return false }
            }
            return true
        default:
            return a == b
        }
    }
}
