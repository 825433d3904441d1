public import GuidonEngine
public import GuidonJSON

/// How an entitlements document is compiled.
public struct EntitlementsCompileOptions: Sendable {
    /// `.strict` (the default) rejects a document with a reference to a feature or plan that
    /// does not exist or a configuration that does not match its default; `.lenient` ignores
    /// those with a warning (see ENTITLEMENTS.md, "Strict and lenient").
    public var mode: CompileOptions.Mode
    /// Whether a `timezone` names a zone the host knows (an IANA name such as `Europe/Paris`).
    /// The module does no I/O, so the daemon passes a check that looks the name up in the
    /// system's zone database. `nil` accepts `UTC` and any name spelled like an IANA zone.
    public var isKnownTimeZone: (@Sendable (String) -> Bool)?
    /// Where `now` comes from when a resolution does not pass one (Unix seconds).
    public var clock: @Sendable () -> Int64
    /// The most text the compiled answers may take (default 256 MiB, a thousand times what
    /// 100,000 tenants take): a document whose configurations, merged into every plan and
    /// override, would take more is refused rather than allowed to exhaust memory.
    public var maximumAnswerBytes: Int

    public init(
        mode: CompileOptions.Mode = .strict, isKnownTimeZone: (@Sendable (String) -> Bool)? = nil,
        clock: @escaping @Sendable () -> Int64 = systemClock, maximumAnswerBytes: Int = 256 << 20
    ) {
        self.mode = mode
        self.isKnownTimeZone = isKnownTimeZone
        self.clock = clock
        self.maximumAnswerBytes = maximumAnswerBytes
    }
}

/// A tenant's subscription status. A plan's grants apply only while it is `active` or
/// `trialing` (and before `validUntil`); overrides apply whatever it is.
public enum SubscriptionStatus: String, Sendable, CaseIterable {
    case active, trialing
    case pastDue = "past_due"
    case canceled, expired

    /// Whether the plan's grants apply in this status.
    public var grantsApply: Bool { self == .active || self == .trialing }

    static let names = allCases.map(\.rawValue)
}

/// A feature's kind, from its `default`.
public enum FeatureKind: String, Sendable {
    /// `default` is `true` or `false`; answers are booleans.
    case boolean
    /// `default` is an object; answers are that object with the grant's `config` merged over it.
    case configuration

    /// The value type a caller asks for to get this feature's value.
    public var valueType: ValueType { self == .boolean ? .boolean : .object }
}

/// One usage limit (see issue 14; enforced by the quota stores, declared and validated here).
public struct Limit: Sendable, Hashable, BitwiseCopyable {
    /// A calendar window in the document's `timezone`.
    public enum Window: UInt8, Sendable, CaseIterable, BitwiseCopyable {
        case minute, hour, day, week, month
        public var name: String {
            switch self {
            case .minute: "minute"
            case .hour: "hour"
            case .day: "day"
            case .week: "week"
            case .month: "month"
            }
        }
    }
    /// What one count is kept for.
    public enum Scope: UInt8, Sendable, CaseIterable, BitwiseCopyable {
        /// One count per tenant (the default).
        case tenant
        /// One count per tenant and targeting key.
        case user
        public var name: String { self == .tenant ? "tenant" : "user" }
    }
    /// What happens past the maximum.
    public enum Mode: UInt8, Sendable, CaseIterable, BitwiseCopyable {
        /// Deny (the default).
        case hard
        /// Allow, and say that the limit is exceeded.
        case soft
        /// Count and report, never deny: for introducing a limit safely.
        case shadow
        public var name: String {
            switch self {
            case .hard: "hard"
            case .soft: "soft"
            case .shadow: "shadow"
            }
        }
    }
    /// What a request gets when the store cannot answer in time.
    public enum FailMode: UInt8, Sendable, CaseIterable, BitwiseCopyable {
        /// Allow (the default: an unreachable store must not switch a product's features off).
        case open
        /// Deny.
        case closed
        public var name: String { self == .open ? "open" : "closed" }
    }

    public var per: Window
    /// The most a window allows (at least 1).
    public var max: Int64
    public var scope: Scope
    public var mode: Mode
    public var failMode: FailMode

    public init(per: Window, max: Int64, scope: Scope = .tenant, mode: Mode = .hard, failMode: FailMode = .open) {
        self.per = per
        self.max = max
        self.scope = scope
        self.mode = mode
        self.failMode = failMode
    }

    /// As it is written in a document (every member, defaults included).
    public var json: JSONValue {
        ["per": .string(per.name), "max": .int(max), "scope": .string(scope.name), "mode": .string(mode.name),
         "failMode": .string(failMode.name)]
    }
}

/// Where an answer (or its limits) came from.
public enum EntitlementSource: String, Sendable {
    /// The tenant's override of the feature.
    case override
    /// The tenant's plan (after inheritance), while the subscription lets it apply.
    case plan
    /// The feature's `default`.
    case `default`
}

/// The limits that apply to one tenant's use of one feature.
public struct EffectiveLimits: Sendable, Hashable {
    /// Whether the tenant may use the feature at all (a feature it is not entitled to is denied
    /// before any limit is counted).
    public var entitled: Bool
    /// Where `limits` were declared: the override, the plan's grant, or the feature itself
    /// (`.default`); `nil` when none applies. An empty `limits` declared somewhere means
    /// "unlimited" and stops the search.
    public var source: EntitlementSource?
    public var limits: [Limit]
}

/// What the document says about a feature.
public struct FeatureInfo: Sendable, Hashable {
    public var key: String
    public var description: String?
    public var category: String?
    public var kind: FeatureKind
    public var defaultValue: JSONValue
    /// The feature's own `limits` (`nil` when it declares none).
    public var limits: [Limit]?
}

/// A plan after inheritance.
public struct PlanInfo: Sendable, Hashable {
    public var name: String
    public var displayName: String
    /// `nil` when the plan gives none (it then ranks after every plan that does).
    public var order: Int64?
    public var inherits: String?
    /// Every feature the plan grants (after inheritance, `*` and revocations), with its value.
    public var grants: [Grant]

    public struct Grant: Sendable, Hashable {
        public var feature: String
        /// `true` for a boolean feature; the merged configuration for a configuration feature.
        public var value: JSONValue
        /// The grant's limits, from this plan or the one it inherits it from (`nil`: none).
        public var limits: [Limit]?
        /// The plan, on the inheritance chain, whose grant decided (this plan, or an ancestor).
        public var grantedBy: String
    }
}

/// What the document says about a tenant.
public struct TenantInfo: Sendable, Hashable {
    public var id: String
    /// `nil` only in lenient mode, for a tenant whose plan does not exist.
    public var plan: String?
    public var status: SubscriptionStatus
    /// Unix seconds.
    public var validUntil: Int64?
    public var overrides: [Override]

    public struct Override: Sendable, Hashable {
        public var feature: String
        public var enabled: Bool
        public var config: JSONObject?
        public var limits: [Limit]?
        public var notes: String?
        public var by: String?
        /// Unix seconds.
        public var at: Int64?
        public var expiresAt: Int64?
    }

    /// Whether the plan's grants apply at `now`: the status is `active` or `trialing` and
    /// `validUntil` has not come.
    public func planApplies(at now: Int64) -> Bool {
        status.grantsApply && validUntil.map { now < $0 } ?? true
    }
}
