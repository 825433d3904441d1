import GuidonJSON

/// One operation of the protocol: how its request is written and how its reply is read.
///
/// Everything else — ids, pipelining, timeouts, retries, connections — is the same for every
/// operation, so a new one (say the daemon's next `usage`) is one conforming type here and one
/// public method that sends it.
protocol GuidonOperation: Sendable {
    associatedtype Reply: Sendable
    /// Appends the request's members other than `id`, without the braces: `"op":"ping"`.
    func encodeMembers(into out: inout [UInt8])
    /// Reads a reply that is not an error reply (those never reach here).
    func decode(_ reply: JSONObject) throws(GuidonClientError) -> Reply
    /// Whether the request may be sent again, on another connection, when the first closed before
    /// its reply came: true for an operation that only reads. (An operation that changes state
    /// must say false: the daemon may have carried it out before the connection closed.)
    var isIdempotent: Bool { get }
}

extension GuidonOperation {
    var isIdempotent: Bool { true }
}

// MARK: - Requests

struct EvaluateOne: GuidonOperation {
    var flag: String
    var context: JSONObject
    var type: GuidonFlagType?
    var defaultValue: JSONValue?

    func encodeMembers(into out: inout [UInt8]) {
        out.appendLiteral(#""op":"eval","flag":"#)
        JSONWriter.writeString(flag, into: &out)
        encodeEvaluationMembers(context: context, type: type, default: defaultValue, into: &out)
    }

    func decode(_ reply: JSONObject) throws(GuidonClientError) -> GuidonEvaluation {
        try decodeEvaluation(reply, what: "the eval reply")
    }
}

struct EvaluateMany: GuidonOperation {
    var flags: [String]
    var context: JSONObject
    var type: GuidonFlagType?
    var defaultValue: JSONValue?

    func encodeMembers(into out: inout [UInt8]) {
        out.appendLiteral(#""op":"eval","flags":"#)
        JSONWriter.write(.array(flags.map { .string($0) }), into: &out)
        encodeEvaluationMembers(context: context, type: type, default: defaultValue, into: &out)
    }

    func decode(_ reply: JSONObject) throws(GuidonClientError) -> [GuidonEvaluation] {
        guard case .array(let items)? = reply["results"], items.count == flags.count else {
            throw .violation("the eval reply for \(flags.count) flags has no \"results\" array of as many results")
        }
        var results: [GuidonEvaluation] = []
        results.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard case .object(let object) = item else { throw .violation("results[\(i)] of an eval reply is not an object") }
            results.append(try decodeEvaluation(object, what: "results[\(i)] of an eval reply"))
        }
        return results
    }
}

struct EvaluateAll: GuidonOperation {
    var context: JSONObject

