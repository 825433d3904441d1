import GuidonEngine
import GuidonJSON

/// A plan's grant of one feature, after inheritance.
struct ResolvedGrant: Sendable {
    /// `true` for a boolean feature; the default with every config on the chain merged over it
    /// for a configuration feature.
    var value: JSONValue
    /// The limits of the nearest grant on the chain that declares some.
    var limits: [Limit]?
    /// The plan (index) whose grant decided: this plan, or the ancestor it inherits it from.
    var grantedBy: Int
}

/// The compiled features and plans: everything but the tenants, and every answer that does not
/// come from an override, written as text.
final class Catalog: Sendable {
    /// Answers per (plan slot, feature): slot 0 is "no plan" (an unknown tenant); slot `p + 1`
    /// is plan `p`.
    static let kinds = 6
    enum Kind {
        /// The plan's grant.
        static let grant = 0
        /// The feature's default, the plan not granting it (or no plan).
        static let notGranted = 1
        // 2, 3, 4: the default while the plan grants it but the status is past_due, canceled,
        // expired (`SubscriptionStatus.code`); 5: … but `validUntil` has passed.
        static let ended = 5
    }

    let timezone: String
    let features: [FeatureInfo]
    let featureIndex: BytesIndex
    /// Feature key → index, for compiling tenants.
    let featureIDs: [String: Int]
    let plans: [PlanInfo]
    /// Plan name → index.
    let planIDs: [String: Int]
    /// [plan][feature].
    let resolved: [[ResolvedGrant?]]
    /// Per feature, the lowest-ordered plan that grants it.
    let upgradeTo: [Int?]

    let text: Frozen<UInt8>
    let limits: Frozen<Limit>
    let entries: Frozen<AnswerEntry>
    /// Per feature: `"flag":"KEY"` and `"KEY":`.
    let flagMembers: Frozen<TextSpan>
    let viewKeys: Frozen<TextSpan>
    /// Per plan slot: `,"plan":"NAME","planName":"DISPLAY","planOrder":N` (empty for slot 0).
    let planMembers: Frozen<TextSpan>
    /// Per feature: 0 boolean, 1 configuration.
    let kinds: Frozen<UInt8>
    /// Per feature and `ValueType` (in `ValueType.allCases` order): the TYPE_MISMATCH message.
    let typeMismatch: [String]
    /// Whether the answers' text would pass `AnswerArena.maximumBytes` (the document is refused).
    let overflowed: Bool

    var featureCount: Int { features.count }

