public import GuidonEngine

/// An OFREP request refused, or a flag that could not be evaluated, as OFREP words it: an
/// OpenFeature error code, an HTTP status, details for people, and the flag's key when there is
/// one.
///
/// `FLAG_NOT_FOUND` is `404`; every other code is `400` (the evaluation failures OFREP lists,
/// `PARSE_ERROR`, `INVALID_CONTEXT` and `GENERAL`, and `TYPE_MISMATCH`, which guidond never
/// reports here: OFREP requests carry no type, so the provider checks it). A server fault is a
/// `500` with details only (`OFREPResponder.serverError`), not one of these.
public struct OFREPError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable { case flagNotFound, parseError, invalidContext, typeMismatch, general }
        private let value: Value

        public static let flagNotFound = Code(value: .flagNotFound)
        /// The request body (or, for a flag, its definition) could not be parsed.
        public static let parseError = Code(value: .parseError)
        /// The body parsed, but its context is not an object.
        public static let invalidContext = Code(value: .invalidContext)
        public static let typeMismatch = Code(value: .typeMismatch)
        public static let general = Code(value: .general)

        /// The evaluation error the engine reported.
        public init(_ code: ErrorCode) {
            switch code {
            case .flagNotFound: self = .flagNotFound
            case .typeMismatch: self = .typeMismatch
            case .parseError: self = .parseError
            case .general: self = .general
            }
        }

        private init(value: Value) { self.value = value }

        /// The wire code (OpenFeature's `ErrorCode`).
        public var description: String {
            switch value {
            case .flagNotFound: "FLAG_NOT_FOUND"
            case .parseError: "PARSE_ERROR"
            case .invalidContext: "INVALID_CONTEXT"
            case .typeMismatch: "TYPE_MISMATCH"
            case .general: "GENERAL"
            }
        }

        /// The HTTP status OFREP answers it with.
        public var status: Int { self == .flagNotFound ? 404 : 400 }
    }

    public var code: Code
    /// What, where, why.
    public var message: String
    /// The flag asked for (a single-flag request), to be echoed as `key`.
    public var key: String?

    public init(_ code: Code, _ message: String, key: String? = nil) {
        self.code = code
        self.message = message
        self.key = key
    }

    public var status: Int { code.status }
    public var description: String { "\(code): \(message)" }
}
