public import GuidonEngine
public import GuidonJSON

/// Writes reply lines (compact JSON plus `\n`) straight into a byte buffer that the
/// caller reuses, so that encoding a reply allocates nothing once the buffer has grown.
public enum ReplyEncoder {
    // MARK: eval

    /// `{"id":…,"flag":…,"value":…,"variant":…,"reason":…,"errorCode":…,"errorMessage":…,"metadata":{…}}`.
    /// When the result carries no value the caller's `default` is served (or `value` is left out).
    public static func eval(id: JSONValue?, result: EncodedResult, default defaultValue: JSONValue?, into out: inout [UInt8]) {
        if id == nil {
            // The common reply, all of it pre-encoded text: gathered on the stack and appended
            // once. Seven `append(contentsOf:)` calls cost ~60 instructions each, more than the
            // copies themselves.
            let done = withUnsafeTemporaryAllocation(byteCount: Gather.capacity, alignment: 1) { buffer in
                var gather = Gather(buffer)
                guard gather.putElement(result, lead: "", key: nil, close: "}\n") else { return false }
                gather.flush(into: &out)
                return true
            }
            if done { return }
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
        gathering(into: &out) { gather, out in
            var first = true
            results { r in
                let lead: StaticString = first ? "" : ","
                first = false
                gather.element(r, lead: lead, key: nil, default: defaultValue, into: &out)
            }
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
        gathering(into: &out) { gather, out in
            var first = true
            results { r in
                let lead: StaticString = first ? "" : ","
                first = false
                gather.element(r, lead: lead, key: r.key, default: nil, into: &out)
            }
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

    /// Lends `body` a `Gather` over stack memory, and appends what is left in it to `out` after.
    private static func gathering(into out: inout [UInt8], _ body: (inout Gather, inout [UInt8]) -> Void) {
        withUnsafeTemporaryAllocation(byteCount: Gather.capacity, alignment: 1) { buffer in
            var gather = Gather(buffer)
            body(&gather, &out)
            gather.flush(into: &out)
        }
    }

    /// Pieces of reply text copied one after another into a small stack buffer, then appended to
    /// the reply in one `append(contentsOf:)`: a result's members are five to seven pieces, and
    /// each `append(contentsOf:)` costs more instructions (~60, uniqueness and capacity checks)
    /// than copying a piece does. A multi-flag reply fills the buffer with several results before
    /// appending it. A struct, not local functions: a captured variable is a heap box in a debug
    /// build, and the request path must not allocate.
    struct Gather {
        /// Stays within what `withUnsafeTemporaryAllocation` is sure to put on the stack.
        static let capacity = 1024
        private let start: UnsafeMutableRawPointer
        private var at: UnsafeMutableRawPointer
        private let end: UnsafeMutableRawPointer

        init(_ buffer: UnsafeMutableRawBufferPointer) {
            start = buffer.baseAddress!
            at = start
            end = start + buffer.count
        }

        /// Appends what has been gathered to `out`, and starts over.
        mutating func flush(into out: inout [UInt8]) {
            guard at != start else { return }
            out.append(contentsOf: UnsafeRawBufferPointer(start: start, count: start.distance(to: at)))
            at = start
        }

        /// `lead`, then `key:` when given, then `{` and the members of `r`, then `close`, when `r`
        /// is a served value without an error (the common result) and it fits in the room left;
        /// otherwise nothing, and `false`. Inlined, so that the constant pieces are copied as such.
        @inline(__always)
        mutating func putElement(_ r: EncodedResult, lead: StaticString, key: UnsafeRawBufferPointer?, close: StaticString) -> Bool {
            guard r.errorCode == nil, r.errorMessage == nil, let served = r.served else { return false }
            let reason = ReplyEncoder.reasonMember(r.reason)
            let metadataKey: StaticString = ",\"metadata\":"
            var total = lead.utf8CodeUnitCount + 1 + r.flag.count + served.count + reason.utf8CodeUnitCount
            total += metadataKey.utf8CodeUnitCount + r.metadata.count + close.utf8CodeUnitCount
            if let key { total += key.count + 1 }
            guard total <= at.distance(to: end) else { return false }
            put(lead)
            if let key {
                put(key)
                put(":")
            }
            put("{")
            put(r.flag)
            put(served)
            put(reason)
            put(metadataKey)
            put(r.metadata)
            put(close)
            return true
        }

        /// One element of a multi-flag reply (`lead` is `""` or `","`; `key:` for `evalAll`):
        /// gathered when it can be, flushing first when the room is short; written straight to
        /// `out` (after what was gathered) when it is not the common kind or too long for the buffer.
        mutating func element(
            _ r: EncodedResult, lead: StaticString, key: UnsafeRawBufferPointer?, default defaultValue: JSONValue?,
            into out: inout [UInt8]
        ) {
            if putElement(r, lead: lead, key: key, close: "}") { return }
            flush(into: &out)
            if putElement(r, lead: lead, key: key, close: "}") { return }
            ReplyEncoder.append(lead, to: &out)
            if let key {
                out.append(contentsOf: key)
                out.append(UInt8(ascii: ":"))
            }
            out.append(UInt8(ascii: "{"))
            ReplyEncoder.writeResult(r, default: defaultValue, into: &out)
            out.append(UInt8(ascii: "}"))
        }

        @inline(__always)
        private mutating func put(_ bytes: UnsafeRawBufferPointer) {
            guard let base = bytes.baseAddress else { return }
            at.copyMemory(from: base, byteCount: bytes.count)
            at += bytes.count
        }

        @inline(__always)
        private mutating func put(_ text: StaticString) {
            guard text.utf8CodeUnitCount > 0 else { return }
            at.copyMemory(from: text.utf8Start, byteCount: text.utf8CodeUnitCount)
            at += text.utf8CodeUnitCount
        }
    }

    @inline(__always)
    static func append(_ s: StaticString, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }
}
