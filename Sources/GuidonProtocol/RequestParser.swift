import GuidonEngine
import GuidonJSON

/// Decodes one request line (without its newline) into a `Request`.
///
/// Works on the received bytes in place: member names are matched without allocating,
/// only the members protocol v1 defines are decoded, and the context is built straight
/// into an `EvaluationContext`. Unknown members are checked for well-formedness and
/// otherwise ignored, so that clients may send fields a later version understands.
public struct RequestParser: Sendable {
    /// The deepest nesting accepted inside a request (the request object is level 1).
    public var maxDepth: Int

    public init(maxDepth: Int = 32) {
        self.maxDepth = maxDepth
    }

    public func parse(_ line: UnsafeRawBufferPointer) throws(RequestError) -> Request {
        var decoder = Decoder(scanner: JSONScanner(line, maxDepth: maxDepth))
        return try decoder.decode()
    }

    public func parse(_ line: [UInt8]) throws(RequestError) -> Request {
        let result: Result<Request, RequestError> = line.withUnsafeBytes { bytes in
            do throws(RequestError) { return .success(try parse(bytes)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    public func parse(_ line: String) throws(RequestError) -> Request {
        try parse(Array(line.utf8))
    }
}

/// The members of a request object.
private enum Member: UInt8 {
    case op, id, flag, flags, type, `default`, context

    init?(raw: UnsafeRawBufferPointer) {
        func equals(_ s: StaticString) -> Bool {
            raw.count == s.utf8CodeUnitCount && memcmp(raw.baseAddress!, s.utf8Start, raw.count) == 0
        }
        switch raw.count {
        case 2: if equals("op") { self = .op } else if equals("id") { self = .id } else { return nil }
        case 4: if equals("flag") { self = .flag } else if equals("type") { self = .type } else { return nil }
        case 5: if equals("flags") { self = .flags } else { return nil }
        case 7: if equals("default") { self = .default } else if equals("context") { self = .context } else { return nil }
        default: return nil
        }
    }

    init?(name: String) {
        var name = name
        let found = name.withUTF8 { Member(raw: UnsafeRawBufferPointer($0)) }
        guard let found else { return nil }
        self = found
    }

    var name: String {
        switch self {
        case .op: "op"
        case .id: "id"
        case .flag: "flag"
        case .flags: "flags"
        case .type: "type"
        case .default: "default"
        case .context: "context"
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private struct Decoder {
    var scanner: JSONScanner
    var id: JSONValue?

    func invalid(_ message: String) -> RequestError {
        RequestError(code: .invalidRequest, message: message, id: id)
    }

    mutating func decode() throws(RequestError) -> Request {
        do {
            return try decodeObject()
        } catch let failure as JSONScanner.Failure {
            throw invalid(failure.message)
        } catch let error as RequestError {
            throw error
        } catch {
            throw invalid("\(error)")
        }
    }

    private mutating func decodeObject() throws -> Request {
        var s = scanner
        defer { scanner = s }
        s.skipWhitespace()
        guard !s.atEnd, s.current == UInt8(ascii: "{") else {
            throw invalid("a request must be a JSON object, found \(s.describeCurrent())")
        }
        var op: Request.Operation?
        var opName: String?
        var flag: String?
        var flags: [String]?
        var type: ValueType?
        var defaultValue: JSONValue?
        var context = EvaluationContext()
        var seen: UInt8 = 0
        var unknown: [String] = []

        if try s.openObject(depth: 1) {
            repeat {
                let name = try s.memberName()
                let member = name.raw.flatMap(Member.init(raw:)) ?? name.decoded.flatMap(Member.init(name:))
                guard let member else {
                    let text = name.decoded ?? String(decoding: name.raw!, as: UTF8.self)
                    if unknown.contains(text) { throw s.fail("duplicate member \"\(text)\"", at: name.offset) }
                    unknown.append(text)
                    _ = try s.value(depth: 1)
                    continue
                }
                let bit: UInt8 = 1 << member.rawValue
                if seen & bit != 0 { throw s.fail("duplicate member \"\(member.name)\"", at: name.offset) }
                seen |= bit
                s.skipWhitespace()
                let valueOffset = s.position
                switch member {
                case .op:
                    guard case .string(let text) = try s.value(depth: 1) else {
                        throw s.fail("\"op\" must be a string", at: valueOffset)
                    }
                    opName = text
                    op = Request.Operation(rawValue: text)
                case .id:
                    let value = try s.value(depth: 1)
                    switch value {
                    case .array, .object: throw s.fail("\"id\" must be a string, number, boolean or null", at: valueOffset)
                    default: id = value
                    }
                case .flag:
                    guard case .string(let text) = try s.value(depth: 1) else {
                        throw s.fail("\"flag\" must be a string", at: valueOffset)
                    }
                    flag = text
                case .flags:
                    guard case .array(let elements) = try s.value(depth: 1) else {
                        throw s.fail("\"flags\" must be an array of strings", at: valueOffset)
                    }
                    var keys: [String] = []
                    keys.reserveCapacity(elements.count)
                    for element in elements {
                        guard case .string(let key) = element else {
                            throw s.fail("\"flags\" must be an array of strings, found a \(element.typeName)", at: valueOffset)
                        }
                        keys.append(key)
                    }
                    flags = keys
                case .type:
                    guard case .string(let text) = try s.value(depth: 1) else {
                        throw s.fail("\"type\" must be a string", at: valueOffset)
                    }
                    guard let parsed = ValueType(rawValue: text) else {
                        throw s.fail("unknown type \"\(text)\"; expected boolean, string, integer, float or object", at: valueOffset)
                    }
                    type = parsed
                case .default:
                    defaultValue = try s.value(depth: 1)
                case .context:
                    guard !s.atEnd, s.current == UInt8(ascii: "{") else {
                        throw s.fail("\"context\" must be an object", at: valueOffset)
                    }
                    context = try decodeContext(&s)
                }
            } while try s.nextMember()
        }
        s.skipWhitespace()
        if !s.atEnd { throw s.fail("unexpected \(s.describeCurrent()) after the request object") }

        guard let opName else { throw invalid("missing \"op\"") }
        guard let op else {
            throw RequestError(
                code: .unknownOp,
                message: "unknown op \"\(opName)\"; expected eval, evalAll, ping, status, list or watch", id: id)
        }
        if op == .eval {
            if flag != nil && flags != nil { throw invalid("give either \"flag\" or \"flags\", not both") }
            if flag == nil && flags == nil { throw invalid("eval needs \"flag\" (or \"flags\")") }
        }
        if let type, let defaultValue, !Self.matches(defaultValue, type) {
            throw invalid("\"default\" is a \(defaultValue.typeName), which is not a \(type.rawValue)")
        }
        return Request(op: op, id: id, flag: flag, flags: flags, type: type, defaultValue: defaultValue, context: context)
    }

    /// The context object: a string `targetingKey` becomes the targeting key, every other
    /// member an attribute (as `EvaluationContext(json:)` reads it).
    private func decodeContext(_ s: inout JSONScanner) throws(JSONScanner.Failure) -> EvaluationContext {
        var context = EvaluationContext()
        var sawTargetingKey = false
        guard try s.openObject(depth: 2) else { return context }
        repeat {
            s.skipWhitespace()
            let keyOffset = s.position
            let key = try s.string()
            try s.expect(UInt8(ascii: ":"), "':' after the member name")
            let value = try s.value(depth: 2)
            if key == "targetingKey" {
                if sawTargetingKey { throw s.fail("duplicate member \"targetingKey\"", at: keyOffset) }
                sawTargetingKey = true
                if case .string(let targetingKey) = value {
                    context.targetingKey = targetingKey
                    continue
                }
            } else if context.attributes.contains(key) {
                throw s.fail("duplicate member \"\(key)\"", at: keyOffset)
            }
            context.attributes[key] = value
        } while try s.nextMember()
        return context
    }

    static func matches(_ value: JSONValue, _ type: ValueType) -> Bool {
        switch (type, value) {
        case (.boolean, .bool), (.string, .string), (.integer, .int),
            (.float, .double), (.float, .int), (.object, .object), (.object, .array):
            return true
        default:
            return false
        }
    }
}
