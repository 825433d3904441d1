public import GuidonEditing
public import GuidonEngine
public import GuidonJSON

/// One request line of the admin protocol: `{"op":"flags.rollout","flag":…,"ifRevision":…}`.
///
/// Admin operations are named `document.verb`: `flags.rollout` edits the flag file, and the
/// documents to come (entitlements) get namespaces of their own, so the query socket can refuse
/// every admin operation, present and future, by the dot in its name alone. Admin traffic is rare:
/// a request is parsed into a plain `JSONObject`, with none of the query path's tricks.
public struct AdminRequest: Sendable {
    /// The whole `op`: `flags.rollout`.
    public var op: String
    /// The document it is about: `flags`.
    public var document: String
    /// What to do to it: `rollout`.
    public var verb: String
    public var id: JSONValue?
    /// The revision the change was based on (16 hex digits); required for writes unless `force`.
    public var ifRevision: String?
    /// Write without checking the revision (the audit record says so).
    public var force: Bool
    /// Compute and validate the change, and answer with its diff, but write nothing.
    public var dryRun: Bool
    /// Who asks, and why: recorded in the audit log (and in the flag's `updatedBy` and `notes`).
    public var by: String?
    public var reason: String?
    /// Every member of the request, for the operation's own arguments.
    public var members: JSONObject

    /// Whether `op` names an admin operation (`document.verb`).
    public static func isAdminOp(_ op: String) -> Bool {
        op.utf8.contains(UInt8(ascii: "."))
    }

    /// Decodes one line; every problem is an `INVALID_REQUEST` (or `UNKNOWN_OP`) that says what and where.
    public static func parse(_ line: [UInt8]) throws(RequestError) -> AdminRequest {
        let value: JSONValue
        do {
            value = try JSONParser(maxDepth: 64, duplicateKeys: .reject).parse(line)
        } catch {
            throw RequestError(code: .invalidRequest, message: "column \(error.column): \(error.reason)")
        }
        guard case .object(let members) = value else {
            throw RequestError(code: .invalidRequest, message: "a request must be a JSON object, not \(value.typeName == "array" ? "an" : "a") \(value.typeName)")
        }
        var id: JSONValue?
        if let given = members["id"] {
            switch given {
            case .array, .object: throw RequestError(code: .invalidRequest, message: "\"id\" must be a string, number, boolean or null")
            default: id = given
            }
        }
        func fail(_ message: String) -> RequestError { RequestError(code: .invalidRequest, message: message, id: id) }
        guard let opValue = members["op"] else { throw fail("missing \"op\"") }
        guard case .string(let op) = opValue else { throw fail("\"op\" must be a string") }
        var request = AdminRequest(op: op, document: "", verb: op, id: id, ifRevision: nil, force: false, dryRun: false, members: members)
        if let dot = op.firstIndex(of: ".") {
            request.document = String(op[..<dot])
            request.verb = String(op[op.index(after: dot)...])
        }
        if let revision = members["ifRevision"], revision != .null {
            guard case .string(let text) = revision, Revision.isWellFormed(text) else {
                throw fail("\"ifRevision\" must be a revision: 16 hexadecimal digits, as ping, status and flags.get report it")
            }
            request.ifRevision = text
        }
        request.force = try flag(members, "force", id: id)
        request.dryRun = try flag(members, "dryRun", id: id)
        request.by = try string(members, "by", id: id)
        request.reason = try string(members, "reason", id: id)
        return request
    }

    private static func flag(_ members: JSONObject, _ name: String, id: JSONValue?) throws(RequestError) -> Bool {
        switch members[name] {
        case nil, .null?: return false
        case .bool(let value)?: return value
        default: throw RequestError(code: .invalidRequest, message: "\"\(name)\" must be true or false", id: id)
        }
    }

