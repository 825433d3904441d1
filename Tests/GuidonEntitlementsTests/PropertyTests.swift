import GuidonEngine
import GuidonJSON
import PropertyBased
import Testing

@testable import GuidonEntitlements

/// SplitMix64: one seed expanded into a random document.
private struct Random {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

/// Random entitlements documents, mostly valid, sometimes with what lenient mode ignores.
private enum Documents {
    static let instants: [Int64] = [1_790_000_000, 1_800_000_000, 1_810_000_000]
    static let stamps = ["2026-09-21T14:13:20Z", "2027-01-15T08:00:00Z", "2027-05-11T01:46:40Z"]  // = instants
    static let nows: [Int64] = [1_780_000_000, 1_799_999_999, 1_800_000_000, 1_805_000_000, 1_820_000_000]
    static let statuses = ["active", "trialing", "past_due", "canceled", "expired"]
    static let limitSets: [JSONValue] = [
        [], [["per": "day", "max": 5]], [["per": "hour", "max": 1, "scope": "user", "mode": "soft"], ["per": "month", "max": 9]],
    ]
    static let shapes: [JSONValue] = [
        ["level": "basic", "max": 1, "nested": ["on": false, "tags": ["a"]]],
        ["providers": ["card"], "fee": 1.5],
        ["model": nil, "tokens": 100],
    ]

    static func config(_ shape: JSONValue, _ r: inout Random) -> JSONValue {
        guard case .object(let members) = shape else { return shape }
        var out = JSONObject()
        for (key, value) in members where r.chance(50) {
            switch value {
            case .object: out[key] = config(value, &r)
            case .string: out[key] = .string(r.pick(["pro", "max", "x"]))
            case .int: out[key] = .int(Int64(r.below(1000)))
            case .double: out[key] = .double(Double(r.below(100)) / 4)
            case .bool: out[key] = .bool(r.chance(50))
            case .array: out[key] = r.pick([[], ["b", "c"], [1]])
            case .null: out[key] = r.pick([1, "gpt", ["x": true]])
            }
        }
        // Sometimes a member the default does not have (lenient mode merges it as written).
        if r.chance(5) { out["extra"] = 1 }
        return .object(out)
    }

