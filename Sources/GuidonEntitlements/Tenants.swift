import GuidonEngine
import GuidonJSON

/// One tenant, as a resolution reads it.
struct TenantRecord: BitwiseCopyable, Sendable {
    /// Unix seconds; `Int64.max` when the subscription has no end.
    var validUntil: Int64
    /// The tenant's overrides: `overrideCount` records from `overrideStart`, by feature index.
    var overrideStart: UInt32
    var overrideCount: UInt16
    /// The plan's slot (index + 1); 0 when the tenant has none (lenient mode, an unknown plan).
    var plan: UInt16
    /// `SubscriptionStatus.code`.
    var status: UInt8
}

/// One tenant's override of one feature, with its two possible answers.
struct OverrideRecord: BitwiseCopyable, Sendable {
    var feature: UInt32
    /// Unix seconds; `Int64.max` when it does not expire.
    var expiresAt: Int64
    /// The answer while the tenant's plan applies (its grant is the base a configuration is
    /// merged over, its limits apply when the override declares none) …
    var whilePlanApplies: AnswerEntry
    /// … and while it does not (the default is the base). The same text when both agree.
    var otherwise: AnswerEntry
}

/// The compiled tenants.
final class TenantTable: Sendable {
    let index: BytesIndex
    let records: Frozen<TenantRecord>
    let overrides: Frozen<OverrideRecord>
    let text: Frozen<UInt8>
    let limits: Frozen<Limit>

    var count: Int { index.count }

    init(index: BytesIndex, records: [TenantRecord], overrides: [OverrideRecord], arena: AnswerArena) {
        self.index = index
        self.records = Frozen(records)
        self.overrides = Frozen(overrides)
        text = Frozen(arena.text)
        limits = Frozen(arena.limits)
    }
}

/// A tenant compiled, before it joins a table.
struct CompiledTenant {
    var record: TenantRecord
    var overrides: [OverrideRecord]
}

/// Validates and compiles one tenant against a compiled catalog.
struct TenantCompiler {
    let catalog: Catalog
    var problems = Problems()

    static let knownMembers = ["plan", "status", "validUntil", "overrides", "name", "notes"]
    static let overrideMembers = ["enabled", "config", "limits", "notes", "by", "at", "expiresAt"]

    init(catalog: Catalog) {
        self.catalog = catalog
    }