    private static func string(_ members: JSONObject, _ name: String, id: JSONValue?) throws(RequestError) -> String? {
        switch members[name] {
        case nil, .null?: return nil
        case .string(let value)?: return value
        default: throw RequestError(code: .invalidRequest, message: "\"\(name)\" must be a string", id: id)
        }
    }

    // MARK: Arguments

    func fail(_ message: String) -> RequestError { RequestError(code: .invalidRequest, message: message, id: id) }

    /// A required string argument.
    public func string(_ name: String) throws(RequestError) -> String {
        guard let value = members[name] else { throw fail("\(op) needs \"\(name)\"") }
        guard case .string(let text) = value else { throw fail("\"\(name)\" must be a string, not \(value.typeName)") }
        return text
    }

    /// An optional string argument.
    public func optionalString(_ name: String) throws(RequestError) -> String? {
        switch members[name] {
        case nil, .null?: return nil
        case .string(let text)?: return text
        case let other?: throw fail("\"\(name)\" must be a string, not \(other.typeName)")
        }
    }

    /// An optional boolean argument (false when absent).
    public func bool(_ name: String) throws(RequestError) -> Bool {
        switch members[name] {
        case nil, .null?: return false
        case .bool(let value)?: return value
        case let other?: throw fail("\"\(name)\" must be true or false, not \(other.typeName)")
        }
    }

    /// A required number argument.
    public func number(_ name: String) throws(RequestError) -> Double {
        guard let value = members[name] else { throw fail("\(op) needs \"\(name)\"") }
        guard let number = value.number else { throw fail("\"\(name)\" must be a number, not \(value.typeName) \(value)") }
        return number
    }

    /// An optional instant argument: an RFC 3339 / ISO 8601 date-time string.
    public func instant(_ name: String) throws(RequestError) -> Int64? {
        guard let text = try optionalString(name) else { return nil }
        guard let instant = Instant.parse(text) else {
            throw fail("\"\(name)\" is not a date-time: \(JSONValue.string(text)) (write it as 2026-11-27T09:00:00Z or 2026-11-27T10:00:00+01:00)")
        }
        return instant
    }
}

/// Revisions: what identifies a document's content (a 64-bit digest of the file's bytes, XXH64,
/// as 16 hex digits; the query protocol's `configVersion`).
public enum Revision {
    public static func of(_ bytes: [UInt8]) -> String {
        let hash = bytes.withUnsafeBytes { ContentDigest.xxh64($0) }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    public static func isWellFormed(_ text: String) -> Bool {
        text.utf8.count == 16 && text.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
    }
}

/// The `flags.*` operations: requests to `FlagOperation`s, and replies.
public enum FlagRequests {
    /// The verbs that only read (answered without `ifRevision`).
    public static let readVerbs: Set<String> = ["get", "history"]
    /// The verbs that write.
    public static let writeVerbs: [String] = [
        "create", "delete", "enable", "disable", "setDefault", "rollout", "target", "untarget", "split", "schedule",
        "replace", "setMetadata", "removeMetadata",
    ]