    /// A document, and (for the reuse property) the same with tenant `changed`'s status changed.
    static func make(seed: UInt64, changed: Int? = nil) -> JSONValue {
        var r = Random(state: seed)
        var features = JSONObject()
        var shapeOf: [String: JSONValue] = [:]
        for f in 0..<(1 + r.below(5)) {
            var feature: JSONObject = ["description": .string("feature \(f)")]
            if r.chance(40) {
                let shape = r.pick(shapes)
                shapeOf["f\(f)"] = shape
                feature["default"] = shape
            } else {
                feature["default"] = .bool(r.chance(25))
            }
            if r.chance(25) { feature["limits"] = r.pick(limitSets) }
            features["f\(f)"] = .object(feature)
        }
        let keys = features.keys
        var plans = JSONObject()
        let planCount = r.below(5)
        for p in 0..<planCount {
            var plan: JSONObject = ["displayName": .string("Plan \(p)")]
            if r.chance(90) { plan["order"] = .int(Int64(r.below(4))) }
            if p > 0 && r.chance(60) { plan["inherits"] = .string("p\(r.below(p))") }
            var grants = JSONObject()
            if r.chance(15) { grants["*"] = true }
            for key in keys {
                switch r.below(6) {
                case 0: grants[key] = true
                case 1: grants[key] = false
                case 2:
                    var grant = JSONObject()
                    if let shape = shapeOf[key], r.chance(70) { grant["config"] = config(shape, &r) }
                    if r.chance(40) { grant["limits"] = r.pick(limitSets) }
                    if r.chance(10) { grant["granted"] = false }
                    grants[key] = .object(grant)
                default: break
                }
            }
            if r.chance(5) { grants["ghost-feature"] = true }
            plan["grants"] = .object(grants)
            plans["p\(p)"] = .object(plan)
        }
        var tenants = JSONObject()
        for t in 0..<r.below(7) {
            var tenant: JSONObject = [:]
            tenant["plan"] = planCount > 0 && r.chance(90) ? .string("p\(r.below(planCount))") : "ghost-plan"
            var status = r.pick(statuses)
            if t == changed { status = statuses[(statuses.firstIndex(of: status)! + 1) % statuses.count] }
            tenant["status"] = .string(status)
            if r.chance(50) { tenant["validUntil"] = .string(r.pick(stamps)) }
            var overrides = JSONObject()
            for key in keys + ["ghost-feature"] where r.chance(key == "ghost-feature" ? 3 : 30) {
                var o: JSONObject = ["enabled": .bool(r.chance(60))]
                if let shape = shapeOf[key], r.chance(50) { o["config"] = config(shape, &r) }
                if r.chance(30) { o["limits"] = r.pick(limitSets) }
                if r.chance(50) { o["notes"] = .string(r.pick(["trial", "support \"ticket\"", "ü"])) }
                if r.chance(50) { o["by"] = .string(r.pick(["ana", "li"])) }
                let at = r.below(3)
                if r.chance(50) { o["at"] = .string(stamps[at]) }
                if r.chance(50) { o["expiresAt"] = .string(stamps[o["at"] == nil ? r.below(3) : min(2, at + 1)]) }
                if o["at"] != nil, o["at"] == o["expiresAt"] { o["expiresAt"] = nil }
                overrides[key] = .object(o)
            }
            if !overrides.isEmpty { tenant["overrides"] = .object(overrides) }
            tenants["t\(t)"] = .object(tenant)
        }
        return ["timezone": "UTC", "features": .object(features), "plans": .object(plans), "tenants": .object(tenants)]
    }
}

/// The answer a straightforward reading of the document gives, written from the specification
/// (ENTITLEMENTS.md), independently of the compiler.
private struct Reference {
    let document: JSONObject

    var features: JSONObject { document["features"]?.object ?? [:] }
    var plans: JSONObject { document["plans"]?.object ?? [:] }

    struct Answer: Equatable {
        var value: JSONValue
        var variant: String
        var reason: String
        var metadata: JSONObject
        var entitled: Bool
        var limits: JSONValue?
        var limitsFrom: String?
    }

    /// No limits (a bare `nil` could be read as JSON `null`: `JSONValue` is nil-literal expressible).
    static let noLimits: JSONValue? = .none

    /// The first limits declared, and where.
    static func first(_ candidates: [(JSONValue?, String)]) -> (JSONValue?, String?) {
        for (limits, source) in candidates {
            if let limits { return (limits, source) }
        }
        return (noLimits, nil)
    }

    static func merge(_ a: JSONValue, _ b: JSONValue) -> JSONValue {
        guard case .object(var x) = a, case .object(let y) = b else { return b }
        for (k, v) in y { x[k] = x[k].map { merge($0, v) } ?? v }
        return .object(x)
    }

    func defaultValue(_ f: String) -> JSONValue { features[f]!.object!["default"]! }
    func granted(_ f: String) -> JSONValue { defaultValue(f).object != nil ? defaultValue(f) : true }

    /// feature → (value, limits) for plan `name`, after inheritance.
    func grants(_ name: String) -> [String: (value: JSONValue, limits: JSONValue?)] {
        guard let plan = plans[name]?.object else { return [:] }
        var out = plan["inherits"]?.string.map { grants($0) } ?? [:]
        let declared = plan["grants"]?.object ?? [:]
        if declared["*"] == true {
            for f in features.keys where out[f] == nil { out[f] = (granted(f), Self.noLimits) }
        }
        for (f, g) in declared where f != "*" && features[f] != nil {
            switch g {
            case true: out[f] = out[f] ?? (granted(f), Self.noLimits)
            case false: out[f] = nil
            default:
                let object = g.object!
                if object["granted"] == false {
                    out[f] = nil
                } else {
                    var value = out[f]?.value ?? granted(f)
                    if let config = object["config"] { value = Self.merge(value, config) }
                    var limits = Self.noLimits
                    if let declared = object["limits"] {
                        limits = declared
                    } else if let inherited = out[f] {
                        limits = inherited.limits
                    }
                    out[f] = (value, limits)
                }
            }
        }
        return out
    }

