extension GuidonClient {
    /// The evaluations, throwing `GuidonClientError` where the default API answers the caller's
    /// default: for callers who would rather know that the daemon could not be asked.
    ///
    /// ```swift
    /// let result = try await guidon.throwing.evaluate("max-cart-items", context: ["plan": "business"])
    /// ```
    ///
    /// An evaluation the daemon answered is never thrown, even with reason `ERROR` (flag not found,
    /// type mismatch): that is a result, as the protocol says. The daemon's error replies
    /// (`INVALID_REQUEST`, say for a `default` not of the `type` asked) are thrown, with code
    /// `daemonError`.
    public var throwing: Throwing { Throwing(client: self) }

    public struct Throwing: Sendable {
        let client: GuidonClient

        /// `GuidonClient.evaluate`, throwing when the daemon cannot be asked.
        public func evaluate(
            _ flag: String, context: JSONObject = [:], default defaultValue: JSONValue? = nil,
            type: GuidonFlagType? = nil, timeout: Duration? = nil
        ) async throws(GuidonClientError) -> GuidonEvaluation {
            try await client.perform(
                EvaluateOne(flag: flag, context: context, type: type, defaultValue: defaultValue), timeout: timeout
            ).get()
        }

        /// `GuidonClient.evaluateMany`, throwing when the daemon cannot be asked.
        public func evaluateMany(
            _ flags: [String], context: JSONObject = [:], default defaultValue: JSONValue? = nil,
            type: GuidonFlagType? = nil, timeout: Duration? = nil
        ) async throws(GuidonClientError) -> [GuidonEvaluation] {
            guard !flags.isEmpty else { return [] }
            return try await client.perform(
                EvaluateMany(flags: flags, context: context, type: type, defaultValue: defaultValue), timeout: timeout
            ).get()
        }

        /// `GuidonClient.evaluateAll`, throwing when the daemon cannot be asked.
        public func evaluateAll(
            context: JSONObject = [:], timeout: Duration? = nil
        ) async throws(GuidonClientError) -> GuidonEvaluations {
            try await client.perform(EvaluateAll(context: context), timeout: timeout).get()
        }
    }
}
