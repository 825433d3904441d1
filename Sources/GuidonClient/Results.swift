public import GuidonJSON

/// The answer to one flag evaluation: the protocol's evaluation result (PROTOCOL.md §3.1), or the
/// caller's default when the daemon could not be asked.
public struct GuidonEvaluation: Sendable, Hashable {
    /// The flag key, as asked.
    public var flag: String
    /// The served value; when the result falls back (`DISABLED`, `ERROR`, `DEFAULT` without a
    /// default variant) the caller's default, and `nil` when the caller gave none.
    public var value: JSONValue?
    /// The variant served, if any.
    public var variant: String?
    public var reason: Reason
    /// With reason `ERROR`: why.
    public var errorCode: ErrorCode?
    /// With reason `ERROR`: a human-readable explanation.
    public var errorMessage: String?
    /// The flag set's metadata overlaid with the flag's own (`[:]` when the daemon was not asked).
    public var metadata: JSONObject
    /// Set when the daemon could not be asked (it is down, it did not answer in time, its reply
    /// was broken): the result is then the caller's default, with reason `ERROR` and error code
    /// `GENERAL`, and this says what happened.
    public var clientError: GuidonClientError?

    public init(
        flag: String, value: JSONValue?, variant: String? = nil, reason: Reason, errorCode: ErrorCode? = nil,
        errorMessage: String? = nil, metadata: JSONObject = [:], clientError: GuidonClientError? = nil
    ) {
        self.flag = flag
        self.value = value
        self.variant = variant
        self.reason = reason
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.metadata = metadata
        self.clientError = clientError
    }

    /// The caller's default, because the daemon could not be asked.
    static func fallback(_ flag: String, default value: JSONValue?, _ error: GuidonClientError) -> GuidonEvaluation {
        GuidonEvaluation(
            flag: flag, value: value, reason: .error, errorCode: .general, errorMessage: error.message, clientError: error)
    }

    /// An OpenFeature resolution reason. Unknown reasons (of a later daemon) are kept as they came.
    public struct Reason: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The flag has no targeting: its default variant.
        public static let `static` = Reason(rawValue: "STATIC")
        /// A targeting rule chose the variant.
        public static let targetingMatch = Reason(rawValue: "TARGETING_MATCH")
        /// Targeting fell through to the default variant (or the caller's default).
        public static let `default` = Reason(rawValue: "DEFAULT")
        /// The flag is disabled: the caller's default.
        public static let disabled = Reason(rawValue: "DISABLED")
        /// Something failed: the caller's default, and `errorCode` says what.
        public static let error = Reason(rawValue: "ERROR")

        public var description: String { rawValue }
    }

    /// An OpenFeature error code. Unknown codes are kept as they came.
    public struct ErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let flagNotFound = ErrorCode(rawValue: "FLAG_NOT_FOUND")
        public static let typeMismatch = ErrorCode(rawValue: "TYPE_MISMATCH")
        public static let parseError = ErrorCode(rawValue: "PARSE_ERROR")
        /// Any other failure; also what the client reports when it could not ask the daemon.
        public static let general = ErrorCode(rawValue: "GENERAL")

        public var description: String { rawValue }
    }
}

/// The type a caller expects of a flag's value (the request's `type`): the daemon answers
/// `TYPE_MISMATCH` with the caller's default when the flag serves another.
public struct GuidonFlagType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let boolean = GuidonFlagType(rawValue: "boolean")
    public static let string = GuidonFlagType(rawValue: "string")
    public static let integer = GuidonFlagType(rawValue: "integer")
    /// Any number (integers included).
    public static let float = GuidonFlagType(rawValue: "float")
    /// An object or an array.
    public static let object = GuidonFlagType(rawValue: "object")

    public var description: String { rawValue }
}

/// The answer to `evaluateAll`: one result per flag of the file, in document order.
public struct GuidonEvaluations: Sendable, Hashable {
    /// Every flag's result, in the file's order. Empty when the daemon could not be asked.
    public var results: [GuidonEvaluation]
    /// Set when the daemon could not be asked.
    public var clientError: GuidonClientError?
    private var index: [String: Int]

