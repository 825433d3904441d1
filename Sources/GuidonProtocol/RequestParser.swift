import GuidonEngine
import GuidonJSON

/// Decodes one request line (without its newline) into a `Request`.
///
/// Works on the received bytes in place: member names are matched without allocating,
/// only the members protocol v1 defines are decoded, and the context is built straight
/// into an `EvaluationContext` (or, decoding into a kept `Request`, checked and built only
/// when it is read: see `ContextSlot`). Unknown members are checked for well-formedness and
/// otherwise ignored, so that clients may send fields a later version understands.
public struct RequestParser: Sendable {
    /// The deepest nesting accepted inside a request (the request object is level 1).
    public var maxDepth: Int

    public init(maxDepth: Int = 32) {
        self.maxDepth = maxDepth
    }

    public func parse(_ line: UnsafeRawBufferPointer) throws(RequestError) -> Request {
        var request = Request(op: .ping)
        var decoder = Decoder(scanner: JSONScanner(line, maxDepth: maxDepth), keepsRequest: false)
        try decoder.decode(into: &request)
        return request
    }

    /// Decodes `line` into `request`, reusing what it holds from previous requests: the
    /// storage of its context and of its `flags`, and every flag key, context key and context
    /// string that is unchanged. A context whose text is exactly the last request's (a client
    /// evaluating several flags for one user) is kept without being decoded again. A flat
    /// context (the usual kind) is only checked, and decoded when `request.context` is first
    /// read, so that evaluating a flag that does not read it costs no decoding. A
    /// connection that keeps one `Request` for all its lines thus decodes the usual request
    /// without allocating (a string longer than 15 bytes that did change takes one
    /// allocation). Every line is refused exactly as `parse(_:)` refuses it. When this throws,
    /// `request` holds nothing meaningful (but keeps its storage).
    public func parse(_ line: UnsafeRawBufferPointer, into request: inout Request) throws(RequestError) {
        var decoder = Decoder(scanner: JSONScanner(line, maxDepth: maxDepth), keepsRequest: true)
        try decoder.decode(into: &request)
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
    case op, id, flag, flags, type, `default`, context, feature, amount, idempotencyKey

    init?(raw: UnsafeRawBufferPointer) {
        switch raw.count {
        case 2: if equals(raw, "op") { self = .op } else if equals(raw, "id") { self = .id } else { return nil }
        case 4: if equals(raw, "flag") { self = .flag } else if equals(raw, "type") { self = .type } else { return nil }
        case 5: if equals(raw, "flags") { self = .flags } else { return nil }
        case 7:
            if equals(raw, "default") { self = .default } else if equals(raw, "context") { self = .context } else if equals(raw, "feature") { self = .feature } else { return nil }
        case 6: if equals(raw, "amount") { self = .amount } else { return nil }
        case 14: if equals(raw, "idempotencyKey") { self = .idempotencyKey } else { return nil }
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
        case .feature: "feature"
        case .amount: "amount"
        case .idempotencyKey: "idempotencyKey"
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
    /// Whether `request` is kept for the next line (not a one-off): then the context's text is
    /// kept too, and a flat context is decoded only when read.
    let keepsRequest: Bool
    var id: JSONValue?

    func invalid(_ message: String) -> RequestError {
        RequestError(code: .invalidRequest, message: message, id: id)
    }

    mutating func decode(into request: inout Request) throws(RequestError) {
        do {
            try decodeObject(into: &request)
        } catch let failure as JSONScanner.Failure {
            throw invalid(failure.message)
        } catch let error as RequestError {
            throw error
        } catch {
            throw invalid("\(error)")
        }
    }

    /// Plain strings (no escapes) in `op`, `flag`, `flags` and `type` are matched as bytes;
    /// anything else takes the general path, which decodes it or says what is wrong.
    private mutating func decodeObject(into request: inout Request) throws {
        var s = scanner
        defer { scanner = s }
        s.skipWhitespace()
        guard !s.atEnd, s.current == UInt8(ascii: "{") else {
            throw invalid("a request must be a JSON object, found \(s.describeCurrent())")
        }
        var op: Request.Operation?
        var unknownOp: String?
        var flag: String?
        var flags: [String]?
        var type: ValueType?
        var defaultValue: JSONValue?
        var feature: String?
        var amount: Int64?
        var idempotencyKey: String?
        var seen: UInt16 = 0
        var unknown: [String] = []
        var extras: JSONObject?
        // The previous request's storage, taken out so that it is uniquely referenced.
        let previousFlag = request.flag
        var flagStorage = request.flags.take() ?? []
        // A context whose text is the last request's is the same context.
        let sameTextSameContext = request.contextSlot.maxDepth == s.maxDepth
        var sawContext = false
        defer {
            // Also when refused: the request then holds nothing meaningful, but keeps the storage.
            if !sawContext { request.contextSlot.setEmpty() }
        }

        if try s.openObject(depth: 1) {
            repeat {
                let name = try s.memberName()
                let member = name.raw.flatMap(Member.init(raw:)) ?? name.decoded.flatMap(Member.init(name:))
                guard let member else {
                    let text = name.decoded ?? String(decoding: name.raw!, as: UTF8.self)
                    if unknown.contains(text) { throw s.fail("duplicate member \"\(text)\"", at: name.offset) }
                    unknown.append(text)
                    let value = try s.value(depth: 1)
                    if extras == nil { extras = JSONObject() }
                    extras![text] = value
                    continue
                }
                let bit: UInt16 = 1 << member.rawValue
                if seen & bit != 0 { throw s.fail("duplicate member \"\(member.name)\"", at: name.offset) }
                seen |= bit
                s.skipWhitespace()
                let valueOffset = s.position
                switch member {
                case .op:
                    if let raw = s.plainString() {
                        op = Request.Operation(utf8: raw)
                        if op == nil { unknownOp = String(decoding: raw, as: UTF8.self) }
                        continue
                    }
                    guard case .string(let text) = try s.value(depth: 1) else {
                        throw s.fail("\"op\" must be a string", at: valueOffset)
                    }
                    op = Request.Operation(rawValue: text)
                    if op == nil { unknownOp = text }
                case .id:
                    let value = try s.value(depth: 1)
                    switch value {
                    case .array, .object: throw s.fail("\"id\" must be a string, number, boolean or null", at: valueOffset)
                    default: id = value
                    }
                case .flag:
                    if let raw = s.plainString() {
                        flag = reusing(previousFlag, for: raw)
                        continue
                    }
                    guard case .string(let text) = try s.value(depth: 1) else {
                        throw s.fail("\"flag\" must be a string", at: valueOffset)
                    }
                    flag = text
                case .flags:
                    if plainStringList(&s, into: &flagStorage) {
                        flags = flagStorage
                        continue
                    }
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
                    if let raw = s.plainString() {
                        if let parsed = ValueType(utf8: raw) {
                            type = parsed
                            continue
                        }
                        s.position = valueOffset  // let the general path word the refusal
                    }
                    guard case .string(let text) = try s.value(depth: 1) else {
                        throw s.fail("\"type\" must be a string", at: valueOffset)
                    }
                    guard let parsed = ValueType(rawValue: text) else {
                        throw s.fail("unknown type \"\(text)\"; expected boolean, string, integer, float or object", at: valueOffset)
                    }
                    type = parsed
                case .default:
                    defaultValue = try s.value(depth: 1)
                case .feature:
                    if let raw = s.plainString() {
                        feature = reusing(request.feature, for: raw)
                        continue
                    }
                    guard case .string(let text) = try s.value(depth: 1) else {
                        throw s.fail("\"feature\" must be a string", at: valueOffset)
                    }
                    feature = text
                case .amount:
                    let value = try s.value(depth: 1)
                    amount = try Self.amount(value, failing: { s.fail($0, at: valueOffset) })
                case .idempotencyKey:
                    guard case .string(let text) = try s.value(depth: 1) else {
                        throw s.fail("\"idempotencyKey\" must be a string", at: valueOffset)
                    }
                    guard !text.isEmpty, text.utf8.count <= Request.maximumIdempotencyKeyBytes else {
                        throw s.fail("\"idempotencyKey\" must be 1 to \(Request.maximumIdempotencyKeyBytes) bytes long", at: valueOffset)
                    }
                    idempotencyKey = text
                case .context:
                    guard !s.atEnd, s.current == UInt8(ascii: "{") else {
                        throw s.fail("\"context\" must be an object", at: valueOffset)
                    }
                    sawContext = true
                    if sameTextSameContext && s.remaining(startWith: request.contextSlot.text) {
                        s.position += request.contextSlot.text.count
                    } else {
                        try request.contextSlot.take(&s, lazily: keepsRequest)
                    }
                }
            } while try s.nextMember()
        }
        s.skipWhitespace()
        if !s.atEnd { throw s.fail("unexpected \(s.describeCurrent()) after the request object") }

        if let unknownOp {
            // Admin operations are named `document.verb`: the query socket refuses them all,
            // including those of later versions, rather than calling them unknown.
            if AdminRequest.isAdminOp(unknownOp) {
                throw RequestError(
                    code: .forbidden, message: "\"\(unknownOp)\" is an admin operation and this socket only reads", id: id,
                    details: ["op": .string(unknownOp)])
            }
            throw RequestError(
                code: .unknownOp,
                message: "unknown op \"\(unknownOp)\"; expected eval, evalAll, ping, status, list, watch, stats, metrics, entitlements, tenants, consume or usage", id: id)
        }
        guard let op else { throw invalid("missing \"op\"") }
        if op == .eval {
            if flag != nil && flags != nil { throw invalid("give either \"flag\" or \"flags\", not both") }
            if flag == nil && flags == nil { throw invalid("eval needs \"flag\" (or \"flags\")") }
        }
        switch op {
        case .consume:
            guard let feature, !feature.isEmpty else { throw invalid("consume needs \"feature\" (a metered feature's key)") }
        case .usage:
            if let feature, feature.isEmpty { throw invalid("\"feature\" must not be empty") }
            if amount != nil { throw invalid("usage counts nothing: \"amount\" is for consume") }
            if idempotencyKey != nil { throw invalid("usage counts nothing: \"idempotencyKey\" is for consume") }
        default:
            break
        }
        if let type, let defaultValue, !Self.matches(defaultValue, type) {
            throw invalid("\"default\" is a \(defaultValue.typeName), which is not a \(type.rawValue)")
        }
        request.op = op
        request.id = id
        request.flag = flag
        request.flags = flags
        request.type = type
        request.defaultValue = defaultValue
        request.extras = extras
        request.feature = feature
        request.amount = amount ?? 1
        request.idempotencyKey = idempotencyKey
    }

    /// A `consume`'s `amount`: a whole number from 1 to `Request.maximumAmount`.
    static func amount(_ value: JSONValue, failing fail: (String) -> any Error) throws -> Int64 {
        let range = "from 1 to \(Request.maximumAmount)"
        switch value {
        case .int(let n):
            guard n >= 1 && n <= Request.maximumAmount else { throw fail("\"amount\" must be a whole number \(range), not \(n)") }
            return n
        case .double(let d):
            guard d.isFinite, d.rounded() == d else { throw fail("\"amount\" must be a whole number \(range), not \(d)") }
            guard d >= 1 && d <= Double(Request.maximumAmount) else { throw fail("\"amount\" must be a whole number \(range), not \(d)") }
            return Int64(d)
        default:
            throw fail("\"amount\" must be a whole number \(range), not \(value.typeName == "integer" ? "an" : "a") \(value.typeName)")
        }
    }

    /// An array of plain strings, written over `keys` (keeping the strings that are unchanged);
    /// `false`, with the position unchanged, for anything else.
    private func plainStringList(_ s: inout JSONScanner, into keys: inout [String]) -> Bool {
        let start = s.position
        guard s.maxDepth >= 2, !s.atEnd, s.current == UInt8(ascii: "[") else { return false }
        s.position += 1
        var count = 0
        s.skipWhitespace()
        if !s.atEnd && s.current == UInt8(ascii: "]") {
            s.position += 1
        } else {
            while true {
                s.skipWhitespace()
                guard let raw = s.plainString() else {
                    s.position = start
                    return false
                }
                if count < keys.count {
                    if !equals(keys[count], raw) { keys[count] = String(decoding: raw, as: UTF8.self) }
                } else {
                    keys.append(String(decoding: raw, as: UTF8.self))
                }
                count += 1
                s.skipWhitespace()
                if !s.atEnd && s.current == UInt8(ascii: ",") {
                    s.position += 1
                } else if !s.atEnd && s.current == UInt8(ascii: "]") {
                    s.position += 1
                    break
                } else {
                    s.position = start
                    return false
                }
            }
        }
        keys.removeLast(keys.count - count)
        return true
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

// MARK: - Matching bytes

/// `old` when it holds exactly these bytes, else a new string. (Comparing costs less than
/// building even a string short enough to be stored inline, and saves an allocation for
/// a longer one.)
func reusing(_ old: String?, for raw: UnsafeRawBufferPointer) -> String {
    if let old, equals(old, raw) { return old }
    return String(decoding: raw, as: UTF8.self)
}

func equals(_ raw: UnsafeRawBufferPointer, _ text: StaticString) -> Bool {
    raw.count == text.utf8CodeUnitCount && memcmp(raw.baseAddress!, text.utf8Start, raw.count) == 0
}

/// Whether `text` is exactly these bytes (compared in place for native strings).
func equals(_ text: String, _ raw: UnsafeRawBufferPointer) -> Bool {
    let utf8 = text.utf8
    guard utf8.count == raw.count else { return false }
    if let same = utf8.withContiguousStorageIfAvailable({ raw.count == 0 || memcmp($0.baseAddress!, raw.baseAddress!, raw.count) == 0 }) {
        return same
    }
    return utf8.elementsEqual(raw)
}

extension Request.Operation {
    init?(utf8 raw: UnsafeRawBufferPointer) {
        switch raw.count {
        case 4: if equals(raw, "eval") { self = .eval } else if equals(raw, "ping") { self = .ping } else if equals(raw, "list") { self = .list } else { return nil }
        case 5: if equals(raw, "watch") { self = .watch } else if equals(raw, "stats") { self = .stats } else if equals(raw, "usage") { self = .usage } else { return nil }
        case 6: if equals(raw, "status") { self = .status } else { return nil }
        case 7:
            if equals(raw, "evalAll") { self = .evalAll } else if equals(raw, "metrics") { self = .metrics } else if equals(raw, "tenants") { self = .tenants } else if equals(raw, "consume") { self = .consume } else { return nil }
        case 12: if equals(raw, "entitlements") { self = .entitlements } else { return nil }
        default: return nil
        }
    }
}

extension ValueType {
    init?(utf8 raw: UnsafeRawBufferPointer) {
        switch raw.count {
        case 5: if equals(raw, "float") { self = .float } else { return nil }
        case 6: if equals(raw, "string") { self = .string } else if equals(raw, "object") { self = .object } else { return nil }
        case 7: if equals(raw, "boolean") { self = .boolean } else if equals(raw, "integer") { self = .integer } else { return nil }
        default: return nil
        }
    }
}
