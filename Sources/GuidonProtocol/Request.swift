public import GuidonEngine
public import GuidonJSON

/// One decoded request line.
public struct Request: Sendable {
    /// What the client asks for (`op`).
    public enum Operation: String, Sendable, CaseIterable {
        case eval, evalAll, ping, status, list, watch, stats, metrics
        /// What one tenant has (`tenant`), and a page of the tenant listing (`after`, `limit`,
        /// `plan`, `status`): the entitlements file's views.
        case entitlements, tenants
        /// Count `amount` against a metered feature's limits (`feature`, `amount`, `idempotencyKey`).
        case consume
        /// A metered feature's counts, or every metered feature's, without counting.
        case usage
    }

    /// The largest `amount`: 2^53 − 1, the last integer JSON numbers hold exactly.
    public static let maximumAmount: Int64 = (1 << 53) - 1
    /// The longest `idempotencyKey`, in UTF-8 bytes.
    public static let maximumIdempotencyKeyBytes = 512

    public var op: Operation
    /// The client's correlation id, echoed in the reply: a JSON scalar, or `nil` when absent.
    public var id: JSONValue?
    /// `flag`: the one flag an `eval` asks for.
    public var flag: String?
    /// `flags`: the flags a multi-flag `eval` asks for, in order.
    public var flags: [String]?
    /// `type`: the value type the caller expects.
    public var type: ValueType?
    /// `default`: the caller's default value, served when the result falls back to it.
    public var defaultValue: JSONValue?
    /// `feature`: the metered feature a `consume` or `usage` is about.
    public var feature: String?
    /// `amount`: how much a `consume` counts (1 … `maximumAmount`, default 1).
    public var amount: Int64 = 1
    /// `idempotencyKey`: a `consume` repeated with it within 24 hours gets the first answer again.
    public var idempotencyKey: String?
    /// The request's other members (those of `entitlements` and `tenants`: `tenant`, `after`, …),
    /// `nil` when it has none (an `eval` line then allocates nothing for them).
    public var extras: JSONObject?
    /// `context`: who is asking (`targetingKey` plus attributes).
    ///
    /// A request decoded into a kept `Request` may hold its context as checked text until it is
    /// first read (see `RequestParser.parse(_:into:)`): reading decodes it then, hence
    /// `mutating get`. Pass it on as `snapshot.evaluate(key, context: request.context)`, whose
    /// argument is only evaluated when the flag's targeting reads it.
    public var context: EvaluationContext {
        mutating get { contextSlot.context() }
        set { contextSlot.set(newValue) }
    }

    /// Lends `body` the context (see `context`), without copying it: for reading a member or two.
    public mutating func withContext<Result>(_ body: (EvaluationContext) -> Result) -> Result {
        contextSlot.withContext(body)
    }

    /// The context, decoded or as text, with the storage that decoding reuses.
    var contextSlot: ContextSlot

    public init(
        op: Operation, id: JSONValue? = nil, flag: String? = nil, flags: [String]? = nil,
        type: ValueType? = nil, defaultValue: JSONValue? = nil, context: EvaluationContext = EvaluationContext()
    ) {
        self.op = op
        self.id = id
        self.flag = flag
        self.flags = flags
        self.type = type
        self.defaultValue = defaultValue
        self.contextSlot = ContextSlot(context)
    }
}

/// The error codes of protocol v1.
public enum ProtocolErrorCode: String, Sendable, CaseIterable {
    /// Malformed JSON, invalid UTF-8, a missing or mistyped member.
    case invalidRequest = "INVALID_REQUEST"
    /// `op` names no operation.
    case unknownOp = "UNKNOWN_OP"
    /// The line is longer than the daemon accepts; the connection is closed.
    case tooLarge = "TOO_LARGE"
    /// The daemon has too many connections; the connection is closed.
    case overloaded = "OVERLOADED"

    // The admin protocol's (see `AdminRequest`).

    /// A write sent to the query socket, which only reads.
    case forbidden = "FORBIDDEN"
    /// `ifRevision` is not the revision of the file on disk; `revision` says which is.
    case conflict = "CONFLICT"
    /// The operation names something the document does not have (a flag).
    case notFound = "NOT_FOUND"
    /// `create` names something the document already has.
    case alreadyExists = "ALREADY_EXISTS"
    /// An argument is malformed or impossible (an unknown variant, a percentage of 120, …).
    case invalidArgument = "INVALID_ARGUMENT"
    /// The document the change would make does not validate; `report` holds every problem.
    case invalidDocument = "INVALID_DOCUMENT"
    /// The flag's targeting is not in the shape the targeting operations edit.
    case unsupportedTargeting = "UNSUPPORTED_TARGETING"
    /// The file cannot be written here (a read-only file system or file): change it at its source.
    case readOnly = "READ_ONLY"
    /// Reading or writing the file failed.
    case ioError = "IO_ERROR"

    // Usage limits.

    /// What the request needs is not running or cannot be asked: usage limits are off (no
    /// `--state-dir` or `--quota-store`), or the shared store cannot be reached for an
    /// operation without a `failMode` (`usage.reset`). Nothing was counted or changed.
    case unavailable = "UNAVAILABLE"
}

/// Why a request line was refused.
public struct RequestError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: ProtocolErrorCode
    public var message: String
    /// The request's `id`, when it could be read before the problem was found.
    public var id: JSONValue?
    /// More members of the error object, after `code` and `message` (`revision` with
    /// `CONFLICT`, `report` with `INVALID_DOCUMENT`).
    public var details: JSONObject

    public init(code: ProtocolErrorCode, message: String, id: JSONValue? = nil, details: JSONObject = JSONObject()) {
        self.code = code
        self.message = message
        self.id = id
        self.details = details
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