    init(
        timezone: String, features: [FeatureInfo], plans: [PlanInfo], resolved: [[ResolvedGrant?]], upgradeTo: [Int?],
        maximumAnswerBytes: Int
    ) {
        self.timezone = timezone
        self.features = features
        self.plans = plans
        self.resolved = resolved
        self.upgradeTo = upgradeTo
        featureIndex = BytesIndex(keys: features.map(\.key))
        var featureIDs: [String: Int] = [:]
        for (i, f) in features.enumerated() where featureIDs[f.key] == nil { featureIDs[f.key] = i }
        self.featureIDs = featureIDs
        var planIDs: [String: Int] = [:]
        for (i, p) in plans.enumerated() where planIDs[p.name] == nil { planIDs[p.name] = i }
        self.planIDs = planIDs

        var arena = AnswerArena(maximumBytes: maximumAnswerBytes)
        var flagMembers: [TextSpan] = []
        var viewKeys: [TextSpan] = []
        var typeMismatch: [String] = []
        for feature in features {
            var member: [UInt8] = []
            EncodedResultText.writeFlag(feature.key, into: &member)
            flagMembers.append(arena.append(member))
            member = []
            JSONWriter.writeString(feature.key, into: &member)
            member.append(UInt8(ascii: ":"))
            viewKeys.append(arena.append(member))
            for type in ValueType.allCases {
                typeMismatch.append(
                    "feature '\(feature.key)' is \(feature.kind == .boolean ? "a boolean feature (its value is a boolean)" : "a configuration feature (its value is an object)"), not \(article(type.rawValue))")
            }
        }
        var planMembers = [TextSpan(start: 0, count: 0)]
        for plan in plans {
            var member: [UInt8] = []
            member.append(contentsOf: #","plan":"#.utf8)
            JSONWriter.writeString(plan.name, into: &member)
            member.append(contentsOf: #","planName":"#.utf8)
            JSONWriter.writeString(plan.displayName, into: &member)
            if let order = plan.order {
                member.append(contentsOf: #","planOrder":"#.utf8)
                JSONWriter.writeInt(order, into: &member)
            }
            planMembers.append(arena.append(member))
        }

        var entries = [AnswerEntry](repeating: AnswerEntry(), count: (plans.count + 1) * features.count * Self.kinds)
        for slot in 0...plans.count {
            for f in features.indices {
                let base = (slot * features.count + f) * Self.kinds
                let plan = slot == 0 ? nil : slot - 1
                if let plan, let grant = resolved[plan][f] {
                    entries[base + Kind.grant] = arena.write(Self.grantAnswer(grant, plan: plan, feature: f, features, plans))
                    for status in [SubscriptionStatus.pastDue, .canceled, .expired] {
                        entries[base + status.code] = arena.write(
                            Self.defaultAnswer(feature: f, plan: plan, suppressedBy: status.rawValue, features, plans, upgradeTo))
                    }
                    entries[base + Kind.ended] = arena.write(
                        Self.defaultAnswer(feature: f, plan: plan, suppressedBy: "ended", features, plans, upgradeTo))
                } else {
                    entries[base + Kind.notGranted] = arena.write(
                        Self.defaultAnswer(feature: f, plan: plan, suppressedBy: nil, features, plans, upgradeTo))
                }
            }
        }
        overflowed = arena.overflowed
        text = Frozen(arena.text)
        limits = Frozen(arena.limits)
        self.entries = Frozen(entries)
        self.flagMembers = Frozen(flagMembers)
        self.viewKeys = Frozen(viewKeys)
        self.planMembers = Frozen(planMembers)
        self.typeMismatch = typeMismatch
        kinds = Frozen(features.map { $0.kind == .boolean ? 0 : 1 })
    }

    /// The answer of a plan's grant.
    static func grantAnswer(_ grant: ResolvedGrant, plan: Int, feature f: Int, _ features: [FeatureInfo], _ plans: [PlanInfo]) -> AnswerSpec {
        let name = plans[plan].name
        var why = "granted by plan \(quoted(name))"
        if grant.grantedBy != plan { why += " (inherited from \(quoted(plans[grant.grantedBy].name)))" }
        let (limits, source) = grant.limits.map { ($0, EntitlementSource.plan) }
            ?? features[f].limits.map { ($0, EntitlementSource.default) } ?? (nil, nil)
        return AnswerSpec(
            value: grant.value, variant: "plan:" + name, matched: true, entitled: true,
            metadata: ["source": "plan", "plan": .string(name)], why: why, limits: limits, limitsSource: source)
    }

    /// The answer of the feature's default for a tenant of `plan` (`nil`: none, or unknown);
    /// `suppressedBy` names why the plan's grant does not apply (a status, or `ended`).
    static func defaultAnswer(
        feature f: Int, plan: Int?, suppressedBy: String?, _ features: [FeatureInfo], _ plans: [PlanInfo], _ upgradeTo: [Int?]
    ) -> AnswerSpec {
        let feature = features[f]
        let entitled = feature.defaultValue == .bool(true)
        var metadata: JSONObject = ["source": "default"]
        if let plan { metadata["plan"] = .string(plans[plan].name) }
        var why: String
        if let plan, let suppressedBy {
            metadata["subscription"] = .string(suppressedBy)
            why = "plan \(quoted(plans[plan].name)) grants it, but "
                + (suppressedBy == "ended" ? "the subscription's validUntil has passed" : "the subscription is \(suppressedBy)")
                + (entitled ? "; on by default (a core feature)" : "; the feature's default applies")
        } else if entitled {
            why = "on for every tenant (a core feature: its default is true)"
        } else {
            why = plan.map { "not granted by plan \(quoted(plans[$0].name))" } ?? "no plan"
            why += "; the feature's default applies"
        }
        if !entitled, suppressedBy == nil, let upgrade = upgradeTo[f] {
            metadata["upgradeTo"] = .string(plans[upgrade].name)
            why += " (available on \(quoted(plans[upgrade].name)))"
        }
        return AnswerSpec(
            value: feature.defaultValue, variant: "default", matched: false, entitled: entitled, metadata: metadata,
            why: why, limits: entitled ? feature.limits : nil, limitsSource: entitled && feature.limits != nil ? .default : nil)
    }
}

extension SubscriptionStatus {
    /// 0 active, 1 trialing, 2 past_due, 3 canceled, 4 expired (stored per tenant; the codes of
    /// the statuses that stop a plan's grants are also their `Catalog.Kind`s).
    var code: Int {
        switch self {
        case .active: 0
        case .trialing: 1
        case .pastDue: 2
        case .canceled: 3
        case .expired: 4
        }
    }

    init(code: UInt8) {
        self = switch code {
        case 0: .active
        case 1: .trialing
        case 2: .pastDue
        case 3: .canceled
        default: .expired
        }
    }
}