    /// Compiles tenant `id`, writing its overrides' answers into `arena`. `nil` when it has
    /// errors (they are in `problems`).
    mutating func compile(_ id: String, _ value: JSONValue, arena: inout AnswerArena) -> CompiledTenant? {
        // Paths are made only for a problem: most tenants have none, and an array is an allocation.
        func at(_ rest: PathSegment...) -> [PathSegment] { [.key("tenants"), .key(id)] + rest }
        let path: () -> [PathSegment] = { at() }
        let errorsBefore = problems.errorCount
        if id.isEmpty { problems.error(path(), "a tenant id must not be empty") }
        if id.utf8.count > 1024 { problems.error(path(), "a tenant id must not be longer than 1024 bytes") }
        guard case .object(let tenant) = value else {
            problems.error(path(), "a tenant must be an object with \"plan\" and \"status\", not \(article(value.typeName))")
            return nil
        }
        for member in tenant.keys where !Self.knownMembers.contains(member) {
            problems.warning(at(.key(member)),
                "unknown member \(quoted(member)) is ignored (a tenant has \"plan\", \"status\", \"validUntil\", \"overrides\", \"name\", \"notes\")")
        }
        for member in ["name", "notes"] {
            if let value = tenant[member], value.string == nil {
                problems.error(at(.key(member)), "must be a string, not \(article(value.typeName))")
            }
        }
        var plan: Int?
        switch tenant["plan"] {
        case nil:
            problems.error(path(), "missing \"plan\": the name of the tenant's plan (one of \(quotedList(catalog.plans.map(\.name))))")
        case .string(let name)?:
            plan = catalog.planIDs[name]
            if plan == nil {
                problems.strict(at(.key("plan")),
                    "no plan named \(quoted(name)) in \"plans\"\(suggestion(for: name, among: catalog.plans.map(\.name)))")
            }
        case let other?:
            problems.error(at(.key("plan")), "must name a plan (a string), not \(article(other.typeName))")
        }
        var status = SubscriptionStatus.active
        switch tenant["status"] {
        case nil:
            problems.error(path(), "missing \"status\": one of \(quotedList(SubscriptionStatus.names))")
        case .string(let name)?:
            if let known = SubscriptionStatus(rawValue: name) {
                status = known
            } else {
                problems.error(at(.key("status")),
                    "\(quoted(name)) is not a status; use one of \(quotedList(SubscriptionStatus.names))\(suggestion(for: name, among: SubscriptionStatus.names))")
            }
        case let other?:
            problems.error(at(.key("status")), "must be one of \(quotedList(SubscriptionStatus.names)), not \(article(other.typeName))")
        }
        let validUntil = timestamp(tenant["validUntil"], at: at(.key("validUntil")))

        var overrides: [(feature: Int, build: OverrideBuild)] = []
        switch tenant["overrides"] {
        case nil:
            break
        case .object(let object)?:
            for (key, value) in object {
                let overridePath = { at(.key("overrides"), .key(key)) }
                guard let f = catalog.featureIDs[key] else {
                    problems.strict(overridePath(),
                        "no feature named \(quoted(key)) in \"features\"\(suggestion(for: key, among: catalog.features.map(\.key)))")
                    continue
                }
                if let build = readOverride(value, feature: catalog.features[f], at: overridePath) {
                    overrides.append((f, build))
                }
            }
        case let other?:
            problems.error(at(.key("overrides")), "must be an object mapping feature keys to overrides, not \(article(other.typeName))")
        }
        guard problems.errorCount == errorsBefore else { return nil }
        if overrides.count > Int(UInt16.max) {
            problems.error(at(.key("overrides")), "a tenant may override at most \(UInt16.max) features")
            return nil
        }
        overrides.sort { $0.feature < $1.feature }
        let record = TenantRecord(
            validUntil: validUntil ?? .max, overrideStart: 0, overrideCount: UInt16(overrides.count),
            plan: UInt16(plan.map { $0 + 1 } ?? 0), status: UInt8(status.code))
        return CompiledTenant(
            record: record,
            overrides: overrides.map { f, build in answer(build, feature: f, plan: plan, arena: &arena) })
    }

    /// An override as written.
    struct OverrideBuild {
        var enabled: Bool
        var config: JSONObject?
        var limits: [Limit]?
        var notes: String?
        var by: String?
        var at: Int64?
        var expiresAt: Int64?
    }

    private mutating func readOverride(_ value: JSONValue, feature: FeatureInfo, at lazyPath: () -> [PathSegment]) -> OverrideBuild? {
        var path: [PathSegment] { lazyPath() }
        guard case .object(let object) = value else {
            problems.error(path, "an override must be an object with \"enabled\" (true or false), not \(article(value.typeName))")
            return nil
        }
        for member in object.keys where !Self.overrideMembers.contains(member) {
            problems.warning(path + [.key(member)],
                "unknown member \(quoted(member)) is ignored (an override has \"enabled\", \"config\", \"limits\", \"notes\", \"by\", \"at\", \"expiresAt\")")
        }
        var build = OverrideBuild(enabled: false)
        switch object["enabled"] {
        case nil: problems.error(path, "missing \"enabled\": true turns the feature on for this tenant, false turns it off")
        case .bool(let b)?: build.enabled = b
        case let other?: problems.error(path + [.key("enabled")], "must be true or false, not \(article(other.typeName))")
        }
        build.config = readConfig(object["config"], feature: feature, at: path + [.key("config")], what: "an override", into: &problems)
        if let value = object["limits"] { build.limits = readLimits(value, at: path + [.key("limits")], into: &problems) }
        if !build.enabled {
            for member in ["config", "limits"] where object[member] != nil {
                problems.warning(path + [.key(member)], "is ignored: the override turns the feature off (\"enabled\": false)")
            }
        }
        for member in ["notes", "by"] {
            switch object[member] {
            case nil: break
            case .string(let s)?: if member == "notes" { build.notes = s } else { build.by = s }
            case let other?: problems.error(path + [.key(member)], "must be a string, not \(article(other.typeName))")
            }
        }
        build.at = timestamp(object["at"], at: path + [.key("at")])
        build.expiresAt = timestamp(object["expiresAt"], at: path + [.key("expiresAt")])
        if let at = build.at, let expiresAt = build.expiresAt, expiresAt <= at {
            problems.error(path + [.key("expiresAt")],
                "\(Timestamp.string(expiresAt)) is not after \"at\" (\(Timestamp.string(at))): the override would expire before it was made")
        }
        return build
    }