    func upgradeTo(_ f: String) -> String? {
        let ranked = plans.keys.enumerated().sorted { a, b in
            let x = plans[a.element]!.object!["order"]?.number ?? .infinity
            let y = plans[b.element]!.object!["order"]?.number ?? .infinity
            return x != y ? x < y : a.offset < b.offset
        }
        return ranked.first { grants($0.element)[f] != nil }?.element
    }

    func answer(tenant id: String?, feature f: String, now: Int64) -> Answer {
        let featureLimits = features[f]!.object!["limits"]
        let isCore = defaultValue(f) == true
        guard let id, let tenant = document["tenants"]?.object?[id]?.object else {
            var metadata: JSONObject = ["source": "default"]
            if !isCore, let up = upgradeTo(f) { metadata["upgradeTo"] = .string(up) }
            return Answer(value: defaultValue(f), variant: "default", reason: "DEFAULT", metadata: metadata, entitled: isCore,
                limits: isCore ? featureLimits : nil, limitsFrom: isCore && featureLimits != nil ? "feature" : nil)
        }
        let plan = tenant["plan"]!.string.flatMap { plans[$0] != nil ? $0 : nil }
        let status = tenant["status"]!.string!
        let validUntil = tenant["validUntil"]?.string.flatMap { Documents.instants[Documents.stamps.firstIndex(of: $0)!] }
        let applies = ["active", "trialing"].contains(status) && validUntil.map { now < $0 } ?? true
        let planGrants = plan.map { grants($0) } ?? [:]
        var metadata: JSONObject = [:]
        if let o = tenant["overrides"]?.object?[f]?.object,
            o["expiresAt"].map({ now < Documents.instants[Documents.stamps.firstIndex(of: $0.string!)!] }) ?? true
        {
            metadata["source"] = "override"
            if let plan { metadata["plan"] = .string(plan) }
            for key in ["notes", "by", "at", "expiresAt"] { if let v = o[key] { metadata[key] = v } }
            let enabled = o["enabled"] == true
            guard enabled else {
                return Answer(value: isCore || defaultValue(f).bool != nil ? false : defaultValue(f), variant: "override",
                    reason: "TARGETING_MATCH", metadata: metadata, entitled: false, limits: nil, limitsFrom: nil)
            }
            let base = applies ? planGrants[f] : nil
            var value = base?.value ?? granted(f)
            if let config = o["config"] { value = Self.merge(value, config) }
            let (limits, from) = Self.first([(o["limits"], "override"), (base?.limits, "plan"), (featureLimits, "feature")])
            return Answer(value: value, variant: "override", reason: "TARGETING_MATCH", metadata: metadata, entitled: true,
                limits: limits, limitsFrom: from)
        }
        if let plan, let grant = planGrants[f] {
            if applies {
                let (limits, from) = Self.first([(grant.limits, "plan"), (featureLimits, "feature")])
                return Answer(value: grant.value, variant: "plan:" + plan, reason: "TARGETING_MATCH",
                    metadata: ["source": "plan", "plan": .string(plan)], entitled: true, limits: limits, limitsFrom: from)
            }
            metadata = ["source": "default", "plan": .string(plan),
                        "subscription": .string(["active", "trialing"].contains(status) ? "ended" : status)]
        } else {
            metadata = ["source": "default"]
            if let plan { metadata["plan"] = .string(plan) }
            if !isCore, let up = upgradeTo(f) { metadata["upgradeTo"] = .string(up) }
        }
        return Answer(value: defaultValue(f), variant: "default", reason: "DEFAULT", metadata: metadata, entitled: isCore,
            limits: isCore ? featureLimits : nil, limitsFrom: isCore && featureLimits != nil ? "feature" : nil)
    }
}

@Suite struct EntitlementPropertyTests {
    static func compiled(_ document: JSONValue, reusing previous: Entitlements? = nil) throws -> Entitlements {
        try Entitlements.compile(json: Array(JSONWriter.string(document).utf8), options: options(.lenient), reusing: previous)
    }