    public init(results: [GuidonEvaluation], clientError: GuidonClientError? = nil) {
        self.results = results
        self.clientError = clientError
        var index = [String: Int](minimumCapacity: results.count)
        for (i, result) in results.enumerated() { index[result.flag] = i }
        self.index = index
    }

    /// The result of `flag`, or `nil` when the file has no such flag (or the daemon was not asked).
    public subscript(flag: String) -> GuidonEvaluation? {
        index[flag].map { results[$0] }
    }
}

/// The answer to `ping` (PROTOCOL.md §3.4).
public struct GuidonPing: Sendable, Hashable {
    /// Identifies the content of the file being served (16 hex digits).
    public var configVersion: String
    /// Flags served.
    public var flagCount: Int
    /// The whole reply, with the members a later daemon adds.
    public var reply: JSONObject
}

/// The answer to `status` (PROTOCOL.md §3.5).
public struct GuidonStatus: Sendable, Hashable {
    /// The daemon's version.
    public var version: String
    /// The flag file, as given on the daemon's command line.
    public var configPath: String
    public var configVersion: String
    public var flagCount: Int
    /// When the served version was loaded (RFC 3339, UTC).
    public var loadedAt: String
    public var uptimeSeconds: Int
    /// `strict` or `lenient`.
    public var mode: String
    /// Warnings of the served version (lenient mode).
    public var warnings: Int
    /// Connections open to the daemon (this client's included).
    public var connections: Int
    /// The last reload attempt; `nil` before the first.
    public var lastReload: Reload?
    /// The whole reply, with the members a later daemon adds.
    public var reply: JSONObject

    public struct Reload: Sendable, Hashable {
        public var ok: Bool
        /// When (RFC 3339, UTC).
        public var at: String
        /// `sighup` or `inotify`.
        public var trigger: String
        /// The version served afterwards.
        public var configVersion: String
        /// With `ok == false`: the validation report or I/O error.
        public var error: String?
    }
}

/// The answer to `list` (PROTOCOL.md §3.6).
public struct GuidonFlagList: Sendable, Hashable {
    public var configVersion: String
    /// Every flag, in document order.
    public var flags: [Flag]

    public struct Flag: Sendable, Hashable {
        public var key: String
        /// `state` is `ENABLED`.
        public var enabled: Bool
        /// Variant names, in document order.
        public var variants: [String]
        public var defaultVariant: String?
        /// Whether the flag has a targeting rule.
        public var hasTargeting: Bool
        public var metadata: JSONObject
    }
}

/// One element of the `watch` stream.
public struct GuidonConfigurationChange: Sendable, Hashable {
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case subscribed, changed, resynchronized
        }

        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The first element: the subscription is live at `configVersion`; every reload after it
        /// is reported. The key lists are empty.
        public static let subscribed = Kind(.subscribed)
        /// A reload changed the flag set (the daemon's `configurationChanged` event).
        public static let changed = Kind(.changed)
        /// The watch connection was lost and is back: events may have been missed. The client
        /// listed the flags again: `added` and `removed` are exact; `changed` holds every flag
        /// that was kept, since any of them may have changed — or none, when `configVersion` is
        /// the one last seen (the same file).
        public static let resynchronized = Kind(.resynchronized)

        public var description: String {
            switch value {
            case .subscribed: "subscribed"
            case .changed: "changed"
            case .resynchronized: "resynchronized"
            }
        }
    }

    public var kind: Kind
    /// The version served from now on.
    public var configVersion: String
    /// Flags added, sorted by key.
    public var added: [String]
    /// Flags whose definition changed, sorted by key.
    public var changed: [String]
    /// Flags removed, sorted by key.
    public var removed: [String]

    public init(kind: Kind, configVersion: String, added: [String] = [], changed: [String] = [], removed: [String] = []) {
        self.kind = kind
        self.configVersion = configVersion
        self.added = added
        self.changed = changed
        self.removed = removed
    }

    /// Every flag key the change names.
    public var flags: [String] { added + changed + removed }
}

