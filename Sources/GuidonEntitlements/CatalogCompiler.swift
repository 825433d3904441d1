import GuidonEngine
import GuidonJSON

/// Validates and compiles a document's `timezone`, `features` and `plans`.
struct CatalogCompiler {
    let options: EntitlementsCompileOptions
    var problems = Problems()

    init(options: EntitlementsCompileOptions) {
        self.options = options
    }

    /// 1,000,000 pairs (a thousand plans of a thousand features) take about 170 MB of answers.
    static let maximumPlanFeaturePairs = 1_000_000

    /// A plan as written, before inheritance.
    private struct PlanDefinition {
        var name: String
        var displayName: String
        var order: Int64?
        var inherits: String?
        var parent: Int?
        var everything = false
        var grants: [(feature: Int, grant: Grant, path: [PathSegment])] = []
    }

    private enum Grant {
        case revoke
        case grant(config: JSONObject?, limits: [Limit]?)
    }

    mutating func compile(timezone: JSONValue?, features: JSONValue?, plans: JSONValue?) -> Catalog {
        let zone = checkTimezone(timezone)
        let featureInfos = compileFeatures(features)
        var featureIDs: [String: Int] = [:]
        for (i, f) in featureInfos.enumerated() { featureIDs[f.key] = i }
        var definitions = readPlans(plans, features: featureInfos, featureIDs: featureIDs)
        // Every plan's answer for every feature is written in advance (six per pair).
        if (definitions.count + 1) * max(1, featureInfos.count) > Self.maximumPlanFeaturePairs {
            problems.error([.key("plans")],
                "\(definitions.count) plans and \(featureInfos.count) features make more than \(Self.maximumPlanFeaturePairs) plan–feature pairs, each answered in advance; per-customer terms belong in tenants' overrides")
            definitions = []
        }
        let resolved = resolve(&definitions, features: featureInfos)
        let infos = definitions.indices.map { p in
            PlanInfo(
                name: definitions[p].name, displayName: definitions[p].displayName, order: definitions[p].order,
                inherits: definitions[p].inherits,
                grants: featureInfos.indices.compactMap { f in
                    resolved[p][f].map { grant in
                        PlanInfo.Grant(feature: featureInfos[f].key, value: grant.value, limits: grant.limits,
                            grantedBy: definitions[grant.grantedBy].name)
                    }
                })
        }
        // The lowest order first; plans without one after the rest; ties in document order.
        let ranked = definitions.indices.sorted { a, b in
            let (x, y) = (definitions[a].order ?? .max, definitions[b].order ?? .max)
            return x != y ? x < y : a < b
        }
        let upgradeTo = featureInfos.indices.map { f in ranked.first { resolved[$0][f] != nil } }
        return Catalog(
            timezone: zone, features: featureInfos, plans: infos, resolved: resolved, upgradeTo: upgradeTo,
            maximumAnswerBytes: options.maximumAnswerBytes)
    }

    // MARK: timezone

    private mutating func checkTimezone(_ value: JSONValue?) -> String {
        guard let value else { return "UTC" }
        guard case .string(let zone) = value else {
            problems.error([.key("timezone")], "must be an IANA time zone name such as \"Europe/Paris\" or \"UTC\", not \(article(value.typeName))")
            return "UTC"
        }
        let known = options.isKnownTimeZone.map { $0(zone) } ?? Self.looksLikeZoneName(zone)
        if !known {
            problems.error([.key("timezone")], "unknown time zone \(quoted(zone)); use an IANA name such as \"Europe/Paris\" or \"UTC\"")
        }
        return zone
    }

