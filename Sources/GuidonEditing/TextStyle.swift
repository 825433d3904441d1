public import GuidonJSON

/// How a document is laid out, read off the document itself, so that text an edit writes into it
/// looks like the text around it: the indentation unit, the line ending, the spacing after `:`
/// and `,`, and whether the document is written on lines at all.
public struct TextStyle: Sendable, Hashable {
    /// One level of indentation (`"  "`, `"    "`, `"\t"`).
    public var indentUnit: [UInt8]
    /// `"\n"` or `"\r\n"`.
    public var newline: [UInt8]
    /// Between a key and its value: `": "` or `":"`.
    public var colon: [UInt8]
    /// Between the items of a container written on one line: `", "` or `","`.
    public var comma: [UInt8]
    /// Whether the document is written on several lines; `false` for compact (one-line) JSON,
    /// where new text is written compactly too.
    public var multiline: Bool
    /// Containers that fit in this many columns may be written on one line.
    public var width: Int
    /// Whether any container that fits in `width` is written on one line (entitlements files:
    /// an override, a tenant, a feature on one line), not only "small" ones (see `JSONPrinter`).
    public var inlineWhenFitting = false

    public init(
        indentUnit: [UInt8] = Array("  ".utf8), newline: [UInt8] = [0x0A], colon: [UInt8] = Array(": ".utf8),
        comma: [UInt8] = Array(", ".utf8), multiline: Bool = true, width: Int = 100
    ) {
        self.indentUnit = indentUnit
        self.newline = newline
        self.colon = colon
        self.comma = comma
        self.multiline = multiline
        self.width = width
    }

    /// The style of `bytes` (a JSON document). What cannot be seen (the indentation of a
    /// one-line document) takes the defaults: two spaces, `": "`, `", "`.
    public static func detect(_ bytes: [UInt8]) -> TextStyle {
        var style = TextStyle()
        // Raw line feeds only occur between tokens (never inside strings), so their presence
        // before the last token says whether the document is laid out on lines.
        var end = bytes.count
        while end > 0, isWhitespace(bytes[end - 1]) { end -= 1 }
        var start = 0
        while start < end, isWhitespace(bytes[start]) { start += 1 }
        // (A document not laid out on lines within its first 64 KiB is taken as one-line JSON.)
        guard let firstNewline = bytes[start..<min(end, start + 65536)].firstIndex(of: 0x0A) else {
            style.multiline = false
            style.colon = separator(after: UInt8(ascii: ":"), in: bytes) ?? Array(":".utf8)
            style.comma = separator(after: UInt8(ascii: ","), in: bytes) ?? Array(",".utf8)
            return style
        }
        if firstNewline > 0, bytes[firstNewline - 1] == 0x0D { style.newline = [0x0D, 0x0A] }
        // The first indented line holds a member of the root object: one level of indentation.
        var i = firstNewline + 1
        while i < end {
            var j = i
            while j < end, bytes[j] == 0x20 || bytes[j] == 0x09 { j += 1 }
            if j < end, bytes[j] != 0x0A, bytes[j] != 0x0D {
                if j > i { style.indentUnit = Array(bytes[i..<j]) }
                break
            }
            i = j + 1
        }
        style.colon = separator(after: UInt8(ascii: ":"), in: bytes) ?? style.colon
        style.comma = separator(after: UInt8(ascii: ","), in: bytes, sameLine: true) ?? style.comma
        return style
    }

    /// The first `mark` outside strings and the spaces that follow it (`sameLine`: only one
    /// followed by something other than a line break).
    private static func separator(after mark: UInt8, in bytes: [UInt8], sameLine: Bool = false) -> [UInt8]? {
        var i = 0
        var inString = false
        while i < bytes.count {
            let b = bytes[i]
            if inString {
                if b == UInt8(ascii: "\\") { i += 2; continue }
                if b == UInt8(ascii: "\"") { inString = false }
            } else if b == UInt8(ascii: "\"") {
                inString = true
            } else if b == mark {
                var j = i + 1
                while j < bytes.count, bytes[j] == 0x20 || bytes[j] == 0x09 { j += 1 }
                if !(sameLine && j < bytes.count && (bytes[j] == 0x0A || bytes[j] == 0x0D)) {
                    return Array(bytes[i..<j])
                }
            }
            i += 1
        }
        return nil
    }

