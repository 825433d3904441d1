public import GuidonEngine
public import GuidonJSON

/// Writes reply lines (compact JSON plus `\n`) straight into a byte buffer that the
/// caller reuses, so that encoding a reply allocates nothing once the buffer has grown.
public enum ReplyEncoder {
    // MARK: eval

    /// `{"id":…,"flag":…,"value":…,"variant":…,"reason":…,"errorCode":…,"errorMessage":…,"metadata":{…}}`.
    /// When the result carries no value the caller's `default` is served (or `value` is left out).
    public static func eval(id: JSONValue?, result: EncodedResult, default defaultValue: JSONValue?, into out: inout [UInt8]) {
        if id == nil, result.errorCode == nil, result.errorMessage == nil, let served = result.served {
            // The common reply, all of it pre-encoded text: gathered on the stack and appended
            // once. Seven `append(contentsOf:)` calls cost ~60 instructions each, more than the
            // copies themselves.
            let reason = reasonMember(result.reason)
            let metadataKey: StaticString = ",\"metadata\":"
            let total = 1 + result.flag.count + served.count + reason.utf8CodeUnitCount + metadataKey.utf8CodeUnitCount + result.metadata.count + 2
            if total <= 1024 {
                withUnsafeTemporaryAllocation(byteCount: 1024, alignment: 1) { buffer in
                    // A struct, not local functions: a captured variable is a heap box in a debug build.
                    var at = Gather(buffer.baseAddress!)
                    at.put("{")
                    at.put(result.flag)
                    at.put(served)
                    at.put(reason)
                    at.put(metadataKey)
                    at.put(result.metadata)
                    at.put("}\n")
                    out.append(contentsOf: UnsafeRawBufferPointer(start: buffer.baseAddress, count: total))
                }
                return
            }
        }
        out.append(UInt8(ascii: "{"))
        writeID(id, into: &out)
        writeResult(result, default: defaultValue, into: &out)
        append("}\n", to: &out)
    }

    public static func eval(id: JSONValue?, result: EvaluationResult, default defaultValue: JSONValue?, into out: inout [UInt8]) {
        result.withEncoded { eval(id: id, result: $0, default: defaultValue, into: &out) }
    }

    /// `{"id":…,"results":[{…},…]}` for a multi-flag `eval`: `results` lends its argument each
    /// result, in the order asked (as `Snapshot.forEachResult(_:context:type:now:_:)` does).
    public static func evalMany(
        id: JSONValue?, default defaultValue: JSONValue?, into out: inout [UInt8],
        results: (_ each: (EncodedResult) -> Void) -> Void
    ) {
        out.append(UInt8(ascii: "{"))
        writeID(id, into: &out)
        append("\"results\":[", to: &out)
        var first = true
        results { r in
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            out.append(UInt8(ascii: "{"))
            writeResult(r, default: defaultValue, into: &out)
            out.append(UInt8(ascii: "}"))
        }
        append("]}\n", to: &out)
    }

    public static func evalMany(id: JSONValue?, results: [EvaluationResult], default defaultValue: JSONValue?, into out: inout [UInt8]) {
        evalMany(id: id, default: defaultValue, into: &out) { each in
            for r in results { r.withEncoded(each) }
        }
    }

    /// `{"id":…,"results":{"KEY":{…},…}}` for `evalAll`: `results` lends its argument each
    /// result (as `Snapshot.forEachResult(context:now:_:)` does).
    public static func evalAll(id: JSONValue?, into out: inout [UInt8], results: (_ each: (EncodedResult) -> Void) -> Void) {
        out.append(UInt8(ascii: "{"))
        writeID(id, into: &out)
        append("\"results\":{", to: &out)
        var first = true
        results { r in
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            out.append(contentsOf: r.key)
            append(":{", to: &out)
            writeResult(r, default: nil, into: &out)
            out.append(UInt8(ascii: "}"))
        }
        append("}}\n", to: &out)
    }

    public static func evalAll(id: JSONValue?, results: [EvaluationResult], into out: inout [UInt8]) {
        evalAll(id: id, into: &out) { each in
            for r in results { r.withEncoded(each) }
        }
    }

    /// The members of one evaluation result (without braces).
    static func writeResult(_ r: EncodedResult, default defaultValue: JSONValue?, into out: inout [UInt8]) {
        out.append(contentsOf: r.flag)
        if let served = r.served {
            out.append(contentsOf: served)
        } else if let defaultValue {
            append(",\"value\":", to: &out)
            JSONWriter.write(defaultValue, into: &out)
        }
        append(reasonMember(r.reason), to: &out)
        if let code = r.errorCode {
            append(",\"errorCode\":", to: &out)
            JSONWriter.writeString(code.rawValue, into: &out)
        }
        if let message = r.errorMessage {
            append(",\"errorMessage\":", to: &out)
            JSONWriter.writeString(message, into: &out)
        }
        append(",\"metadata\":", to: &out)
        out.append(contentsOf: r.metadata)
    }

