/// Why a quota operation was refused: a code, and a message saying what, where and why.
/// Nothing is counted when one is returned.
public struct QuotaStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case invalidAmount, invalidLimit, invalidKey, overflow, stateUnreadable, stateUnwritable, stopped, invalidAddress, unavailable
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// `amount` is not a whole number from 1 to `QuotaLimit.maximumValue`.
        public static let invalidAmount = Code(.invalidAmount)
        /// A limit's `max` is negative or above `QuotaLimit.maximumValue`, or there are no limits
        /// or more than `QuotaRequest.maximumLimits`.
        public static let invalidLimit = Code(.invalidLimit)
        /// An empty or over-long feature, tenant, user (for a `user` limit) or idempotency key.
        public static let invalidKey = Code(.invalidKey)
        /// The count would pass `QuotaLimit.maximumValue` (possible past a soft or shadow limit).
        public static let overflow = Code(.overflow)
        /// The embedded store's state directory holds data it cannot read back (start refused).
        public static let stateUnreadable = Code(.stateUnreadable)
        /// The embedded store cannot create or write its state directory (start refused).
        public static let stateUnwritable = Code(.stateUnwritable)
        /// The store is not running (not started, or shut down).
        public static let stopped = Code(.stopped)
        /// The Redis address is not `redis://HOST:PORT` or `redis+unix:///PATH`, or its host
        /// does not resolve.
        public static let invalidAddress = Code(.invalidAddress)
        /// Redis could not be asked in time, for an operation that has no `failMode` (`reset`).
        public static let unavailable = Code(.unavailable)

        public var description: String {
            switch value {
            case .invalidAmount: "invalidAmount"
            case .invalidLimit: "invalidLimit"
            case .invalidKey: "invalidKey"
            case .overflow: "overflow"
            case .stateUnreadable: "stateUnreadable"
            case .stateUnwritable: "stateUnwritable"
            case .stopped: "stopped"
            case .invalidAddress: "invalidAddress"
            case .unavailable: "unavailable"
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