    static func isWhitespace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 }
}

/// Writes JSON values as text in a document's style.
///
/// In a multi-line document a container is written on one line when it fits in the style's
/// width and is "small" (an element of an array, or an object of at most two members whose values
/// are not containers: `{"on": true, "off": false}`, `{"var": "tier"}`), and otherwise one
/// member per line. That reproduces how flag files are written by hand (the example file's
/// `variants` on one line, `metadata` and `targeting` broken up); a compact document gets
/// compact text.
public struct JSONPrinter: Sendable {
    public let style: TextStyle

    public init(style: TextStyle) {
        self.style = style
    }

    /// `value` as text that starts at `column` of a line indented by `indent`; `inArray` when
    /// it is an element of an array.
    public func text(_ value: JSONValue, indent: [UInt8], column: Int, inArray: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        write(value, indent: indent, column: column, inArray: inArray, into: &out)
        return out
    }

    /// A member, `"key": value`, starting at the indentation `indent`.
    public func member(_ key: String, _ value: JSONValue, indent: [UInt8], colon: [UInt8]? = nil) -> [UInt8] {
        var out: [UInt8] = []
        JSONWriter.writeString(key, into: &out)
        out += colon ?? style.colon
        write(value, indent: indent, column: indent.count + out.count, inArray: false, into: &out)
        return out
    }

    /// `value` on one line, with the style's separators.
    public func inline(_ value: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        writeInline(value, into: &out)
        return out
    }

    private func write(_ value: JSONValue, indent: [UInt8], column: Int, inArray: Bool, into out: inout [UInt8]) {
        switch value {
        case .object(let object) where !object.isEmpty && style.multiline:
            let oneLine = inline(value)
            let small = style.inlineWhenFitting || inArray || (object.count <= 2 && object.allSatisfy { !Self.isNonEmptyContainer($0.value) })
            if small && column + oneLine.count <= style.width {
                out += oneLine
                return
            }
            let inner = indent + style.indentUnit
            out.append(UInt8(ascii: "{"))
            for (i, (key, member)) in object.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                out += style.newline
                out += inner
                out += self.member(key, member, indent: inner)
            }
            out += style.newline
            out += indent
            out.append(UInt8(ascii: "}"))
        case .array(let array) where !array.isEmpty && style.multiline:
            let oneLine = inline(value)
            if column + oneLine.count <= style.width {
                out += oneLine
                return
            }
            let inner = indent + style.indentUnit
            out.append(UInt8(ascii: "["))
            for (i, element) in array.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                out += style.newline
                out += inner
                write(element, indent: inner, column: inner.count, inArray: true, into: &out)
            }
            out += style.newline
            out += indent
            out.append(UInt8(ascii: "]"))
        default:
            writeInline(value, into: &out)
        }
    }

    private func writeInline(_ value: JSONValue, into out: inout [UInt8]) {
        switch value {
        case .object(let object):
            out.append(UInt8(ascii: "{"))
            for (i, (key, member)) in object.enumerated() {
                if i > 0 { out += style.comma }
                JSONWriter.writeString(key, into: &out)
                out += style.colon
                writeInline(member, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        case .array(let array):
            out.append(UInt8(ascii: "["))
            for (i, element) in array.enumerated() {
                if i > 0 { out += style.comma }
                writeInline(element, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        default:
            JSONWriter.write(value, into: &out)
        }
    }

    static func isNonEmptyContainer(_ value: JSONValue) -> Bool {
        switch value {
        case .object(let o): !o.isEmpty
        case .array(let a): !a.isEmpty
        default: false
        }
    }
}
