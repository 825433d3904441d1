public import GuidonJSON

/// Who a targeting verb is about: values of one context attribute.
public struct Subjects: Sendable, Hashable {
    /// The context attribute (`targetingKey` for user ids, `email` for e-mail domains, or any
    /// other: `tier`, `plan`, `country`, `tenantId`…).
    public var attribute: String
    /// Whether `values` are suffixes of the attribute (e-mail domains: `"@acme.example"`)
    /// rather than whole values.
    public var bySuffix: Bool
    /// Strings or numbers (strings only for suffixes).
    public var values: [JSONValue]

    public init(attribute: String, bySuffix: Bool = false, values: [JSONValue]) {
        self.attribute = attribute
        self.bySuffix = bySuffix
        self.values = values
    }

    /// User ids: the targeting key.
    public static func users(_ ids: [String]) -> Subjects {
        Subjects(attribute: "targetingKey", values: ids.map(JSONValue.string))
    }

    /// E-mail domains (`acme.example` or `@acme.example`) of the `email` attribute.
    public static func domains(_ domains: [String], attribute: String = "email") -> Subjects {
        Subjects(attribute: attribute, bySuffix: true, values: domains.map(JSONValue.string))
    }
}

/// A variant's weight in an A/B/n split.
public struct SplitWeight: Sendable, Hashable {
    public var variant: String
    public var weight: Int64

    public init(variant: String, weight: Int64) {
        self.variant = variant
        self.weight = weight
    }
}

/// One change to one flag of a flag document: the vocabulary of `guidon flags` and of the admin
/// socket's `flags.*` operations.
public struct FlagOperation: Sendable {
    public enum Action: Sendable {
        /// A new flag with this definition (an object: `state`, `variants`, …).
        case create(definition: JSONValue)
        case delete
        /// The kill switch: `state` `ENABLED` or `DISABLED`.
        case setState(enabled: Bool)
        case setDefault(variant: String)
        /// Serve `variant` to `percentage` % of subjects (by targeting key) and `otherVariant` to
        /// the rest. Monotonic: raising the percentage keeps everyone who was in.
        case rollout(percentage: Double, variant: String?, otherVariant: String?)
        /// Serve `variant` to `subjects`; `deny` places the list before schedules and allow-lists
        /// and, without `variant`, pins the subjects to the flag's "off" variant.
        case target(Subjects, variant: String?, deny: Bool)
        /// Stop singling out `subjects` (in the rules for `variant`, or in any).
        case untarget(Subjects, variant: String?)
        /// Split everyone else between variants by weight.
        case split([SplitWeight])
        /// Serve `variant` from `start` (inclusive) until `end` (exclusive), Unix seconds.
        case schedule(variant: String?, start: Int64?, end: Int64?)
        /// Remove every schedule.
        case clearSchedule
        case replace(definition: JSONValue)
        /// A metadata member (a string, number or boolean).
        case setMetadata(name: String, value: JSONValue)
        case removeMetadata(name: String)
    }

    public var flag: String
    public var action: Action
    /// When given, written to the flag's metadata as `updatedBy` (except when deleting).
    public var by: String?
    /// When given, written to the flag's metadata as `notes` (except when deleting).
    public var reason: String?

    public init(flag: String, action: Action, by: String? = nil, reason: String? = nil) {
        self.flag = flag
        self.action = action
        self.by = by
        self.reason = reason
    }

    /// The operation's name on the wire (`flags.<verb>`) and in the audit log.
    public var verb: String {
        switch action {
        case .create: "create"
        case .delete: "delete"
        case .setState(let enabled): enabled ? "enable" : "disable"
        case .setDefault: "setDefault"
        case .rollout: "rollout"
        case .target: "target"
        case .untarget: "untarget"
        case .split: "split"
        case .schedule, .clearSchedule: "schedule"
        case .replace: "replace"
        case .setMetadata: "setMetadata"
        case .removeMetadata: "removeMetadata"
        }
    }
}
