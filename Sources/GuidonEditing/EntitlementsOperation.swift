public import GuidonJSON

/// A tenant's override as an edit writes it: `{"enabled": …, "config": …, "notes": …, "by": …,
/// "at": …, "expiresAt": …}`.
public struct OverrideChange: Sendable, Hashable {
    public var enabled: Bool
    /// Merged over what the tenant would have (configuration features only).
    public var config: JSONObject?
    /// Why (default: the operation's `reason`).
    public var notes: String?
    /// Who (default: the operation's `by`).
    public var by: String?
    /// When it was decided (Unix seconds; default: the operation's `now`).
    public var at: Int64?
    /// From this instant on it no longer applies.
    public var expiresAt: Int64?

    public init(enabled: Bool, config: JSONObject? = nil, notes: String? = nil, by: String? = nil, at: Int64? = nil, expiresAt: Int64? = nil) {
        self.enabled = enabled
        self.config = config
        self.notes = notes
        self.by = by
        self.at = at
        self.expiresAt = expiresAt
    }
}

/// What `updatePlan` changes of a plan: each of `displayName`, `order`, `inherits` and
/// `description` kept (the default), set, or removed. Its grants are `grant` and `revoke`'s.
public struct PlanChanges: Sendable, Hashable {
    /// One member of a plan: kept as it is, set to a value, or removed.
    public enum Change<Value: Sendable & Hashable>: Sendable, Hashable {
        case keep
        case set(Value)
        case remove
    }

    public var displayName: Change<String>
    /// The plan's rank (lowest first).
    public var order: Change<Int64>
    /// The plan whose grants it inherits.
    public var inherits: Change<String>
    public var description: Change<String>

    public init(displayName: Change<String> = .keep, order: Change<Int64> = .keep, inherits: Change<String> = .keep, description: Change<String> = .keep) {
        self.displayName = displayName
        self.order = order
        self.inherits = inherits
        self.description = description
    }

    /// Whether every member is kept.
    public var isEmpty: Bool { displayName == .keep && order == .keep && inherits == .keep && description == .keep }
}

/// One change to an entitlements document (the file `guidond --entitlements` serves).
public struct EntitlementsOperation: Sendable {
    /// What `setStatus` does to `validUntil`.
    public enum ValidUntil: Sendable, Hashable {
        case keep
        case set(Int64)
        case clear
    }

    /// One override of a bulk change: set (`override`), or cleared (`nil`).
    public struct TenantChange: Sendable, Hashable {
        public var tenant: String
        public var feature: String
        public var override: OverrideChange?

        public init(tenant: String, feature: String, override: OverrideChange?) {
            self.tenant = tenant
            self.feature = feature
            self.override = override
        }
    }

    public enum Action: Sendable {
        /// Puts a tenant on a plan (and, with `status`, sets its status too); creates the tenant
        /// (status `active` unless given) when the document has none by that id.
        case setPlan(tenant: String, plan: String, status: String?)
        /// Sets a tenant's subscription status and, unless `keep`, its `validUntil`.
        case setStatus(tenant: String, status: String, validUntil: ValidUntil)
        /// Turns a feature on or off for one tenant (an override), replacing any override it has.
        case setOverride(tenant: String, feature: String, OverrideChange)
        /// Removes a tenant's override of a feature.
        case clearOverride(tenant: String, feature: String)
        /// Several overrides set or cleared in one edit (one revision): several features of one
        /// tenant, one feature of many tenants, or any mix. Each (tenant, feature) at most once.
        case bulk([TenantChange])
        /// Removes a tenant.
        case deleteTenant(String)
        /// Adds a plan (`displayName`, `order`, `inherits`, `grants`, `description`).
        case createPlan(name: String, definition: JSONObject)
        /// Changes a plan's `displayName`, `order`, `inherits` or `description` (not its grants).
        case updatePlan(name: String, changes: PlanChanges)
        /// Sets the document's `timezone` (an IANA zone name: usage-limit windows follow it).
        case setTimezone(String)
        /// Makes a plan grant a feature: `true`, or `{"config": …, "limits": …}`.
        case grant(plan: String, feature: String, grant: JSONValue)
        /// Makes a plan stop granting a feature: its own grant removed, or `false` over an
        /// inherited one.
        case revoke(plan: String, feature: String)
        /// Adds a feature (`default` required; `description`, `category`, `limits`).
        case addFeature(key: String, definition: JSONObject)
        /// Removes a feature; with `cascade`, also every plan's grant and tenant's override of
        /// it (otherwise those are an error that names them).
        case removeFeature(key: String, cascade: Bool)
    }

    public var action: Action
    /// Who asks, and why: the default `by` and `notes` of the overrides this writes.
    public var by: String?
    public var reason: String?
    /// The time of the change (Unix seconds): an override's `at` unless given.
    public var now: Int64

    public init(_ action: Action, by: String? = nil, reason: String? = nil, now: Int64) {
        self.action = action
        self.by = by
        self.reason = reason
        self.now = now
    }
}
