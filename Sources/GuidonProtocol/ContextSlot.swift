import GuidonEngine
import GuidonJSON

/// Where a `Request` keeps its context: decoded, or checked and kept as text until it is read.
///
/// Most flags do not read the context (no targeting, disabled, missing), and building an
/// `EvaluationContext` is most of the cost of decoding a request line. So when the parser
/// decodes into a kept `Request` and the context is *flat* (members whose names and string
/// values have no escapes and are ASCII, or scalars), it only checks the context and copies
/// its text; `Request.context` decodes it the first time it is read, which the engine does
/// only for a flag whose targeting reads it.
///
/// The check is deliberately narrower than the decoder: anything it does not vouch for
/// (escapes, nesting, a non-ASCII name, a repeated name, a syntax error, more than 16
/// members) is decoded at once, by the same code as always, so that a refused
/// line is refused with the very same message and column whichever path it took.
///
/// Decoding reuses storage: the attributes are filled into the spare object while the ones
/// decoded before stay intact to be compared with, and a string equal to the one at the same
/// place before is kept instead of being built again.
struct ContextSlot: Sendable {
    /// The context decoded last: the request's context, unless `pending`.
    private(set) var decoded = EvaluationContext()
    /// Storage for the next decode (the attributes decoded the time before).
    private var spareAttributes = JSONObject()
    /// The text of the request's context object, when known (else empty): the context is kept
    /// without decoding or checking it again when the next request's context has the same text.
    private(set) var text: [UInt8] = []
    /// The depth limit `text` was checked under.
    private(set) var maxDepth = 0
    /// Whether the request's context is `text`, checked but not decoded yet; empty text then
    /// means that the request has no context.
    private var pending = false

    init(_ context: EvaluationContext = EvaluationContext()) {
        decoded = context
    }

    /// The request's context, decoded now if it was not yet.
    mutating func context() -> EvaluationContext {
        if pending { decodePending() }
        return decoded
    }

    mutating func set(_ context: EvaluationContext) {
        decoded = context
        pending = false
        text.removeAll(keepingCapacity: true)
    }

    /// The request has no context.
    mutating func setEmpty() {
        text.removeAll(keepingCapacity: true)
        pending = true
    }

    /// Takes the context object at the scanner's position: checks it and keeps its text when
    /// it is flat and `lazily`, else decodes it at once (keeping its text when `lazily`).
    mutating func take(_ s: inout JSONScanner, lazily: Bool) throws(JSONScanner.Failure) {
        let start = s.position
        text.removeAll(keepingCapacity: true)
        maxDepth = s.maxDepth
        if lazily && Self.isFlat(&s) {
            pending = true
        } else {
            s.position = start
            try decode(&s)
        }
        if lazily { text.append(contentsOf: UnsafeRawBufferPointer(rebasing: s.bytes[start..<s.position])) }
    }

    private mutating func decodePending() {
        guard !text.isEmpty else {
            pending = false
            decoded.targetingKey = nil
            decoded.attributes.removeAll(keepingCapacity: true)
            return
        }
        let text = self.text
        text.withUnsafeBytes { bytes in
            var s = JSONScanner(bytes, maxDepth: maxDepth)
            do throws(JSONScanner.Failure) {
                try decode(&s)
            } catch {
                // `isFlat` vouched for the text: a decoder that disagrees is a bug.
                assertionFailure("a checked context failed to decode: \(error.message)")
            }
        }
    }

    /// Decodes the context object at the scanner's position into `decoded`, reusing what the
    /// one decoded before holds. When this throws, `decoded` holds part of the context.
    private mutating func decode(_ s: inout JSONScanner) throws(JSONScanner.Failure) {
        pending = false
        var context = EvaluationContext()
        swap(&context.attributes, &spareAttributes)
        context.attributes.removeAll(keepingCapacity: true)
        defer {
            swap(&context, &decoded)
            swap(&context.attributes, &spareAttributes)
        }
        try Self.decode(&s, into: &context, previous: decoded)
    }

    /// The context object: a string `targetingKey` becomes the targeting key, every other
    /// member an attribute (as `EvaluationContext(json:)` reads it). Plain strings equal to the
    /// ones at the same place in `previous` are reused rather than built again.
    private static func decode(
        _ s: inout JSONScanner, into context: inout EvaluationContext, previous: EvaluationContext
    ) throws(JSONScanner.Failure) {
        var sawTargetingKey = false
        guard try s.openObject(depth: 2) else { return }
        repeat {
            s.skipWhitespace()
            let keyOffset = s.position
            let key: String
            let isTargetingKey: Bool
            let i = context.attributes.count
            if let raw = s.plainString() {
                isTargetingKey = equals(raw, "targetingKey")
                key = isTargetingKey ? "targetingKey" : reusing(i < previous.attributes.count ? previous.attributes.keys[i] : nil, for: raw)
            } else {
                key = try s.string()
                isTargetingKey = key == "targetingKey"
            }
            try s.expect(UInt8(ascii: ":"), "':' after the member name")
            s.skipWhitespace()
            let value: JSONValue
            if let raw = s.plainString() {
                let before: String?
                if isTargetingKey {
                    before = previous.targetingKey
                } else if i < previous.attributes.count, case .string(let text) = previous.attributes.values[i] {
                    before = text
                } else {
                    before = nil
                }
                value = .string(reusing(before, for: raw))
            } else {
                value = try s.value(depth: 2)
            }
            if isTargetingKey {
                if sawTargetingKey { throw s.fail("duplicate member \"targetingKey\"", at: keyOffset) }
                sawTargetingKey = true
                if case .string(let targetingKey) = value {
                    context.targetingKey = targetingKey
                    continue
                }
            }
            guard context.attributes.insertNew(key, value) else {
                throw s.fail("duplicate member \"\(key)\"", at: keyOffset)
            }
        } while try s.nextMember()
    }

    /// Whether the object at the scanner's position is a flat context that `decode` accepts:
    /// at most 16 members (the check for repeated names is quadratic) with distinct ASCII names without escapes, each a string
    /// without escapes or a number, `true`, `false` or `null`. When it is, the scanner is left
    /// after it; when not, somewhere in it.
    ///
    /// Within these bounds names are equal exactly when their bytes are (which is how `decode`
    /// finds repeated ones, `targetingKey` included); strings are held to the rules of
    /// `JSONScanner.plainString` and numbers and literals are read by the scanner's own
    /// functions, so the two agree on every such object. One pass, byte by byte.
    static func isFlat(_ s: inout JSONScanner) -> Bool {
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
            i += 1
            let start = i
            while i < end, bytes[i] != UInt8(ascii: "\""), bytes[i] != UInt8(ascii: "\\"), bytes[i] >= 0x20, bytes[i] < 0x80 { i += 1 }
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
                i += 1
                let start = i
                var highBits: UInt8 = 0
                while i < end, bytes[i] != UInt8(ascii: "\"") {
                    guard bytes[i] != UInt8(ascii: "\\"), bytes[i] >= 0x20 else { return false }
                    highBits |= bytes[i]
                    i += 1
                }
                guard i < end else { return false }
                if highBits >= 0x80 && firstInvalidUTF8Offset(in: UnsafeRawBufferPointer(rebasing: bytes[start..<i])) != nil {
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
