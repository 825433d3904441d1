public import GuidonEngine
public import GuidonJSON

/// One decoded request line.
public struct Request: Sendable {
    /// What the client asks for (`op`).
    public enum Operation: String, Sendable, CaseIterable {
        case eval, evalAll, ping, status, list, watch
    }

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
    /// `context`: who is asking (`targetingKey` plus attributes).
    public var context: EvaluationContext
    /// The attributes of the request before, kept by `RequestParser.parse(_:into:)` as the
    /// storage for the next one (the attributes are filled into one object while the other
    /// still holds the last request's, whose unchanged strings are reused).
    var spareAttributes = JSONObject()
    /// The text of the object `context` was decoded from (empty when unknown), and the depth
    /// limit it was decoded under: a request whose context has the same text, as when a
    /// client evaluates several flags for one user, keeps the context without decoding it.
    var contextText: [UInt8] = []
    var contextMaxDepth = 0

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
        self.context = context
    }
}

/// The error codes of protocol v1.
public enum ProtocolErrorCode: String, Sendable {
    /// Malformed JSON, invalid UTF-8, a missing or mistyped member.
    case invalidRequest = "INVALID_REQUEST"
    /// `op` names no operation.
    case unknownOp = "UNKNOWN_OP"
    /// The line is longer than the daemon accepts; the connection is closed.
    case tooLarge = "TOO_LARGE"
    /// The daemon has too many connections; the connection is closed.
    case overloaded = "OVERLOADED"
}

/// Why a request line was refused.
public struct RequestError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: ProtocolErrorCode
    public var message: String
    /// The request's `id`, when it could be read before the problem was found.
    public var id: JSONValue?

    public init(code: ProtocolErrorCode, message: String, id: JSONValue? = nil) {
        self.code = code
        self.message = message
        self.id = id
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
