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
/// byte-for-byte equal too (both absent counts as equal). The problems its compile reported are
/// replayed where a fresh compile would report them, and located in the new text.
struct CompileMemo: Sendable {
    /// The document's text. Kept rather than digests of it so that reuse rests on equal bytes,
    /// not on the absence of hash collisions.
    let source: [UInt8]
    /// Per flag, in document order: where its definition is in `source`.
    let definitions: [Range<Int>]
    let evaluators: Range<Int>?
    let metadata: Range<Int>?
    /// What compiling a flag reported, by flag position (only flags with problems).
    let problems: [Int: FlagProblems]

    /// Whether a flag compiled in this memo's document may be reused in `layout`'s document.
    func sharesContext(with layout: DocumentLayout, in bytes: [UInt8]) -> Bool {
        Self.same(source, evaluators, bytes, layout.evaluators) && Self.same(source, metadata, bytes, layout.metadata)
    }

    /// Where flag `old`'s definition ends if the text of `bytes` at `start` begins with it.
    /// A definition is an object (anything else does not compile), and an object's text ends
    /// with its closing brace: a text that begins with it holds exactly that object.
    func definitionEnd(of old: Int, at start: Int, in bytes: [UInt8]) -> Int? {
        let definition = definitions[old]
        let range = start..<(start + definition.count)
        guard source[definition.lowerBound] == UInt8(ascii: "{"), Self.same(source, definition, bytes, range) else {
            return nil
        }
        return range.upperBound
    }

    private static func same(_ a: [UInt8], _ ra: Range<Int>?, _ b: [UInt8], _ rb: Range<Int>?) -> Bool {
        guard let ra, let rb else { return ra == nil && rb == nil }
        guard ra.count == rb.count, ra.upperBound <= a.count, rb.upperBound <= b.count else { return false }
        guard !ra.isEmpty else { return true }
        return a.withUnsafeBytes { a in
            b.withUnsafeBytes { b in memcmp(a.baseAddress! + ra.lowerBound, b.baseAddress! + rb.lowerBound, ra.count) == 0 }
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

/// Where the members that compiling a flag depends on are in a document's text.
struct DocumentLayout {
    var flags: [Range<Int>] = []
    var evaluators: Range<Int>?
    var metadata: Range<Int>?

    /// Scans text that is known to parse into an object (it does not validate). Returns `nil`
    /// when the root has no `flags` object.
    init?(_ bytes: [UInt8]) {
        var flags: [Range<Int>]?
        var evaluators: Range<Int>?
        var metadata: Range<Int>?
        bytes.withUnsafeBytes { buffer in
            var scanner = SpanScanner(bytes: buffer)
            var flagsStart: Int?
            scanner.forEachMember { key, value in
                switch SpanScanner.decodeKey(key, in: buffer) {
                case "flags": flagsStart = value.lowerBound
                case "$evaluators": evaluators = value
                case "metadata": metadata = value
                default: break
                }
            }
            guard let flagsStart, buffer[flagsStart] == UInt8(ascii: "{") else { return }
            scanner.position = flagsStart
            var members: [Range<Int>] = []
            scanner.forEachMember { _, value in members.append(value) }
            flags = members
        }
        guard let flags else { return nil }
        self.flags = flags
        self.evaluators = evaluators
        self.metadata = metadata
    }
}

/// Finds byte ranges in JSON text that is known to parse.
private struct SpanScanner {
    let bytes: UnsafeRawBufferPointer
    var position = 0

    init(bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        skipSpace()
    }

    /// Calls `body` with the key (quotes included) and value range of each member of the object
    /// at `position`.
    mutating func forEachMember(_ body: (Range<Int>, Range<Int>) -> Void) {
        guard position < bytes.count, bytes[position] == UInt8(ascii: "{") else { return }
        position += 1
        skipSpace()
        while position < bytes.count, bytes[position] == UInt8(ascii: "\"") {
            let keyStart = position
            skipValue()
            let key = keyStart..<position
            skipSpace()
            position += 1  // ':'
            skipSpace()
            let valueStart = position
            skipValue()
            body(key, valueStart..<position)
            skipSpace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ",") else { return }
            position += 1
            skipSpace()
        }
    }

    static func decodeKey(_ range: Range<Int>, in bytes: UnsafeRawBufferPointer) -> String? {
        let raw = UnsafeRawBufferPointer(rebasing: bytes[range])
        if !raw.contains(UInt8(ascii: "\\")) {
            return String(decoding: raw.dropFirst().dropLast(), as: UTF8.self)
        }
        return (try? JSONParser().parse(raw))?.string
    }

    @inline(__always)
    mutating func skipSpace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    /// Skips a value or a key.
    mutating func skipValue() {
        position = jsonValueEnd(from: position, in: bytes)
    }
}
