/// Why a time zone could not be loaded: a code, and a message saying what, where and why.
public struct TimeZoneError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable { case invalidName, notFound, unreadable, malformed, unsupported }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The name is not an IANA zone name (`Area/Location`, no `..`, no leading `/`).
        public static let invalidName = Code(.invalidName)
        /// No such file under the zoneinfo directory.
        public static let notFound = Code(.notFound)
        /// The file exists but could not be read.
        public static let unreadable = Code(.unreadable)
        /// The bytes are not valid TZif data, or the POSIX TZ rule is not valid.
        public static let malformed = Code(.malformed)
        /// Valid data this parser does not handle (leap-second `right/` zones).
        public static let unsupported = Code(.unsupported)

        public var description: String {
            switch value {
            case .invalidName: "invalidName"
            case .notFound: "notFound"
            case .unreadable: "unreadable"
            case .malformed: "malformed"
            case .unsupported: "unsupported"
            }
        }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
