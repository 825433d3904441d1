public import GuidonEngine
import GuidonJSON

/// One OFREP evaluation request, read from its path and body (no I/O).
///
/// The body is `{"context": {…}}`. Kind to clients: the context may be missing or `null` (no
/// context), so may the body itself (an empty body is `{}`), and so may `targetingKey` (flags that
/// need one answer as they do without it on the query socket); members other than `context` are
/// ignored, for later versions. Refused, with `400` and details saying where: a `Content-Type`
/// other than JSON, a body that is not JSON (`PARSE_ERROR`, with line and column; a repeated
/// member or nesting deeper than 32 levels too) or not an object, and a context that is not an
/// object (`INVALID_CONTEXT`). The context is read as the query socket reads one: a string
/// `targetingKey` is the targeting key, anything else an attribute.
public struct OFREPRequest: Sendable {
    /// What is asked.
    public enum Target: Sendable, Hashable {
        /// One flag (`POST /ofrep/v1/evaluate/flags/{key}`), by its key (percent-decoded).
        case flag(String)
        /// Every flag (`POST /ofrep/v1/evaluate/flags`).
        case allFlags
    }

    public var target: Target
    public var context: EvaluationContext

    /// A digest of the context, its members sorted (64-bit FNV-1a): part of the bulk response's
    /// `ETag`, so that a cached evaluation is never taken for another context's. (Computed when
    /// asked: a single-flag request has no use for it.)
    public var contextDigest: UInt64 {
        var canonical: [UInt8] = []
        var object = context.attributes
        if let key = context.targetingKey { object["targetingKey"] = .string(key) }
        Self.writeCanonical(.object(object), into: &canonical)
        return FNV1a.hash(canonical)
    }

    /// Nesting accepted in a body (the body object is level 1), as on the query socket.
    public static let maxDepth = 32

    public init(target: Target, context: EvaluationContext = EvaluationContext()) {
        self.target = target
        self.context = context
    }

    /// Reads a request for `target` from its body and `Content-Type` (`nil`: not sent).
    public init(target: Target, body: [UInt8], contentType: String?) throws(OFREPError) {
        let key: String? = if case .flag(let key) = target { key } else { nil }
        if let contentType, !body.isEmpty, !Self.isJSON(contentType) {
            throw OFREPError(
                .parseError, "the request body is \(contentType); OFREP takes application/json, e.g. {\"context\":{\"targetingKey\":\"user-1\"}}",
                key: key)
        }
        guard !body.isEmpty else {
            self.init(target: target)
            return
        }
        let document: JSONValue
        do throws(JSONSyntaxError) {
            document = try JSONParser(maxDepth: Self.maxDepth, duplicateKeys: .reject).parse(body)
        } catch {
            throw OFREPError(.parseError, "the request body is not valid JSON: \(error)", key: key)
        }
        guard case .object(let members) = document else {
            throw OFREPError(
                .parseError, "the request body must be a JSON object such as {\"context\":{…}}, not \(document.typeName)", key: key)
        }
        switch members["context"] {
        case nil, .null?:
            self.init(target: target)
        case .object(let context)?:
            self.init(target: target, context: EvaluationContext(json: context))
        case let other?:
            throw OFREPError(.invalidContext, "\"context\" must be an object of attributes, not \(other.typeName)", key: key)
        }
    }

    /// `application/json`, or any `application/…+json`, in any case, with or without parameters
    /// (`; charset=utf-8`). On the bytes: this runs for every request (Character-wise splitting
    /// and lower-casing cost 19,000 instructions of an OFREP request's 208,000; callgrind).
    static func isJSON(_ contentType: String) -> Bool {
        var type = Array(contentType.utf8.prefix { $0 != UInt8(ascii: ";") })
        while let last = type.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") { type.removeLast() }
        let start = type.firstIndex { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") } ?? type.endIndex
        type = type[start...].map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") ? $0 + 32 : $0 }
        let application = Array("application/".utf8)
        guard type.starts(with: application) else { return false }
        let subtype = type.dropFirst(application.count)
        return subtype.elementsEqual("json".utf8) || (subtype.count > 5 && subtype.suffix(5).elementsEqual("+json".utf8))
    }

    /// Compact JSON with every object's members sorted by key: equal contexts, equal text,
    /// whatever order their members were sent in.
    static func writeCanonical(_ value: JSONValue, into out: inout [UInt8]) {
        switch value {
        case .object(let object):
            out.append(UInt8(ascii: "{"))
            for (n, i) in object.keys.indices.sorted(by: { object.keys[$0].utf8.lexicographicallyPrecedes(object.keys[$1].utf8) }).enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                JSONWriter.writeString(object.keys[i], into: &out)
                out.append(UInt8(ascii: ":"))
                writeCanonical(object.values[i], into: &out)
            }
            out.append(UInt8(ascii: "}"))
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (n, element) in elements.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                writeCanonical(element, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        default:
            JSONWriter.write(value, into: &out)
        }
    }
}

/// 64-bit FNV-1a: the digest the revisions use too (a change detector, not a secret).
enum FNV1a {
    static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    static let prime: UInt64 = 0x0000_0100_0000_01b3

    static func hash(_ bytes: [UInt8], from start: UInt64 = offsetBasis) -> UInt64 {
        var hash = start
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= prime
        }
        return hash
    }

    static func hash(_ value: UInt64, from start: UInt64) -> UInt64 {
        var hash = start
        var value = value
        for _ in 0..<8 {
            hash ^= value & 0xff
            hash &*= prime
            value >>= 8
        }
        return hash
    }

    /// 16 lower-case hex digits.
    static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