    /// The flag operation a write request asks for.
    public static func operation(_ request: AdminRequest) throws(RequestError) -> FlagOperation {
        let flag = try request.string("flag")
        let action: FlagOperation.Action
        switch request.verb {
        case "create": action = .create(definition: try definition(request))
        case "delete": action = .delete
        case "enable": action = .setState(enabled: true)
        case "disable": action = .setState(enabled: false)
        case "setDefault": action = .setDefault(variant: try request.string("variant"))
        case "rollout":
            action = .rollout(percentage: try request.number("percentage"), variant: try request.optionalString("variant"),
                              otherVariant: try request.optionalString("otherVariant"))
        case "target":
            action = .target(try subjects(request), variant: try request.optionalString("variant"), deny: try request.bool("deny"))
        case "untarget":
            action = .untarget(try subjects(request), variant: try request.optionalString("variant"))
        case "split":
            guard case .object(let weights)? = request.members["weights"] else {
                throw request.fail("flags.split needs \"weights\": an object of variant → integer weight, e.g. {\"a\": 50, \"b\": 50}")
            }
            var split: [SplitWeight] = []
            for (variant, weight) in weights {
                guard case .int(let value) = weight else {
                    throw request.fail("the weight of \(JSONValue.string(variant)) must be an integer, not \(weight)")
                }
                split.append(SplitWeight(variant: variant, weight: value))
            }
            action = .split(split)
        case "schedule":
            if try request.bool("clear") {
                action = .clearSchedule
            } else {
                action = .schedule(variant: try request.optionalString("variant"), start: try request.instant("start"), end: try request.instant("end"))
            }
        case "replace": action = .replace(definition: try definition(request))
        case "setMetadata":
            guard let value = request.members["value"] else { throw request.fail("flags.setMetadata needs \"value\"") }
            action = .setMetadata(name: try request.string("name"), value: value)
        case "removeMetadata": action = .removeMetadata(name: try request.string("name"))
        default:
            throw RequestError(
                code: .unknownOp,
                message: "unknown op \"\(request.op)\"; the flags operations are \((readVerbs.sorted() + writeVerbs).map { "flags." + $0 }.joined(separator: ", "))",
                id: request.id)
        }
        return FlagOperation(flag: flag, action: action, by: request.by, reason: request.reason)
    }

    private static func definition(_ request: AdminRequest) throws(RequestError) -> JSONValue {
        guard let value = request.members["definition"] else { throw request.fail("\(request.op) needs \"definition\": the flag as an object") }
        return value
    }

    /// `users`, `domains` (of `attribute`, default `email`) or `attribute` and `values`: one of them.
    private static func subjects(_ request: AdminRequest) throws(RequestError) -> Subjects {
        func strings(_ name: String) throws(RequestError) -> [String]? {
            guard let value = request.members[name] else { return nil }
            guard case .array(let items) = value, let texts = Optional(items.compactMap(\.string)), texts.count == items.count else {
                throw request.fail("\"\(name)\" must be an array of strings")
            }
            return texts
        }
        let users = try strings("users")
        let domains = try strings("domains")
        let values = request.members["values"]
        guard [users != nil, domains != nil, values != nil].filter({ $0 }).count == 1 else {
            throw request.fail("\(request.op) needs exactly one of \"users\", \"domains\", or \"attribute\" with \"values\"")
        }
        if let users { return .users(users) }
        if let domains { return .domains(domains, attribute: try request.optionalString("attribute") ?? "email") }
        guard case .array(let items)? = values else { throw request.fail("\"values\" must be an array of strings or numbers") }
        return Subjects(attribute: try request.string("attribute"), values: items)
    }

    /// The wire code of an edit's refusal, with its details.
    public static func error(_ error: EditError, id: JSONValue?) -> RequestError {
        let code: ProtocolErrorCode
        switch error.code {
        case .noSuchFlag, .notFound: code = .notFound
        case .flagExists, .alreadyExists: code = .alreadyExists
        case .invalidDocument: code = .invalidDocument
        case .unsupportedTargeting: code = .unsupportedTargeting
        default: code = .invalidArgument
        }
        var details = JSONObject()
        if let report = error.report { details["report"] = reportJSON(report) }
        return RequestError(code: code, message: error.message, id: id, details: details)
    }

    /// A validation report as the wire carries it: `{"errors":[…],"warnings":[…]}`.
    public static func reportJSON(_ report: ValidationReport) -> JSONValue {
        func diagnostics(_ list: [Diagnostic]) -> JSONValue {
            .array(list.map { d in
                var o: JSONObject = ["path": .string(d.path)]
                if let line = d.line { o["line"] = .int(Int64(line)) }
                if let column = d.column { o["column"] = .int(Int64(column)) }
                o["message"] = .string(d.message)
                return .object(o)
            })
        }
        return ["errors": diagnostics(report.errors), "warnings": diagnostics(report.warnings)]
    }
}