    /// `,"reason":"…"` as one piece of text.
    static func reasonMember(_ reason: Reason) -> StaticString {
        switch reason {
        case .static: ",\"reason\":\"STATIC\""
        case .targetingMatch: ",\"reason\":\"TARGETING_MATCH\""
        case .default: ",\"reason\":\"DEFAULT\""
        case .disabled: ",\"reason\":\"DISABLED\""
        case .error: ",\"reason\":\"ERROR\""
        }
    }

    // MARK: errors and ping

    /// `{"id":…,"error":{"code":…,"message":…}}`.
    public static func error(_ error: RequestError, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        writeID(error.id, into: &out)
        append("\"error\":{\"code\":", to: &out)
        JSONWriter.writeString(error.code.rawValue, into: &out)
        append(",\"message\":", to: &out)
        JSONWriter.writeString(error.message, into: &out)
        for (key, value) in error.details where key != "code" && key != "message" {
            out.append(UInt8(ascii: ","))
            JSONWriter.writeString(key, into: &out)
            out.append(UInt8(ascii: ":"))
            JSONWriter.write(value, into: &out)
        }
        append("}}\n", to: &out)
    }

    /// `{"id":…,"ok":true,"configVersion":…,"revision":…,"flags":N}`: the revision is the
    /// configuration version (a digest of the file's bytes), under the name the admin protocol uses.
    public static func ping(
        id: JSONValue?, configVersion: String, flagCount: Int,
        entitlements: (version: String, features: Int, plans: Int, tenants: Int)? = nil, into out: inout [UInt8]
    ) {
        out.append(UInt8(ascii: "{"))
        writeID(id, into: &out)
        append("\"ok\":true,\"configVersion\":", to: &out)
        JSONWriter.writeString(configVersion, into: &out)
        append(",\"revision\":", to: &out)
        JSONWriter.writeString(configVersion, into: &out)
        append(",\"flags\":", to: &out)
        JSONWriter.writeInt(Int64(flagCount), into: &out)
        if let entitlements {
            append(",\"entitlementsVersion\":", to: &out)
            JSONWriter.writeString(entitlements.version, into: &out)
            append(",\"features\":", to: &out)
            JSONWriter.writeInt(Int64(entitlements.features), into: &out)
            append(",\"plans\":", to: &out)
            JSONWriter.writeInt(Int64(entitlements.plans), into: &out)
            append(",\"tenants\":", to: &out)
            JSONWriter.writeInt(Int64(entitlements.tenants), into: &out)
        }
        append("}\n", to: &out)
    }

    /// A reply whose members `body` writes (without braces), after `id` when given.
    public static func members(id: JSONValue?, into out: inout [UInt8], _ body: (inout [UInt8]) -> Void) {
        out.append(UInt8(ascii: "{"))
        writeID(id, into: &out)
        body(&out)
        append("}\n", to: &out)
    }

    /// Any other reply: `id` (when given) followed by the members of `body`.
    public static func reply(id: JSONValue?, _ body: JSONObject, into out: inout [UInt8]) {
        var object = JSONObject()
        if let id { object["id"] = id }
        for (key, value) in body where key != "id" { object[key] = value }
        line(.object(object), into: &out)
    }

    /// A value as one line.
    public static func line(_ value: JSONValue, into out: inout [UInt8]) {
        JSONWriter.write(value, into: &out)
        out.append(UInt8(ascii: "\n"))
    }

    // MARK: helpers

    static func writeID(_ id: JSONValue?, into out: inout [UInt8]) {
        guard let id else { return }
        append("\"id\":", to: &out)
        JSONWriter.write(id, into: &out)
        out.append(UInt8(ascii: ","))
    }

    /// Copies pieces of text one after another into memory the caller sized.
    private struct Gather {
        var at: UnsafeMutableRawPointer

        init(_ at: UnsafeMutableRawPointer) { self.at = at }

        @inline(__always)
        mutating func put(_ bytes: UnsafeRawBufferPointer) {
            guard let base = bytes.baseAddress else { return }
            at.copyMemory(from: base, byteCount: bytes.count)
            at += bytes.count
        }

        @inline(__always)
        mutating func put(_ text: StaticString) {
            at.copyMemory(from: text.utf8Start, byteCount: text.utf8CodeUnitCount)
            at += text.utf8CodeUnitCount
        }
    }

    @inline(__always)
    static func append(_ s: StaticString, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }
}