/// What one tenant has (`entitlements`, PROTOCOL.md §3.10): its plan and subscription, and every
/// feature's answer in document order. An unknown tenant is `found == false` with every default.
public struct GuidonTenantEntitlements: Sendable, Hashable {
    /// One feature's answer: the value an evaluation of the feature gives, whether the tenant is
    /// entitled to it, and why.
    public struct Feature: Sendable, Hashable {
        public var key: String
        public var value: JSONValue?
        public var variant: String?
        public var reason: GuidonEvaluation.Reason
        public var entitled: Bool
        /// A sentence: `granted by plan "growth"`, `turned on by an override by … : "…"`.
        public var why: String
        /// `source` (`override`, `plan`, `default`), `plan`, an override's `notes`/`by`/`at`, `upgradeTo`.
        public var metadata: JSONObject
        /// The usage limits that apply, when any.
        public var limits: [JSONValue]?

        /// The lowest plan that would grant a denied feature.
        public var upgradeTo: String? { metadata["upgradeTo"]?.string }
        /// `override`, `plan` or `default`.
        public var source: String? { metadata["source"]?.string }
    }

    public var tenant: String
    /// Whether the entitlements file has this tenant.
    public var found: Bool
    public var plan: String?
    public var planName: String?
    public var status: String?
    /// RFC 3339, UTC.
    public var validUntil: String?
    /// Whether the plan's grants apply now.
    public var planApplies: Bool
    /// Every feature, in document order.
    public var features: [Feature]
    /// The whole reply, with the members a later daemon adds.
    public var reply: JSONObject

    /// The answer for `key`, `nil` for a key that is not a feature.
    public subscript(feature key: String) -> Feature? { features.first { $0.key == key } }

    public func isEntitled(_ key: String) -> Bool { self[feature: key]?.entitled ?? false }
}

/// A page of the tenant listing (`tenants`): pass `next` as `after` for the next page.
public struct GuidonTenantPage: Sendable, Hashable {
    public struct Tenant: Sendable, Hashable {
        public var id: String
        public var plan: String?
        public var status: String
        public var validUntil: String?
        /// How many features the tenant overrides.
        public var overrides: Int
    }

    public var tenants: [Tenant]
    /// How many tenants match the filters, on every page.
    public var total: Int
    /// The `after` of the next page; `nil` on the last.
    public var next: String?
}

/// The answer to `consume` (PROTOCOL.md §3.12): whether to go ahead, and the limit that decided.
public struct GuidonConsumption: Sendable, Hashable {
    public var allowed: Bool
    /// Why not: `LIMIT_EXCEEDED`, `NOT_ENTITLED` or `STORE_UNAVAILABLE`; nil when allowed.
    public var reason: String?
    /// The count after this request (nil when degraded, unlimited or not entitled).
    public var used: Int64?
    public var limit: Int64?
    public var remaining: Int64?
    /// When the window's counts reset (RFC 3339, UTC).
    public var resetAt: String?
    /// `minute`, `hour`, `day`, `week` or `month`.
    public var window: String?
    /// `hard`, `soft` or `shadow`.
    public var mode: String?
    /// The store did not answer in time: the limit's `failMode` decided.
    public var degraded: Bool
    /// The first answer to this idempotency key, given again (nothing counted now).
    public var replayed: Bool
    /// The whole reply (`over`, `shadowOver`, `unlimited`, `entitlement`, …).
    public var reply: JSONObject
}

/// One feature's usage (PROTOCOL.md §3.13): the limit with the least remaining; every limit is in
/// `reply["limits"]`.
public struct GuidonUsage: Sendable, Hashable {
    public var feature: String
    public var entitled: Bool
    public var used: Int64?
    public var limit: Int64?
    public var remaining: Int64?
    public var resetAt: String?
    public var window: String?
    public var degraded: Bool
    public var reply: JSONObject
}