    /// Without a zone database to ask: `UTC`, or a name spelled like an IANA one (`Area/City`).
    static func looksLikeZoneName(_ zone: String) -> Bool {
        if zone == "UTC" { return true }
        let parts = zone.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 2 else { return false }
        return parts.allSatisfy { part in
            guard let first = part.utf8.first, (first | 0x20) >= UInt8(ascii: "a"), (first | 0x20) <= UInt8(ascii: "z") else {
                return false
            }
            return part.utf8.allSatisfy { b in
                ((b | 0x20) >= UInt8(ascii: "a") && (b | 0x20) <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
                    || b == UInt8(ascii: "_") || b == UInt8(ascii: "-") || b == UInt8(ascii: "+")
            }
        }
    }

    // MARK: features

    private mutating func compileFeatures(_ value: JSONValue?) -> [FeatureInfo] {
        guard let value else {
            problems.error([], "missing \"features\": an entitlements document needs a \"features\" object (feature key → {\"description\", \"default\"})")
            return []
        }
        guard case .object(let definitions) = value else {
            problems.error([.key("features")], "must be an object mapping feature keys to features, not \(article(value.typeName))")
            return []
        }
        var features: [FeatureInfo] = []
        features.reserveCapacity(definitions.count)
        for (key, definition) in definitions {
            let path: [PathSegment] = [.key("features"), .key(key)]
            var info = FeatureInfo(key: key, description: nil, category: nil, kind: .boolean, defaultValue: false, limits: nil)
            defer { features.append(info) }  // even when invalid, so that references to it are not reported too
            if key.isEmpty { problems.error(path, "a feature key must not be empty") }
            if key == "*" { problems.error(path, "\"*\" cannot be a feature key: in a plan's grants it means every feature") }
            guard case .object(let feature) = definition else {
                problems.error(path, "a feature must be an object with \"description\" and \"default\", not \(article(definition.typeName))")
                continue
            }
            for member in feature.keys where !["description", "category", "default", "limits"].contains(member) {
                problems.warning(path + [.key(member)],
                    "unknown member \(quoted(member)) is ignored (a feature has \"description\", \"category\", \"default\", \"limits\")")
            }
            switch feature["description"] {
            case nil: problems.warning(path, "missing \"description\": say what the feature is (admin views and `guidon features` show it)")
            case .string(let s)?: info.description = s
            case let other?: problems.error(path + [.key("description")], "must be a string, not \(article(other.typeName))")
            }
            switch feature["category"] {
            case nil: break
            case .string(let s)?: info.category = s
            case let other?: problems.error(path + [.key("category")], "must be a string, not \(article(other.typeName))")
            }
            switch feature["default"] {
            case nil:
                problems.error(path, "missing \"default\": true or false for a boolean feature, an object for a configuration feature")
            case .bool(let b)?:
                info.defaultValue = .bool(b)
            case .object(let o)?:
                info.kind = .configuration
                info.defaultValue = .object(o)
            case let other?:
                problems.error(path + [.key("default")],
                    "must be true or false (a boolean feature) or an object (a configuration feature), not \(article(other.typeName))")
            }
            if let limits = feature["limits"] {
                info.limits = readLimits(limits, at: path + [.key("limits")], into: &problems)
            }
        }
        return features
    }

    // MARK: plans

    private mutating func readPlans(_ value: JSONValue?, features: [FeatureInfo], featureIDs: [String: Int]) -> [PlanDefinition] {
        guard let value else { return [] }
        guard case .object(let definitions) = value else {
            problems.error([.key("plans")], "must be an object mapping plan names to plans, not \(article(value.typeName))")
            return []
        }
        var plans: [PlanDefinition] = []
        for (name, definition) in definitions {
            let path: [PathSegment] = [.key("plans"), .key(name)]
            var plan = PlanDefinition(name: name, displayName: name)
            defer { plans.append(plan) }
            if name.isEmpty { problems.error(path, "a plan name must not be empty") }
            guard case .object(let object) = definition else {
                problems.error(path, "a plan must be an object with \"displayName\", \"order\" and \"grants\", not \(article(definition.typeName))")
                continue
            }
            for member in object.keys where !["displayName", "order", "inherits", "grants", "description"].contains(member) {
                problems.warning(path + [.key(member)],
                    "unknown member \(quoted(member)) is ignored (a plan has \"displayName\", \"order\", \"inherits\", \"grants\", \"description\")")
            }
            switch object["displayName"] {
            case nil: break
            case .string(let s)?: plan.displayName = s
            case let other?: problems.error(path + [.key("displayName")], "must be a string, not \(article(other.typeName))")
            }
            switch object["description"] {
            case nil, .string?: break
            case let other?: problems.error(path + [.key("description")], "must be a string, not \(article(other.typeName))")
            }
            switch object["order"] {
            case nil:
                problems.warning(path, "missing \"order\": plans are ranked by it (lowest first) to say which plan would grant a feature; this one ranks after every plan that has one")
            case .int(let n)?:
                plan.order = n
            case let other?:
                problems.error(path + [.key("order")], "must be an integer (lowest first), not \(other.typeName == "number" ? other.description : article(other.typeName))")
            }
            switch object["inherits"] {
            case nil: break
            case .string(let parent)?: plan.inherits = parent
            case let other?: problems.error(path + [.key("inherits")], "must name a plan (a string), not \(article(other.typeName))")
            }
            switch object["grants"] {
            case nil:
                break
            case .object(let grants)?:
                for (key, grant) in grants {
                    let grantPath = path + [.key("grants"), .key(key)]
                    if key == "*" {
                        if grant == .bool(true) {
                            plan.everything = true
                        } else {
                            problems.error(grantPath, "\"*\" grants every feature and can only be true, not \(grant)")
                        }
                        continue
                    }
                    guard let f = featureIDs[key] else {
                        problems.strict(grantPath,
                            "no feature named \(quoted(key)) in \"features\"\(suggestion(for: key, among: features.map(\.key)))")
                        continue
                    }
                    if let read = readGrant(grant, feature: features[f], at: grantPath) {
                        plan.grants.append((f, read, grantPath))
                    }
                }
            case let other?:
                problems.error(path + [.key("grants")], "must be an object mapping feature keys to grants, not \(article(other.typeName))")
            }
        }
        var ids: [String: Int] = [:]
        for (i, plan) in plans.enumerated() { ids[plan.name] = i }
        for i in plans.indices {
            guard let parent = plans[i].inherits else { continue }
            if let p = ids[parent] {
                plans[i].parent = p
            } else {
                problems.strict([.key("plans"), .key(plans[i].name), .key("inherits")],
                    "no plan named \(quoted(parent)) in \"plans\"\(suggestion(for: parent, among: plans.map(\.name)))")
            }
        }
        return plans
    }

    /// One member of a plan's `grants` (not `*`).
    private mutating func readGrant(_ value: JSONValue, feature: FeatureInfo, at path: [PathSegment]) -> Grant? {
        switch value {
        case .bool(true):
            return .grant(config: nil, limits: nil)
        case .bool(false):
            return .revoke
        case .object(let object):
            for member in object.keys where !["granted", "config", "limits"].contains(member) {
                problems.warning(path + [.key(member)],
                    "unknown member \(quoted(member)) is ignored (a grant has \"granted\", \"config\", \"limits\")")
            }
            var granted = true
            switch object["granted"] {
            case nil: break
            case .bool(let b)?: granted = b
            case let other?: problems.error(path + [.key("granted")], "must be true or false, not \(article(other.typeName))")
            }
            let config = readConfig(object["config"], feature: feature, at: path + [.key("config")], what: "a grant", into: &problems)
            var limits: [Limit]?
            if let value = object["limits"] {
                limits = readLimits(value, at: path + [.key("limits")], into: &problems)
            }
            if !granted {
                for member in ["config", "limits"] where object[member] != nil {
                    problems.warning(path + [.key(member)], "is ignored: the grant is revoked (\"granted\": false)")
                }
                return .revoke
            }
            return .grant(config: config, limits: limits)
        default:
            problems.error(path,
                "a grant must be true, false or an object {\"granted\", \"config\", \"limits\"}, not \(article(value.typeName))")
            return nil
        }
    }

    /// Every plan's grants after inheritance ([plan][feature]).
    private mutating func resolve(_ plans: inout [PlanDefinition], features: [FeatureInfo]) -> [[ResolvedGrant?]] {
        // Cycles first: a plan on one inherits nothing.
        var state = [UInt8](repeating: 0, count: plans.count)  // 0 unvisited, 1 on the stack, 2 done
        for start in plans.indices where state[start] == 0 {
            var chain: [Int] = []
            var p: Int? = start
            while let current = p, state[current] == 0 {
                state[current] = 1
                chain.append(current)
                p = plans[current].parent
            }
            if let current = p, state[current] == 1, let at = chain.firstIndex(of: current) {
                let cycle = Array(chain[at...])
                let first = cycle.min()!
                let rotated = Array(cycle[cycle.firstIndex(of: first)!...] + cycle[..<cycle.firstIndex(of: first)!])
                problems.error([.key("plans"), .key(plans[first].name), .key("inherits")],
                    "plan \(quoted(plans[first].name)) inherits from itself: \((rotated + [first]).map { quoted(plans[$0].name) }.joined(separator: " → "))")
                for member in cycle { plans[member].parent = nil }
            }
            for member in chain { state[member] = 2 }
        }
        var resolved = [[ResolvedGrant?]?](repeating: nil, count: plans.count)
        func resolve(_ p: Int) -> [ResolvedGrant?] {
            if let done = resolved[p] { return done }
            var grants = plans[p].parent.map { resolve($0) } ?? [ResolvedGrant?](repeating: nil, count: features.count)
            if plans[p].everything {
                for f in features.indices where grants[f] == nil {
                    grants[f] = ResolvedGrant(value: Self.grantedValue(features[f]), limits: nil, grantedBy: p)
                }
            }
            for (f, grant, path) in plans[p].grants {
                switch grant {
                case .revoke:
                    if grants[f] == nil && !plans[p].everything {
                        problems.warning(path,
                            "revokes nothing: plan \(quoted(plans[p].name)) \(plans[p].parent == nil ? "inherits no plan" : "does not inherit a grant of \(quoted(features[f].key))")")
                    }
                    grants[f] = nil
                case .grant(let config, let limits):
                    let inherited = grants[f]
                    var value = inherited?.value ?? Self.grantedValue(features[f])
                    if let config { value = merge(value, .object(config)) }
                    grants[f] = ResolvedGrant(value: value, limits: limits ?? inherited?.limits, grantedBy: p)
                }
            }
            resolved[p] = grants
            return grants
        }
        return plans.indices.map(resolve)
    }

    /// What a grant without `config` gives: `true`, or the default configuration.
    static func grantedValue(_ feature: FeatureInfo) -> JSONValue {
        feature.kind == .boolean ? .bool(true) : feature.defaultValue
    }
}