    @Test func answersEqualAStraightforwardReading() async throws {
        await propertyCheck(count: 400, input: Gen<UInt64>.value()) { seed in
            let document = Documents.make(seed: seed)
            let e: Entitlements
            do {
                e = try Self.compiled(document)
            } catch {
                Issue.record("rejected: \(error)\n\(document)")
                return
            }
            let reference = Reference(document: document.object!)
            let tenants = (document.object?["tenants"]?.object?.keys ?? []) + ["nobody"]
            for tenant in tenants as [String?] + [nil] {
                for feature in reference.features.keys {
                    for now in Documents.nows {
                        let expected = reference.answer(tenant: tenant, feature: feature, now: now)
                        let lent = lentReply(e, feature, tenant: tenant, now: now)
                        let actual = Reference.Answer(
                            value: lent?["value"] ?? nil, variant: lent?["variant"]?.string ?? "", reason: lent?["reason"]?.string ?? "",
                            metadata: lent?["metadata"]?.object ?? [:], entitled: e.isEntitled(tenant: tenant, feature: feature, now: now),
                            limits: nil, limitsFrom: nil)
                        var expectedServed = expected
                        expectedServed.limits = nil
                        expectedServed.limitsFrom = nil
                        #expect(actual == expectedServed, "\(tenant ?? "nil") \(feature) at \(now) in \(document)")
                        if let tenant {
                            let view = e.entitlements(tenant: tenant, now: now)["features"]?.object?[feature]?.object
                            #expect(view?["limits"] == expected.limits.map { Self.normalized($0) }, "\(tenant) \(feature) at \(now) in \(document)")
                            #expect(view?["limitsFrom"]?.string == expected.limitsFrom)
                            #expect(view?["entitled"] == .bool(expected.entitled))
                        }
                    }
                }
            }
        }
    }

    /// Limits as the view writes them: every member, with its default.
    static func normalized(_ limits: JSONValue) -> JSONValue {
        guard let items = limits.array else { return limits }
        return .array(items.map { limit in
            guard var o = limit.object else { return limit }
            o["scope"] = o["scope"] ?? "tenant"
            o["mode"] = o["mode"] ?? "hard"
            o["failMode"] = o["failMode"] ?? "open"
            return ["per": o["per"]!, "max": o["max"]!, "scope": o["scope"]!, "mode": o["mode"]!, "failMode": o["failMode"]!]
        })
    }

    @Test func aReusingCompileAnswersAsAFreshOne() async throws {
        await propertyCheck(count: 150, input: Gen<UInt64>.value()) { seed in
            let before = Documents.make(seed: seed)
            let changed = Int(seed % 4)
            let after = Documents.make(seed: seed, changed: changed)
            guard let old = try? Self.compiled(before) else {
                Issue.record("rejected \(before)")
                return
            }
            do {
                let reused = try Self.compiled(after, reusing: old)
                let fresh = try Self.compiled(after)
                #expect(ReuseTests.answers(reused) == ReuseTests.answers(fresh))
                #expect(reused.warnings == fresh.warnings)
                let tenants = after.object?["tenants"]?.object?.count ?? 0
                #expect(reused.compiledTenants == (changed < tenants ? 1 : 0))
            } catch {
                Issue.record("rejected: \(error)")
            }
        }
    }
}
