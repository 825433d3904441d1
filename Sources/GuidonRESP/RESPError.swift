/// Why a Redis exchange failed: a code a caller can switch on, and a message saying what,
/// where and why.
public struct RESPError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure. A struct over a private enum, so that new codes break nobody.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case malformedReply, connectionClosed, timeout, serverError, invalidAddress, connectFailed
            case tooManyPending, shutdown
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The server sent bytes that are not RESP2: the connection is closed.
        public static let malformedReply = Code(.malformedReply)
        /// The connection closed (or could not be kept) before the reply arrived.
        public static let connectionClosed = Code(.connectionClosed)
        /// No reply before the command's deadline.
        public static let timeout = Code(.timeout)
        /// The server answered with an error reply (`-ERR …`, `-NOSCRIPT …`): `message` holds it.
        public static let serverError = Code(.serverError)
        /// The address is not `redis://HOST[:PORT]` or `redis+unix:///PATH`.
        public static let invalidAddress = Code(.invalidAddress)
        /// The connection could not be opened (refused, unreachable, no such socket).
        public static let connectFailed = Code(.connectFailed)
        /// More commands wait for replies than the client accepts: refused at once.
        public static let tooManyPending = Code(.tooManyPending)
        /// The client was shut down.
        public static let shutdown = Code(.shutdown)

        public var description: String {
            switch value {
            case .malformedReply: "malformedReply"
            case .connectionClosed: "connectionClosed"
            case .timeout: "timeout"
            case .serverError: "serverError"
            case .invalidAddress: "invalidAddress"
            case .connectFailed: "connectFailed"
            case .tooManyPending: "tooManyPending"
            case .shutdown: "shutdown"
            }
        }
    }

    public var code: Code
    /// What went wrong, where and why (for `serverError`, the server's own text).
    public var message: String
    /// For `malformedReply`: the offset of the offending byte in the parsed buffer.
    public var offset: Int?

    public init(_ code: Code, _ message: String, offset: Int? = nil) {
        self.code = code
        self.message = message
        self.offset = offset
    }

    public var description: String { "\(code): \(message)" }
}