    private mutating func timestamp(_ value: JSONValue?, at path: @autoclosure () -> [PathSegment]) -> Int64? {
        switch value {
        case nil:
            return nil
        case .string(let text)?:
            if let seconds = Timestamp.parse(text) { return seconds }
            problems.error(path(), "\(quoted(text)) is not an RFC 3339 timestamp (e.g. \"2027-06-30T00:00:00Z\")")
            return nil
        case let other?:
            problems.error(path(), "must be an RFC 3339 timestamp (a string such as \"2027-06-30T00:00:00Z\"), not \(article(other.typeName))")
            return nil
        }
    }

    /// The override's two answers: while the plan applies, and while it does not.
    private func answer(_ build: OverrideBuild, feature f: Int, plan: Int?, arena: inout AnswerArena) -> OverrideRecord {
        let feature = catalog.features[f]
        let grant = plan.flatMap { catalog.resolved[$0][f] }
        var metadata: JSONObject = ["source": "override"]
        if let plan { metadata["plan"] = .string(catalog.plans[plan].name) }
        if let notes = build.notes { metadata["notes"] = .string(notes) }
        if let by = build.by { metadata["by"] = .string(by) }
        if let at = build.at { metadata["at"] = .string(Timestamp.string(at)) }
        if let expiresAt = build.expiresAt { metadata["expiresAt"] = .string(Timestamp.string(expiresAt)) }
        var why = build.enabled ? "turned on by an override" : "turned off by an override"
        if let by = build.by { why += " by \(by)" }
        if let at = build.at { why += " at \(Timestamp.string(at))" }
        if let expiresAt = build.expiresAt { why += " until \(Timestamp.string(expiresAt))" }
        if let notes = build.notes { why += ": \(quoted(notes))" }
        func spec(planApplies: Bool) -> AnswerSpec {
            guard build.enabled else {
                return AnswerSpec(
                    value: feature.kind == .boolean ? .bool(false) : feature.defaultValue, variant: "override", matched: true,
                    entitled: false, metadata: metadata, why: why, limits: nil, limitsSource: nil)
            }
            let base = planApplies ? grant : nil
            var value = base?.value ?? CatalogCompiler.grantedValue(feature)
            if let config = build.config { value = merge(value, .object(config)) }
            let (limits, source): ([Limit]?, EntitlementSource?) =
                build.limits.map { ($0, .override) } ?? base?.limits.map { ($0, .plan) } ?? feature.limits.map { ($0, .default) }
                ?? (nil, nil)
            return AnswerSpec(
                value: value, variant: "override", matched: true, entitled: true, metadata: metadata, why: why,
                limits: limits, limitsSource: source)
        }
        let applies = arena.write(spec(planApplies: true))
        // The answers differ only when the override turns on a feature the plan grants, and
        // the plan's grant changes its value (a configuration) or its limits.
        var otherwise = applies
        if build.enabled, let grant, feature.kind == .configuration || (build.limits == nil && grant.limits != nil) {
            otherwise = arena.write(spec(planApplies: false))
            if arena.same(applies, otherwise) {
                arena.drop(otherwise)
                otherwise = applies
            }
        }
        return OverrideRecord(
            feature: UInt32(f), expiresAt: build.expiresAt ?? .max, whilePlanApplies: applies, otherwise: otherwise)
    }
}