    func encodeMembers(into out: inout [UInt8]) {
        out.appendLiteral(#""op":"evalAll","context":"#)
        JSONWriter.write(.object(context), into: &out)
    }

    func decode(_ reply: JSONObject) throws(GuidonClientError) -> GuidonEvaluations {
        guard case .object(let members)? = reply["results"] else {
            throw .violation("the evalAll reply has no \"results\" object")
        }
        var results: [GuidonEvaluation] = []
        results.reserveCapacity(members.count)
        for (key, item) in members {
            guard case .object(let object) = item else { throw .violation("the evalAll result of \(key) is not an object") }
            results.append(try decodeEvaluation(object, what: "the evalAll result of \(key)"))
        }
        return GuidonEvaluations(results: results)
    }
}

struct Ping: GuidonOperation {
    func encodeMembers(into out: inout [UInt8]) {
        out.appendLiteral(#""op":"ping""#)
    }

    func decode(_ reply: JSONObject) throws(GuidonClientError) -> GuidonPing {
        let r = ReplyReader(reply, "the ping reply")
        return GuidonPing(configVersion: try r.string("configVersion"), flagCount: try r.int("flags"), reply: reply)
    }
}

struct Status: GuidonOperation {
    func encodeMembers(into out: inout [UInt8]) {
        out.appendLiteral(#""op":"status""#)
    }

    func decode(_ reply: JSONObject) throws(GuidonClientError) -> GuidonStatus {
        let r = ReplyReader(reply, "the status reply")
        var lastReload: GuidonStatus.Reload?
        if case .object(let reload)? = reply["lastReload"] {
            let l = ReplyReader(reload, "the status reply's lastReload")
            lastReload = GuidonStatus.Reload(
                ok: try l.bool("ok"), at: try l.string("at"), trigger: try l.string("trigger"),
                configVersion: try l.string("configVersion"), error: try l.optionalString("error"))
        }
        return GuidonStatus(
            version: try r.string("version"), configPath: try r.string("configPath"),
            configVersion: try r.string("configVersion"), flagCount: try r.int("flags"),
            loadedAt: try r.string("loadedAt"), uptimeSeconds: try r.int("uptimeSeconds"), mode: try r.string("mode"),
            warnings: try r.int("warnings"), connections: try r.int("connections"), lastReload: lastReload,
            reply: reply)
    }
}

struct List: GuidonOperation {
    func encodeMembers(into out: inout [UInt8]) {
        out.appendLiteral(#""op":"list""#)
    }

    func decode(_ reply: JSONObject) throws(GuidonClientError) -> GuidonFlagList {
        let r = ReplyReader(reply, "the list reply")
        let configVersion = try r.string("configVersion")
        guard case .array(let items)? = reply["flags"] else { throw .violation("the list reply has no \"flags\" array") }
        var flags: [GuidonFlagList.Flag] = []
        flags.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard case .object(let object) = item else { throw .violation("flags[\(i)] of the list reply is not an object") }
            let f = ReplyReader(object, "flags[\(i)] of the list reply")
            flags.append(GuidonFlagList.Flag(
                key: try f.string("key"), enabled: try f.string("state") == "ENABLED",
                variants: try f.strings("variants"), defaultVariant: try f.optionalString("defaultVariant"),
                hasTargeting: try f.bool("targeting"), metadata: f.object("metadata")))
        }
        return GuidonFlagList(configVersion: configVersion, flags: flags)
    }
}

struct Entitlements: GuidonOperation {
    var tenant: String

    func encodeMembers(into out: inout [UInt8]) {
        out.appendLiteral(#""op":"entitlements","tenant":"#)
        JSONWriter.writeString(tenant, into: &out)
    }

    func decode(_ reply: JSONObject) throws(GuidonClientError) -> GuidonTenantEntitlements {
        let r = ReplyReader(reply, "the entitlements reply")
        guard case .object(let members)? = reply["features"] else {
            throw .violation("the entitlements reply has no \"features\" object")
        }
        var features: [GuidonTenantEntitlements.Feature] = []
        features.reserveCapacity(members.count)
        for (key, item) in members {
            guard case .object(let object) = item else { throw .violation("the entitlements answer of \(key) is not an object") }
            let f = ReplyReader(object, "the entitlements answer of \(key)")
            var limits: [JSONValue]?
            if case .array(let items)? = object["limits"] { limits = items }
            features.append(GuidonTenantEntitlements.Feature(
                key: key, value: object["value"], variant: try f.optionalString("variant"),
                reason: GuidonEvaluation.Reason(rawValue: try f.string("reason")), entitled: try f.bool("entitled"),
                why: try f.string("why"), metadata: f.object("metadata"), limits: limits))
        }
        return GuidonTenantEntitlements(
            tenant: try r.string("tenant"), found: try r.bool("found"), plan: try r.optionalString("plan"),
            planName: try r.optionalString("planName"), status: try r.optionalString("status"),
            validUntil: try r.optionalString("validUntil"), planApplies: reply["planApplies"] == .bool(true),
            features: features, reply: reply)
    }
}

struct Tenants: GuidonOperation {
    var after: String?
    var limit: Int?
    var plan: String?
    var status: String?

