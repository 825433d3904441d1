public import GuidonEditing
import GuidonJSON

/// The `entitlements.*` operations of the admin protocol: requests to `EntitlementsOperation`s.
public enum EntitlementsRequests {
    /// The verbs that only read (answered without `ifRevision`).
    public static let readVerbs: Set<String> = ["get", "history"]
    /// The verbs that write.
    public static let writeVerbs: [String] = [
        "setPlan", "setStatus", "enable", "disable", "clear", "bulk", "deleteTenant", "createPlan", "updatePlan", "grant", "revoke",
        "addFeature", "removeFeature", "setTimezone",
    ]

    /// The entry a `get` names (`tenant`, `plan` or `feature`; at most one), or `nil` for the document.
    public static func entry(_ request: AdminRequest) throws(RequestError) -> EntitlementsEditor.Entry? {
        let tenant = try tenantID(request, "tenant", required: false)
        let plan = try request.optionalString("plan")
        let feature = try request.optionalString("feature")
        guard [tenant, plan, feature].compactMap({ $0 }).count <= 1 else {
            throw request.fail("\(request.op) takes at most one of \"tenant\", \"plan\" and \"feature\"")
        }
        if let tenant { return .tenant(tenant) }
        if let plan { return .plan(plan) }
        if let feature { return .feature(feature) }
        return nil
    }

    /// What the audit log's records of a request are about, for `history` filters: `tenant 5`,
    /// `plan growth`, `feature voice_ai`.
    public static func subject(_ request: AdminRequest) -> String? {
        if let tenant = try? tenantID(request, "tenant", required: false) { return "tenant \(tenant)" }
        if let plan = request.members["plan"]?.string { return "plan \(plan)" }
        if let feature = request.members["feature"]?.string { return "feature \(feature)" }
        return nil
    }

    /// The operation a write request asks for, made at `now` (Unix seconds: an override's `at`
    /// unless the request gives one).
    public static func operation(_ request: AdminRequest, now: Int64) throws(RequestError) -> EntitlementsOperation {
        let action: EntitlementsOperation.Action
        switch request.verb {
        case "setPlan":
            action = .setPlan(tenant: try tenantID(request), plan: try request.string("plan"), status: try request.optionalString("status"))
        case "setStatus":
            let validUntil: EntitlementsOperation.ValidUntil
            switch request.members["validUntil"] {
            case nil: validUntil = .keep
            case .null?: validUntil = .clear
            default: validUntil = .set(try request.instant("validUntil")!)
            }
            action = .setStatus(tenant: try tenantID(request), status: try request.string("status"), validUntil: validUntil)
        case "enable", "disable":
            action = .setOverride(
                tenant: try tenantID(request), feature: try request.string("feature"),
                try override(request.members, enabled: request.verb == "enable", request))
        case "clear":
            action = .clearOverride(tenant: try tenantID(request), feature: try request.string("feature"))
        case "bulk":
            guard case .array(let items)? = request.members["changes"], !items.isEmpty else {
                throw request.fail(
                    "entitlements.bulk needs \"changes\": a non-empty array of {\"tenant\", \"feature\", \"enabled\": true|false} or {\"tenant\", \"feature\", \"clear\": true}")
            }
            var changes: [EntitlementsOperation.TenantChange] = []
            for (i, item) in items.enumerated() {
                guard case .object(let members) = item else { throw request.fail("changes[\(i)] must be an object, not \(item.typeName)") }
                let tenant: String
                switch members["tenant"] {
                case .string(let id)?: tenant = id
                case .int(let n)?: tenant = String(n)
                default: throw request.fail("changes[\(i)] needs \"tenant\": a string (or an integer)")
                }
                guard case .string(let feature)? = members["feature"] else { throw request.fail("changes[\(i)] needs \"feature\": a string") }
                switch (members["enabled"], members["clear"]) {
                case (.bool(let enabled)?, nil), (.bool(let enabled)?, .bool(false)?):
                    let change = try override(members, enabled: enabled, request, at: "changes[\(i)].")
                    changes.append(.init(tenant: tenant, feature: feature, override: change))
                case (nil, .bool(true)?):
                    changes.append(.init(tenant: tenant, feature: feature, override: nil))
                default:
                    throw request.fail("changes[\(i)] needs either \"enabled\": true or false, or \"clear\": true")
                }
            }
            action = .bulk(changes)
        case "deleteTenant":
            action = .deleteTenant(try tenantID(request))
        case "createPlan":
            action = .createPlan(name: try request.string("plan"), definition: try object(request, "definition", required: false) ?? JSONObject())
        case "updatePlan":
            action = .updatePlan(name: try request.string("plan"), changes: try planChanges(request))
        case "setTimezone":
            action = .setTimezone(try request.string("timezone"))
        case "grant":
            let grant = request.members["grant"] ?? true
            action = .grant(plan: try request.string("plan"), feature: try request.string("feature"), grant: grant)
        case "revoke":
            action = .revoke(plan: try request.string("plan"), feature: try request.string("feature"))
        case "addFeature":
            action = .addFeature(key: try request.string("feature"), definition: try object(request, "definition", required: true)!)
        case "removeFeature":
            action = .removeFeature(key: try request.string("feature"), cascade: try request.bool("cascade"))
        default:
            throw RequestError(
                code: .unknownOp,
                message: "unknown op \"\(request.op)\"; the entitlements operations are \((readVerbs.sorted() + writeVerbs).map { "entitlements." + $0 }.joined(separator: ", "))",
                id: request.id)
        }
        return EntitlementsOperation(action, by: request.by, reason: request.reason, now: now)
    }

