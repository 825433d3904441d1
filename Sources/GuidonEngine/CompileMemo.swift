import GuidonJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a snapshot remembers of its compile so that the next compile of a new version of the
/// same document can reuse the flags that did not change.
///
/// Compiling a flag is a pure function of
/// - its key and its definition, whose text is a byte range of the document: equal bytes in the
///   same place (a member of `flags`) parse to the same value;
/// - the document's `$evaluators`, whose rules are compiled into the flags that `$ref` them and
///   whose names appear in messages;
/// - the set-level `metadata`, which is merged into every flag.
///
/// Nothing else reaches it: the compile options only decide whether a problem rejects the
/// document, and problems are remembered by kind and classified again. So a flag is reused when
/// its key and definition bytes are equal and the `$evaluators` and `metadata` members are
/// identical too (same members in the same order, same strings byte for byte, same numbers bit
/// for bit; both absent counts as identical). The problems its compile reported are replayed
/// where a fresh compile would report them, and located in the new text.
struct CompileMemo: Sendable {
    /// The document's text. Kept rather than digests of it so that reuse rests on equal bytes,
    /// not on the absence of hash collisions.
    let source: [UInt8]
    /// Per flag, in document order: where its definition is in `source`.
    let definitions: [Range<Int>]
    /// The document's `$evaluators` and `metadata` members, as parsed.
    let evaluators: JSONValue?
    let metadata: JSONValue?
    /// What compiling a flag reported, by flag position (only flags with problems).
    let problems: [Int: FlagProblems]

    /// What of a document, besides a flag's own definition, goes into compiling the flag.
    static func context(of root: JSONValue) -> (evaluators: JSONValue?, metadata: JSONValue?) {
        (root.object?["$evaluators"], root.object?["metadata"])
    }

    /// Whether flags compiled in this memo's document may be reused in the document `root`.
    func sharesContext(with root: JSONValue) -> Bool {
        let context = Self.context(of: root)
        return Self.identical(evaluators, context.evaluators) && Self.identical(metadata, context.metadata)
    }

    /// Whether the root members parsed so far already show `$evaluators` or `metadata` other
    /// than this memo's (when they come before the flags, no flag need be compared with its old text).
    func contextDiffers(from members: JSONObject) -> Bool {
        if let value = members["$evaluators"], !Self.identical(evaluators, value) { return true }
        if let value = members["metadata"], !Self.identical(metadata, value) { return true }
        return false
    }

    /// Where flag `old`'s definition ends if the text of `bytes` at `start` begins with it.
    /// A definition is an object (anything else does not compile), and an object's text ends
    /// with its closing brace: a text that begins with it holds exactly that object.
    func definitionEnd(of old: Int, at start: Int, in bytes: [UInt8]) -> Int? {
        let definition = definitions[old]
        let end = start + definition.count
        guard source[definition.lowerBound] == UInt8(ascii: "{"), end <= bytes.count else { return nil }
        let same = source.withUnsafeBytes { a in
            bytes.withUnsafeBytes { b in memcmp(a.baseAddress! + definition.lowerBound, b.baseAddress! + start, definition.count) == 0 }
        }
        return same ? end : nil
    }

    /// Stricter than `==`: member order counts, strings compare byte for byte (not by
    /// canonical equivalence) and numbers bit for bit (`-0.0` is not `0.0`).
    static func identical(_ a: JSONValue?, _ b: JSONValue?) -> Bool {
        switch (a, b) {
        case (nil, nil): return true
        case (.null?, .null?): return true
        case (.bool(let x)?, .bool(let y)?): return x == y
        case (.int(let x)?, .int(let y)?): return x == y
        case (.double(let x)?, .double(let y)?): return x.bitPattern == y.bitPattern
        case (.string(let x)?, .string(let y)?): return x.utf8.elementsEqual(y.utf8)
        case (.array(let x)?, .array(let y)?):
            return x.count == y.count && zip(x, y).allSatisfy { identical($0, $1) }
        case (.object(let x)?, .object(let y)?):
            return x.count == y.count
                && zip(x, y).allSatisfy { $0.key.utf8.elementsEqual($1.key.utf8) && identical($0.value, $1.value) }
        default: return false
        }
    }
}

/// The problems compiling one flag reported, in the order reported.
struct FlagProblems: Sendable {
    /// Found checking the flag's structure.
    var document: [Problem] = []
    /// Found compiling its targeting.
    var logic: [Problem] = []
}
