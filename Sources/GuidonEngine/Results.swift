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
public enum ErrorCode: String, Sendable {
    case flagNotFound = "FLAG_NOT_FOUND"
    case typeMismatch = "TYPE_MISMATCH"
    case parseError = "PARSE_ERROR"
    case general = "GENERAL"
}

/// Who is asking: the targeting key plus any attributes.
public struct EvaluationContext: Sendable, Hashable {
    public var targetingKey: String?
    public var attributes: JSONObject

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
    public var flagKey: String
    /// The served value; `nil` when the caller's default applies
    /// (DISABLED, DEFAULT without a default variant, and every ERROR).
    public var value: JSONValue?
    public var variant: String?
    public var reason: Reason
    public var errorCode: ErrorCode?
    public var errorMessage: String?
    /// Set-level metadata overlaid with the flag's own (empty for FLAG_NOT_FOUND).
    public var metadata: JSONObject {
        get { metadataStorage.object }
        set { metadataStorage = ResultMetadata.make(newValue) }
    }

    /// `metadata` as compact JSON text. A compiled flag writes it once and every result of the
    /// flag shares it, so that a reply copies bytes instead of encoding the same strings on
    /// every evaluation (and a result counts one reference for its metadata, not three).
    public var encodedMetadata: [UInt8] { metadataStorage.json }

    private var metadataStorage: ResultMetadata

    public init(
        flagKey: String, value: JSONValue?, variant: String?, reason: Reason,
        errorCode: ErrorCode? = nil, errorMessage: String? = nil, metadata: JSONObject = JSONObject()
    ) {
        self.init(
            flagKey: flagKey, value: value, variant: variant, reason: reason, errorCode: errorCode,
            errorMessage: errorMessage, metadata: ResultMetadata.make(metadata))
    }

    init(
        flagKey: String, value: JSONValue?, variant: String?, reason: Reason,
        errorCode: ErrorCode? = nil, errorMessage: String? = nil, metadata: ResultMetadata
    ) {
        self.flagKey = flagKey
        self.value = value
        self.variant = variant
        self.reason = reason
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.metadataStorage = metadata
    }

    // Equality is about what the result says; whether its metadata comes pre-encoded is not part of it.
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

/// Metadata as a value and as JSON text, written once: a compiled flag makes one for all its
/// results; every result without metadata shares `none`.
final class ResultMetadata: Sendable {
    let object: JSONObject
    let json: [UInt8]

    static let none = ResultMetadata(object: JSONObject(), json: Array("{}".utf8))

    private init(object: JSONObject, json: [UInt8]) {
        self.object = object
        self.json = json
    }

    static func make(_ object: JSONObject) -> ResultMetadata {
        guard !object.isEmpty else { return none }
        var json: [UInt8] = []
        JSONWriter.write(.object(object), into: &json)
        return ResultMetadata(object: object, json: json)
    }
}
