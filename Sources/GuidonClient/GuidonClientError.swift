/// What went wrong talking to `guidond`.
///
/// Evaluation methods never throw this: they answer the caller's default with reason `ERROR` and
/// put the error in `GuidonEvaluation.clientError`. The `throwing` variants and the operations
/// that are not evaluations (`ping`, `status`, `list`) throw it.
///
/// Callers compare `code` with the static constants (`error.code == .timeout`); new codes can be
/// added without breaking anyone's `switch`.
public struct GuidonClientError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case connectionFailed
            case connectionClosed
            case timeout
            case daemonError
            case protocolViolation
            case cancelled
            case clientShutDown
        }

        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The socket could not be connected (no daemon, wrong path, permission denied), or the
        /// client is waiting out its reconnection back-off after such a failure.
        public static let connectionFailed = Code(.connectionFailed)
        /// The connection ended before the reply arrived (the daemon stopped or restarted).
        public static let connectionClosed = Code(.connectionClosed)
        /// No reply within the call's timeout.
        public static let timeout = Code(.timeout)
        /// The daemon answered with an error reply (`INVALID_REQUEST`, `UNKNOWN_OP`, `TOO_LARGE`,
        /// `OVERLOADED`); `daemonCode` holds the wire code.
        public static let daemonError = Code(.daemonError)
        /// The daemon's bytes do not follow the protocol (not JSON, a reply nobody asked for, a
        /// reply with the wrong id or shape).
        public static let protocolViolation = Code(.protocolViolation)
        /// The calling task was cancelled while it waited.
        public static let cancelled = Code(.cancelled)
        /// The client was shut down.
        public static let clientShutDown = Code(.clientShutDown)

        public var description: String {
            switch value {
            case .connectionFailed: "connectionFailed"
            case .connectionClosed: "connectionClosed"
            case .timeout: "timeout"
            case .daemonError: "daemonError"
            case .protocolViolation: "protocolViolation"
            case .cancelled: "cancelled"
            case .clientShutDown: "clientShutDown"
            }
        }
    }

    public var code: Code
    /// What happened, where and why, for a human.
    public var message: String
    /// With `.daemonError`: the error reply's `code` (`INVALID_REQUEST`, `UNKNOWN_OP`, …).
    public var daemonCode: String?

    public init(_ code: Code, _ message: String, daemonCode: String? = nil) {
        self.code = code
        self.message = message
        self.daemonCode = daemonCode
    }

    public var description: String {
        if let daemonCode { return "\(code) (\(daemonCode)): \(message)" }
        return "\(code): \(message)"
    }
}
