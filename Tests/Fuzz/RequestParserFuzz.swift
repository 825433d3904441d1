// libFuzzer target for the request parser (built by .ci/fuzz, not by SwiftPM).
//
// Differential: GuidonProtocol's in-place request parser must agree with GuidonJSON's
// general parser (strict, duplicate keys rejected, same depth limit) on what is valid JSON,
// and decode the same flag, id and context. It must never crash, whatever the bytes.
import GuidonEngine
import GuidonJSON
import GuidonProtocol

/// One request kept across inputs, as a connection keeps one across lines: decoding into it
/// (reusing what the inputs before left, and holding a flat context as text until it is read)
/// must give what decoding into a fresh one (which decodes the context at once) gives.
nonisolated(unsafe) private var kept = Request(op: .ping)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequestLine(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let parser = RequestParser()
    let reference = JSONParser(maxDepth: parser.maxDepth, duplicateKeys: .reject)
    // Twice: the second time the kept request's context text is the input's own. The first
    // time its context is left unread (as for a flag without targeting), so that the second
    // reads a context kept as text since the first.
    checkReuse(bytes, parser, readsContext: false)
    checkReuse(bytes, parser, readsContext: true)

    let referenceValue: JSONValue?
    do { referenceValue = try reference.parse(bytes) } catch { referenceValue = nil }

    // The admin socket's decoder takes any line without crashing, and refuses or decodes it.
    if let admin = try? AdminRequest.parse(Array(bytes)), admin.document == "flags" {
        _ = try? FlagRequests.operation(admin)
    }

    var request: Request
    do {
        request = try parser.parse(bytes)
    } catch {
        precondition(!error.message.isEmpty, "an error must say what is wrong")
        if error.code == .forbidden {
            precondition(object(referenceValue)?["op"]?.string?.contains(".") == true, "FORBIDDEN for an op that is not document.verb")
        }
        var out: [UInt8] = []
        ReplyEncoder.error(error, into: &out)
        precondition((try? reference.parse(Array(out.dropLast()))) != nil, "error replies are valid JSON")
        if case .object(let object)? = referenceValue {
            precondition(!isValidRequest(object), "refused a valid request: \(error.message)")
        }
        return 0
    }
    guard case .object(let object)? = referenceValue else {
        preconditionFailure("accepted a line the reference parser rejects")
    }
    precondition(object["op"] == .string(request.op.rawValue))
    precondition(request.flag.map(JSONValue.string) == object["flag"])
    precondition(request.id == object["id"])
    if case .object(let context)? = object["context"] {
        precondition(EvaluationContext(json: context) == request.context, "context decoded differently")
    }
    // Whatever was accepted can be answered, and the answer is one valid JSON line.
    var out: [UInt8] = []
    let result = EvaluationResult(flagKey: request.flag ?? "", value: nil, variant: nil, reason: .error,
                                  errorCode: .flagNotFound, errorMessage: "fuzz")
    ReplyEncoder.eval(id: request.id, result: result, default: request.defaultValue, into: &out)
    precondition(out.last == 0x0A && !out.dropLast().contains(0x0A))
    guard case .object(let reply)? = try? reference.parse(Array(out.dropLast())) else {
        preconditionFailure("reply is not a JSON object")
    }
    precondition(reply["id"] == request.id && reply["value"] == request.defaultValue)
    return 0
}

/// Protocol v1's rules for a request, stated independently of the parser (PROTOCOL.md §2), for
/// the operations whose members are the common ones. `entitlements`, `tenants`, `consume` and
/// `usage` have required members of their own (`tenant`, `feature`, amounts, paging: §3.10–3.13)
/// that these rules do not state, so a refusal of one of them is not taken as a wrong refusal
/// (what they accept is still checked against the reference parser above).
func isValidRequest(_ o: JSONObject) -> Bool {
    guard case .string(let opName)? = o["op"], let op = Request.Operation(rawValue: opName) else { return false }
    switch op {
    case .entitlements, .tenants, .consume, .usage: return false
    default: break
    }
    // The usage-limit members are typed and bounded whatever the op (§3.12); their rules are not
    // restated here either.
    if o["feature"] != nil || o["amount"] != nil || o["idempotencyKey"] != nil { return false }
    switch o["id"] {
    case .array?, .object?: return false
    default: break
    }
    if let flag = o["flag"], flag.string == nil { return false }
    if let flags = o["flags"] {
        guard case .array(let keys) = flags, keys.allSatisfy({ $0.string != nil }) else { return false }
    }
    if let context = o["context"], context.object == nil { return false }
    var type: ValueType?
    if let t = o["type"] {
        guard let name = t.string, let parsed = ValueType(rawValue: name) else { return false }
        type = parsed
    }
    if op == .eval && (o["flag"] == nil) == (o["flags"] == nil) { return false }
    if let type, let value = o["default"] {
        switch (type, value) {
        case (.boolean, .bool), (.string, .string), (.integer, .int), (.float, .int), (.float, .double),
            (.object, .object), (.object, .array): break
        default: return false
        }
    }
    return true
}

func checkReuse(_ bytes: UnsafeRawBufferPointer, _ parser: RequestParser, readsContext: Bool) {
    let fresh: Result<Request, RequestError> = Result { () throws(RequestError) in try parser.parse(bytes) }
    let again: Result<Request, RequestError> = Result { () throws(RequestError) in
        try parser.parse(bytes, into: &kept)
        // Decoded in the kept request itself (as a handler does for a targeted flag), so that
        // the next input's decode starts from this context.
        if readsContext { _ = kept.context }
        return kept
    }
    switch (fresh, again) {
    case (.failure(let a), .failure(let b)):
        precondition(a == b, "refused differently with a kept request: \(a) / \(b)")
    case (.success(var a), .success(var b)):
        precondition(a.op == b.op && a.id == b.id && a.flag == b.flag && a.flags == b.flags && a.type == b.type
            && a.defaultValue == b.defaultValue, "decoded differently with a kept request")
        if readsContext { precondition(a.context == b.context, "context decoded differently with a kept request") }
    default:
        preconditionFailure("accepted by one decoding and refused by the other")
    }
}

func object(_ value: JSONValue?) -> JSONObject? {
    if case .object(let object)? = value { return object }
    return nil
}