    func encodeMembers(into out: inout [UInt8]) {
        out.appendLiteral(#""op":"tenants""#)
        if let after {
            out.appendLiteral(#","after":"#)
            JSONWriter.writeString(after, into: &out)
        }
        if let limit {
            out.appendLiteral(#","limit":"#)
            JSONWriter.writeInt(Int64(limit), into: &out)
        }
        if let plan {
            out.appendLiteral(#","plan":"#)
            JSONWriter.writeString(plan, into: &out)
        }
        if let status {
            out.appendLiteral(#","status":"#)
            JSONWriter.writeString(status, into: &out)
        }
    }

    func decode(_ reply: JSONObject) throws(GuidonClientError) -> GuidonTenantPage {
        let r = ReplyReader(reply, "the tenants reply")
        guard case .array(let items)? = reply["tenants"] else { throw .violation("the tenants reply has no \"tenants\" array") }
        var tenants: [GuidonTenantPage.Tenant] = []
        tenants.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard case .object(let object) = item else { throw .violation("tenants[\(i)] of the tenants reply is not an object") }
            let t = ReplyReader(object, "tenants[\(i)] of the tenants reply")
            tenants.append(GuidonTenantPage.Tenant(
                id: try t.string("id"), plan: try t.optionalString("plan"), status: try t.string("status"),
                validUntil: try t.optionalString("validUntil"), overrides: try t.int("overrides")))
        }
        return GuidonTenantPage(tenants: tenants, total: try r.int("total"), next: try r.optionalString("next"))
    }
}

/// The `watch` subscription; its events are read by `WatchSession`.
struct Watch: GuidonOperation {
    func encodeMembers(into out: inout [UInt8]) {
        out.appendLiteral(#""op":"watch""#)
    }

    /// The version served when the subscription started.
    func decode(_ reply: JSONObject) throws(GuidonClientError) -> String {
        let r = ReplyReader(reply, "the watch reply")
        guard try r.bool("watching") else { throw .violation("the watch reply does not say \"watching\":true") }
        return try r.string("configVersion")
    }

    /// A `configurationChanged` event, or `nil` for an event of a later protocol version.
    static func decodeEvent(_ event: JSONObject) throws(GuidonClientError) -> GuidonConfigurationChange? {
        guard event["event"] == .string("configurationChanged") else { return nil }
        let r = ReplyReader(event, "a configurationChanged event")
        return GuidonConfigurationChange(
            kind: .changed, configVersion: try r.string("configVersion"),
            added: try r.strings("added"), changed: try r.strings("changed"), removed: try r.strings("removed"))
    }
}

// MARK: - Shared pieces

private func encodeEvaluationMembers(
    context: JSONObject, type: GuidonFlagType?, default value: JSONValue?, into out: inout [UInt8]
) {
    out.appendLiteral(#","context":"#)
    JSONWriter.write(.object(context), into: &out)
    if let type {
        out.appendLiteral(#","type":"#)
        JSONWriter.writeString(type.rawValue, into: &out)
    }
    if let value {
        out.appendLiteral(#","default":"#)
        JSONWriter.write(value, into: &out)
    }
}

/// One evaluation result (PROTOCOL.md §3.1).
func decodeEvaluation(_ object: JSONObject, what: String) throws(GuidonClientError) -> GuidonEvaluation {
    let r = ReplyReader(object, what)
    return GuidonEvaluation(
        flag: try r.string("flag"),
        value: object["value"],
        variant: try r.optionalString("variant"),
        reason: GuidonEvaluation.Reason(rawValue: try r.string("reason")),
        errorCode: try r.optionalString("errorCode").map(GuidonEvaluation.ErrorCode.init(rawValue:)),
        errorMessage: try r.optionalString("errorMessage"),
        metadata: r.object("metadata"))
}

/// Typed member access that turns a missing or mistyped member into a `protocolViolation`
/// saying which member of which reply.
struct ReplyReader {
    let object: JSONObject
    let what: String

    init(_ object: JSONObject, _ what: String) {
        self.object = object
        self.what = what
    }

    private func wrong(_ key: String, _ expected: String) -> GuidonClientError {
        let found = object[key].map { "a \($0.typeName)" } ?? "nothing"
        return .violation("\(what): \"\(key)\" should be \(expected), found \(found)")
    }

    func string(_ key: String) throws(GuidonClientError) -> String {
        guard case .string(let s)? = object[key] else { throw wrong(key, "a string") }
        return s
    }

    func optionalString(_ key: String) throws(GuidonClientError) -> String? {
        switch object[key] {
        case nil, .null?: return nil
        case .string(let s)?: return s
        default: throw wrong(key, "a string")
        }
    }

    func int(_ key: String) throws(GuidonClientError) -> Int {
        guard case .int(let n)? = object[key], let value = Int(exactly: n) else { throw wrong(key, "an integer") }
        return value
    }

    func bool(_ key: String) throws(GuidonClientError) -> Bool {
        guard case .bool(let b)? = object[key] else { throw wrong(key, "a boolean") }
        return b
    }

    func strings(_ key: String) throws(GuidonClientError) -> [String] {
        guard case .array(let items)? = object[key] else { throw wrong(key, "an array of strings") }
        var strings: [String] = []
        strings.reserveCapacity(items.count)
        for item in items {
            guard case .string(let s) = item else { throw wrong(key, "an array of strings") }
            strings.append(s)
        }
        return strings
    }

    /// An object member, `[:]` when absent (metadata is always sent, but costs nothing to forgive).
    func object(_ key: String) -> JSONObject {
        if case .object(let o)? = object[key] { return o }
        return [:]
    }
}

extension GuidonClientError {
    static func violation(_ message: String) -> GuidonClientError {
        GuidonClientError(.protocolViolation, message)
    }
}

extension [UInt8] {
    @inline(__always)
    mutating func appendLiteral(_ text: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }
}

// MARK: - Usage limits

struct Consume: GuidonOperation {
    var feature: String
    var context: JSONObject
    var amount: Int64
    var idempotencyKey: String?

    /// Counting is not repeated on another connection: the daemon may have counted it already
    /// (an idempotency key makes a repeat by the caller safe).
    var isIdempotent: Bool { false }

    func encodeMembers(into out: inout [UInt8]) {
        out.appendLiteral(#""op":"consume","feature":"#)
        JSONWriter.writeString(feature, into: &out)
        if amount != 1 {
            out.appendLiteral(#","amount":"#)
            JSONWriter.writeInt(amount, into: &out)
        }
        if let idempotencyKey {
            out.appendLiteral(#","idempotencyKey":"#)
            JSONWriter.writeString(idempotencyKey, into: &out)
        }
        out.appendLiteral(#","context":"#)
        JSONWriter.write(.object(context), into: &out)
    }

    func decode(_ reply: JSONObject) throws(GuidonClientError) -> GuidonConsumption {
        let r = ReplyReader(reply, "the consume reply")
        return GuidonConsumption(
            allowed: try r.bool("allowed"), reason: try r.optionalString("reason"), used: r.optionalInt("used"),
            limit: r.optionalInt("limit"), remaining: r.optionalInt("remaining"), resetAt: try r.optionalString("resetAt"),
            window: try r.optionalString("window"), mode: try r.optionalString("mode"), degraded: try r.bool("degraded"),
            replayed: reply["replayed"] == .bool(true), reply: reply)
    }
}

struct Usage: GuidonOperation {
    var feature: String?
    var context: JSONObject

    func encodeMembers(into out: inout [UInt8]) {
        out.appendLiteral(#""op":"usage""#)
        if let feature {
            out.appendLiteral(#","feature":"#)
            JSONWriter.writeString(feature, into: &out)
        }
        out.appendLiteral(#","context":"#)
        JSONWriter.write(.object(context), into: &out)
    }

    func decode(_ reply: JSONObject) throws(GuidonClientError) -> [GuidonUsage] {
        func one(_ object: JSONObject, _ what: String) throws(GuidonClientError) -> GuidonUsage {
            let r = ReplyReader(object, what)
            return GuidonUsage(
                feature: try r.string("feature"), entitled: try r.bool("entitled"), used: r.optionalInt("used"),
                limit: r.optionalInt("limit"), remaining: r.optionalInt("remaining"), resetAt: try r.optionalString("resetAt"),
                window: try r.optionalString("window"), degraded: try r.bool("degraded"), reply: object)
        }
        if feature != nil { return [try one(reply, "the usage reply")] }
        guard case .array(let items)? = reply["features"] else { throw .violation("the usage reply has no \"features\" array") }
        var result: [GuidonUsage] = []
        for (i, item) in items.enumerated() {
            guard case .object(let object) = item else { throw .violation("features[\(i)] of a usage reply is not an object") }
            result.append(try one(object, "features[\(i)] of a usage reply"))
        }
        return result
    }
}

extension ReplyReader {
    /// An integer, or nil when absent or null (or not an integer).
    func optionalInt(_ key: String) -> Int64? {
        if case .int(let n)? = object[key] { return n }
        return nil
    }
}
