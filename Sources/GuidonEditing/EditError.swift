public import GuidonEngine

/// Why an edit was refused. Nothing was changed: an edit either produces a whole new document
/// that validates, or this.
public struct EditError: Error, Sendable, CustomStringConvertible {
    /// What kind of refusal (compare with `==`; new codes may be added).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case noSuchFlag, flagExists, noSuchVariant, invalidArgument, invalidDocument, unsupportedTargeting, notFound, alreadyExists
        }

        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The operation names a flag the document does not have.
        public static let noSuchFlag = Code(.noSuchFlag)
        /// `create` names a flag the document already has.
        public static let flagExists = Code(.flagExists)
        /// The operation names a variant the flag does not have.
        public static let noSuchVariant = Code(.noSuchVariant)
        /// An argument is malformed or impossible (a percentage of 120, an end before its start…).
        public static let invalidArgument = Code(.invalidArgument)
        /// The document, or the document the edit would make, does not validate (see `report`).
        public static let invalidDocument = Code(.invalidDocument)
        /// The flag's targeting is not in the shape the targeting verbs read and write.
        public static let unsupportedTargeting = Code(.unsupportedTargeting)
        /// The operation names a tenant, plan, feature or override the entitlements document does not have.
        public static let notFound = Code(.notFound)
        /// The operation would create a plan or feature the entitlements document already has.
        public static let alreadyExists = Code(.alreadyExists)

        public var description: String {
            switch value {
            case .noSuchFlag: "noSuchFlag"
            case .flagExists: "flagExists"
            case .noSuchVariant: "noSuchVariant"
            case .invalidArgument: "invalidArgument"
            case .invalidDocument: "invalidDocument"
            case .unsupportedTargeting: "unsupportedTargeting"
            case .notFound: "notFound"
            case .alreadyExists: "alreadyExists"
            }
        }
    }

    public var code: Code
    /// What is wrong, where and why, and when it helps, what to do instead.
    public var message: String
    /// With `invalidDocument`: every problem of the document the edit would have made.
    public var report: ValidationReport?

    public init(_ code: Code, _ message: String, report: ValidationReport? = nil) {
        self.code = code
        self.message = message
        self.report = report
    }

    public var description: String {
        guard let report else { return "\(code): \(message)" }
        return "\(code): \(message)\n\(report)"
    }
}
