public import GuidonJSON

/// The type a caller expects a flag's value to have.
public enum ValueType: String, Sendable, CaseIterable {
    case boolean, string, integer, float, object
}

/// Why an evaluation produced its value (OpenFeature's reasons).
public enum Reason: String, Sendable {
    /// No targeting; the default variant was served.
    case `static` = "STATIC"
    /// Targeting named a variant.
    case targetingMatch = "TARGETING_MATCH"
    /// Targeting returned null; the default variant (or the caller's default) was served.
    case `default` = "DEFAULT"
    /// The flag is disabled; the caller's default applies.
    case disabled = "DISABLED"
    /// Something went wrong; see `ErrorCode`. The caller's default applies.
    case error = "ERROR"
}

/// OpenFeature error codes, as the flagd reference evaluator reports them.
public enum ErrorCode: String, Sendable, CaseIterable {
    case flagNotFound = "FLAG_NOT_FOUND"
    case typeMismatch = "TYPE_MISMATCH"
    case parseError = "PARSE_ERROR"
    case general = "GENERAL"
}

/// Who is asking: the targeting key plus any attributes.
public struct EvaluationContext: Sendable, Hashable {
    public var targetingKey: String?
    public var attributes: JSONObject
    /// The tenants that `{"entitled": …}` and `$tenant.…` ask about (the entitlements a server
    /// serves with the flags), and the tenant this context names. Not part of the context's
    /// identity (`==`, `hash`): a server sets them from its configuration and the attributes.
    public var tenantDirectory: (any TenantDirectory)?
    public var tenant: String?

    public static func == (a: EvaluationContext, b: EvaluationContext) -> Bool {
        a.targetingKey == b.targetingKey && a.attributes == b.attributes
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(targetingKey)
        hasher.combine(attributes)
    }

    public init(targetingKey: String? = nil, attributes: JSONObject = JSONObject()) {
        self.targetingKey = targetingKey
        self.attributes = attributes
    }

    /// A context as it travels on the wire: a string member `targetingKey` is the
    /// targeting key, every other member is an attribute.
    public init(json: JSONObject) {
        var attributes = json
        if case .string(let key)? = json["targetingKey"] {
            targetingKey = key
            attributes["targetingKey"] = nil
        } else {
            targetingKey = nil
        }
        self.attributes = attributes
    }
}

/// The outcome of evaluating one flag.
public struct EvaluationResult: Sendable, Hashable {
    public var flagKey: String {
        didSet { encodesFlagKey = false }
    }
    /// The served value; `nil` when the caller's default applies
    /// (DISABLED, DEFAULT without a default variant, and every ERROR).
    public var value: JSONValue? {
        didSet { encodedVariant = nil }
    }
    public var variant: String? {
        didSet { encodedVariant = nil }
    }
    public var reason: Reason
    public var errorCode: ErrorCode?
    public var errorMessage: String?
    /// Set-level metadata overlaid with the flag's own (empty for FLAG_NOT_FOUND).
    public var metadata: JSONObject {
        get { shared.metadata }
        set {
            shared = ResultText.make(newValue)
            encodesFlagKey = false
            encodedVariant = nil
        }
    }

    /// `metadata` as compact JSON text. A compiled flag writes it once and every result of the
    /// flag shares it, so that a reply copies bytes instead of encoding the same strings on
    /// every evaluation (and a result counts one reference for its metadata, not three).
    public var encodedMetadata: [UInt8] { shared.metadataJSON }

    /// Lends `body` the members the compiled flag wrote for this result: `flag` is
    /// `"flag":KEY` while `flagKey` is the flag's key, `served` is `,"value":VALUE,"variant":NAME`
    /// while the result serves one of the flag's variants as it is defined (not converted to
    /// the requested type), each `nil` for a result made or changed otherwise.
    func withSharedMembers<Result>(
        _ body: (_ flag: UnsafeRawBufferPointer?, _ served: UnsafeRawBufferPointer?, _ metadata: UnsafeRawBufferPointer) -> Result
    ) -> Result {
        shared.withMembers(flag: encodesFlagKey, variant: encodedVariant, body)
    }

    private var shared: ResultText
    /// Whether `flagKey` is the key `shared` was written for.
    private var encodesFlagKey = false
    /// The variant served, as `shared` knows it, while `value` and `variant` are its own.
    private var encodedVariant: Int?

    public init(
        flagKey: String, value: JSONValue?, variant: String?, reason: Reason,
        errorCode: ErrorCode? = nil, errorMessage: String? = nil, metadata: JSONObject = JSONObject()
    ) {
        self.init(
            flagKey: flagKey, value: value, variant: variant, reason: reason, errorCode: errorCode,
            errorMessage: errorMessage, shared: ResultText.make(metadata))
    }

    /// A result of a compiled flag, whose key `shared` was written for; `servedVariant` is the
    /// variant it serves as defined (`value` and `variant` must be that variant's).
    init(
        flagKey: String, value: JSONValue?, variant: String?, reason: Reason,
        errorCode: ErrorCode? = nil, errorMessage: String? = nil, shared: ResultText, servedVariant: Int? = nil
    ) {
        self.flagKey = flagKey
        self.value = value
        self.variant = variant
        self.reason = reason
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.shared = shared
        self.encodesFlagKey = shared.hasMembers
        self.encodedVariant = servedVariant
    }

    // Equality is about what the result says; whether it comes pre-encoded is not part of it.
    public static func == (a: EvaluationResult, b: EvaluationResult) -> Bool {
        a.flagKey == b.flagKey && a.value == b.value && a.variant == b.variant && a.reason == b.reason
            && a.errorCode == b.errorCode && a.errorMessage == b.errorMessage && a.metadata == b.metadata
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(flagKey)
        hasher.combine(value)
        hasher.combine(variant)
        hasher.combine(reason)
        hasher.combine(errorCode)
        hasher.combine(errorMessage)
        hasher.combine(metadata)
    }
}