    /// A tenant id: a string, or an integer (its digits), as `tenantId` in a context.
    static func tenantID(_ request: AdminRequest, _ name: String = "tenant", required: Bool = true) throws(RequestError) -> String? {
        switch request.members[name] {
        case nil, .null?:
            if required { throw request.fail("\(request.op) needs \"\(name)\": the tenant's id") }
            return nil
        case .string(let id)?: return id
        case .int(let n)?: return String(n)
        case let other?: throw request.fail("\"\(name)\" must be a string (or an integer), not \(other.typeName)")
        }
    }

    static func tenantID(_ request: AdminRequest) throws(RequestError) -> String {
        try tenantID(request, "tenant", required: true)!
    }

    private static func object(_ request: AdminRequest, _ name: String, required: Bool) throws(RequestError) -> JSONObject? {
        switch request.members[name] {
        case nil, .null?:
            if required { throw request.fail("\(request.op) needs \"\(name)\": an object") }
            return nil
        case .object(let object)?: return object
        case let other?: throw request.fail("\"\(name)\" must be an object, not \(other.typeName)")
        }
    }

    /// `changes` of `updatePlan`: `displayName`, `order`, `inherits`, `description`, each a value
    /// to set or `null` to remove it.
    private static func planChanges(_ request: AdminRequest) throws(RequestError) -> PlanChanges {
        guard let changes = try object(request, "changes", required: true) else { return PlanChanges() }
        func string(_ name: String) throws(RequestError) -> PlanChanges.Change<String> {
            switch changes[name] {
            case nil: return .keep
            case .null?: return .remove
            case .string(let text)?: return .set(text)
            case let other?: throw request.fail("\"changes.\(name)\" must be a string (or null to remove it), not \(other.typeName)")
            }
        }
        for key in changes.keys where !["displayName", "order", "inherits", "description"].contains(key) {
            if key == "grants" {
                throw request.fail("\"changes\" cannot change a plan's grants: use entitlements.grant and entitlements.revoke")
            }
            throw request.fail("\"changes\" has an unknown member \(JSONValue.string(key)) (a plan's displayName, order, inherits and description can change)")
        }
        var result = PlanChanges(displayName: try string("displayName"), inherits: try string("inherits"), description: try string("description"))
        switch changes["order"] {
        case nil: break
        case .null?: result.order = .remove
        case .int(let n)?: result.order = .set(n)
        case let other?: throw request.fail("\"changes.order\" must be an integer (lowest first), or null to remove it, not \(other.typeName)")
        }
        return result
    }

    /// `config`, `notes`, `at`, `expiresAt` of an override (and `by`, defaulting to the request's).
    private static func override(_ members: JSONObject, enabled: Bool, _ request: AdminRequest, at prefix: String = "") throws(RequestError) -> OverrideChange {
        func string(_ name: String) throws(RequestError) -> String? {
            switch members[name] {
            case nil, .null?: return nil
            case .string(let text)?: return text
            case let other?: throw request.fail("\"\(prefix)\(name)\" must be a string, not \(other.typeName)")
            }
        }
        func instant(_ name: String) throws(RequestError) -> Int64? {
            guard let text = try string(name) else { return nil }
            guard let instant = Instant.parse(text) else {
                throw request.fail("\"\(prefix)\(name)\" is not a date-time: \(JSONValue.string(text)) (write it as 2027-01-01T00:00:00Z or 2027-01-01)")
            }
            return instant
        }
        var change = OverrideChange(enabled: enabled)
        switch members["config"] {
        case nil, .null?: break
        case .object(let config)?: change.config = config
        case let other?: throw request.fail("\"\(prefix)config\" must be an object, not \(other.typeName)")
        }
        change.notes = try string("notes")
        change.by = try string("by")
        change.at = try instant("at")
        change.expiresAt = try instant("expiresAt")
        return change
    }
}
