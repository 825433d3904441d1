@_exported public import GuidonJSON
public import Logging
public import NIOCore
import NIOConcurrencyHelpers
import NIOPosix

/// A client of `guidond`, the feature-flag sidecar, over its Unix socket.
///
/// One client serves a whole process: it is `Sendable`, keeps a small pool of connections
/// (`GuidonClientConfiguration.poolSize`), and any number of concurrent calls share each of them
/// — their requests are pipelined, their replies come back in request order.
///
/// **Evaluations never throw.** When the daemon is down, slow past the call's timeout, or its
/// reply is broken, an evaluation answers the caller's default with reason `ERROR`, and the
/// result's `clientError` says what happened. After a failed connection attempt the client backs
/// off (`reconnectBackoff`): meanwhile calls answer at once instead of each trying to connect.
/// Callers who would rather handle errors use `client.throwing`.
///
/// ```swift
/// try await GuidonClient.withClient { guidon in
///     if await guidon.isEnabled("new-checkout", context: ["targetingKey": "user-42", "tier": "gold"]) {
///         …
///     }
/// }
/// ```
///
/// A client made with `init` must be shut down (`shutdown()`); `withClient` does it for you.
public final class GuidonClient: Sendable {
    public let configuration: GuidonClientConfiguration
    let group: any EventLoopGroup
    let logger: Logger
    private let pool: ConnectionPool
    private let lifecycle: NIOLockedValueBox<Lifecycle>

    private enum Lifecycle {
        case running(watches: [ObjectIdentifier: WatchMailbox])
        case shutDown
    }

    /// Makes a client; it connects on first use.
    ///
    /// - Parameters:
    ///   - configuration: the socket, timeouts and pool size.
    ///   - eventLoopGroup: where the connections live (default: NIO's shared singleton group,
    ///     one thread per core). It must outlive the client.
    ///   - logger: where the client says that the daemon became unreachable and is back (once
    ///     per outage, not once per call). Default: nowhere.
    public init(
        configuration: GuidonClientConfiguration = GuidonClientConfiguration(),
        eventLoopGroup: (any EventLoopGroup)? = nil,
        logger: Logger = Logger(label: "guidon.client", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        let eventLoopGroup = eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton
        self.configuration = configuration
        self.group = eventLoopGroup
        self.logger = logger
        pool = ConnectionPool(configuration: configuration, group: eventLoopGroup, logger: logger)
        lifecycle = NIOLockedValueBox(.running(watches: [:]))
    }

    deinit {
        // A client dropped without `shutdown()`: close its connections anyway (without waiting).
        pool.shutdownNow()
    }

    /// Makes a client, runs `body` with it, and shuts it down whether `body` returns or throws.
    public static func withClient<Result, Failure: Error>(
        configuration: GuidonClientConfiguration = GuidonClientConfiguration(),
        eventLoopGroup: (any EventLoopGroup)? = nil,
        logger: Logger = Logger(label: "guidon.client", factory: { _ in SwiftLogNoOpLogHandler() }),
        isolation: isolated (any Actor)? = #isolation,
        _ body: (GuidonClient) async throws(Failure) -> Result
    ) async throws(Failure) -> Result {
        let client = GuidonClient(configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger)
        let result: Swift.Result<Result, Failure>
        do throws(Failure) {
            result = .success(try await body(client))
        } catch {
            result = .failure(error)
        }
        await client.shutdown()
        return try result.get()
    }

    /// Closes the connections and ends every `watch` stream. Calls made afterwards answer
    /// their defaults (evaluations) or throw `clientShutDown`. Safe to call more than once.
    public func shutdown() async {
        let watches: [WatchMailbox] = lifecycle.withLockedValue { state in
            guard case .running(let watches) = state else { return [] }
            state = .shutDown
            return Array(watches.values)
        }
        for mailbox in watches { mailbox.terminate() }
        await pool.shutdown()
    }

    // MARK: - Evaluation (never throws)

    /// Evaluates one flag.
    ///
    /// - Parameters:
    ///   - flag: the flag key.
    ///   - context: the evaluation context; `targetingKey` is what `fractional` rollouts hash.
    ///   - default: what to answer when the flag is disabled, missing, of the wrong type, or the
    ///     daemon cannot be asked.
    ///   - type: the type expected of the value; the daemon answers `TYPE_MISMATCH` (with the
    ///     default) when the flag serves another.
    ///   - timeout: this call's timeout (default: the configuration's).
    /// - Returns: the daemon's result, or the default with reason `ERROR` and `clientError` set.
    public func evaluate(
        _ flag: String, context: JSONObject = [:], default defaultValue: JSONValue? = nil, type: GuidonFlagType? = nil,
        timeout: Duration? = nil
    ) async -> GuidonEvaluation {
        switch await perform(EvaluateOne(flag: flag, context: context, type: type, defaultValue: defaultValue), timeout: timeout) {
        case .success(let result): result
        case .failure(let error): .fallback(flag, default: defaultValue, error)
        }
    }

    /// Evaluates several flags in one round trip, against one version of the flag file.
    ///
    /// - Returns: one result per key, in the order asked; all defaults (reason `ERROR`) when the
    ///   daemon cannot be asked.
    public func evaluateMany(
        _ flags: [String], context: JSONObject = [:], default defaultValue: JSONValue? = nil,
        type: GuidonFlagType? = nil, timeout: Duration? = nil
    ) async -> [GuidonEvaluation] {
        guard !flags.isEmpty else { return [] }
        switch await perform(EvaluateMany(flags: flags, context: context, type: type, defaultValue: defaultValue), timeout: timeout) {
        case .success(let results): return results
        case .failure(let error): return flags.map { .fallback($0, default: defaultValue, error) }
        }
    }

    /// Evaluates every flag of the file (no type checks, no defaults).
    ///
    /// - Returns: the results in document order; empty, with `clientError` set, when the daemon
    ///   cannot be asked.
    public func evaluateAll(context: JSONObject = [:], timeout: Duration? = nil) async -> GuidonEvaluations {
        switch await perform(EvaluateAll(context: context), timeout: timeout) {
        case .success(let results): results
        case .failure(let error): GuidonEvaluations(results: [], clientError: error)
        }
    }

    /// Whether a boolean flag is on; `default` when it is off-limits, of another type, or the
    /// daemon cannot be asked.
    public func isEnabled(
        _ flag: String, context: JSONObject = [:], default defaultValue: Bool = false, timeout: Duration? = nil
    ) async -> Bool {
        await evaluate(flag, context: context, default: .bool(defaultValue), type: .boolean, timeout: timeout)
            .value?.bool ?? defaultValue
    }

    /// A string flag's value, or `default`.
    public func string(
        _ flag: String, context: JSONObject = [:], default defaultValue: String, timeout: Duration? = nil
    ) async -> String {
        await evaluate(flag, context: context, default: .string(defaultValue), type: .string, timeout: timeout)
            .value?.string ?? defaultValue
    }

    /// An integer flag's value, or `default`.
    public func int(
        _ flag: String, context: JSONObject = [:], default defaultValue: Int, timeout: Duration? = nil
    ) async -> Int {
        let value = await evaluate(flag, context: context, default: .int(Int64(defaultValue)), type: .integer, timeout: timeout).value
        if case .int(let n)? = value, let int = Int(exactly: n) { return int }
        return defaultValue
    }

    /// A number flag's value (integers included), or `default`.
    public func double(
        _ flag: String, context: JSONObject = [:], default defaultValue: Double, timeout: Duration? = nil
    ) async -> Double {
        await evaluate(flag, context: context, default: .double(defaultValue), type: .float, timeout: timeout)
            .value?.number ?? defaultValue
    }

    /// An object (or array) flag's value, or `default`.
    public func object(
        _ flag: String, context: JSONObject = [:], default defaultValue: JSONValue, timeout: Duration? = nil
    ) async -> JSONValue {
        let value = await evaluate(flag, context: context, default: defaultValue, type: .object, timeout: timeout).value
        switch value {
        case .object?, .array?: return value!
        default: return defaultValue
        }
    }

    // MARK: - The daemon (these throw)

    /// The health check: which version of the flag file is served, and how many flags.
    public func ping(timeout: Duration? = nil) async throws(GuidonClientError) -> GuidonPing {
        try await perform(Ping(), timeout: timeout).get()
    }

    /// Counts `amount` against the metered `feature`'s limits for the context's tenant
    /// (`tenantId`; the user is `targetingKey`), atomically, and says whether to go ahead. A
    /// repeat with the same `idempotencyKey` within 24 hours gets the first answer again. Not
    /// retried on another connection when one closes before the reply (it may have counted).
    public func consume(
        _ feature: String, context: JSONObject, amount: Int64 = 1, idempotencyKey: String? = nil, timeout: Duration? = nil
    ) async throws(GuidonClientError) -> GuidonConsumption {
        try await perform(Consume(feature: feature, context: context, amount: amount, idempotencyKey: idempotencyKey), timeout: timeout).get()
    }

    /// How much of `feature`'s limits the context's tenant (and user) has used, counting nothing.
    public func usage(_ feature: String, context: JSONObject, timeout: Duration? = nil) async throws(GuidonClientError) -> GuidonUsage {
        try await perform(Usage(feature: feature, context: context), timeout: timeout).get()[0]
    }

    /// Every metered feature's usage for the context's tenant (and user).
    public func usage(context: JSONObject, timeout: Duration? = nil) async throws(GuidonClientError) -> [GuidonUsage] {
        try await perform(Usage(feature: nil, context: context), timeout: timeout).get()
    }

    /// What the daemon serves, since when, and how its last reload went.
    public func status(timeout: Duration? = nil) async throws(GuidonClientError) -> GuidonStatus {
        try await perform(Status(), timeout: timeout).get()
    }

    /// Every flag, in document order, with its variants and metadata.
    public func list(timeout: Duration? = nil) async throws(GuidonClientError) -> GuidonFlagList {
        try await perform(List(), timeout: timeout).get()
    }

    /// What `tenant` has: every feature's value, whether it is entitled and why (guidond started
    /// with `--entitlements`). An unknown tenant is `found == false` with every default. Throws a
    /// `.daemonError` `NOT_FOUND` when the daemon serves no entitlements file.
    public func entitlements(tenant: String, timeout: Duration? = nil) async throws(GuidonClientError) -> GuidonTenantEntitlements {
        try await perform(Entitlements(tenant: tenant), timeout: timeout).get()
    }

    /// A page of the tenants, in document order: `limit` 1–1000 (default 100), `after` the
    /// previous page's `next`; filters `plan` and `status`. A bad value, or a cursor that names
    /// no tenant any more, is a `.daemonError` `INVALID_REQUEST` saying so.
    public func tenants(
        after: String? = nil, limit: Int? = nil, plan: String? = nil, status: String? = nil, timeout: Duration? = nil
    ) async throws(GuidonClientError) -> GuidonTenantPage {
        try await perform(Tenants(after: after, limit: limit, plan: plan, status: status), timeout: timeout).get()
    }

    /// The configuration changes, as they happen; see `GuidonWatch`.
    public func watch() -> GuidonWatch {
        GuidonWatch(client: self)
    }

    // MARK: - Internal

    /// Sends one operation and reads its reply, within `timeout` (connecting included). A request
    /// whose connection closed before the reply is sent again once, on a fresh connection, if the
    /// operation only reads and time remains: a daemon restart then costs the caller nothing.
    func perform<Operation: GuidonOperation>(
        _ operation: Operation, timeout: Duration?
    ) async -> Result<Operation.Reply, GuidonClientError> {
        let timeout = timeout ?? configuration.timeout
        let deadline = NIODeadline.now() + TimeAmount(timeout)
        if Task.isCancelled { return .failure(GuidonClientError(.cancelled, "the calling task was cancelled")) }
        var members: [UInt8] = []
        members.reserveCapacity(128)
        operation.encodeMembers(into: &members)
        var resent = false
        while true {
            let connection: Connection
            switch await pool.lease() {
            case .success(let leased): connection = leased
            case .failure(let error): return .failure(error)
            }
            switch await connection.request(members, deadline: deadline) {
            case .success(let reply):
                return Result { () throws(GuidonClientError) in try operation.decode(reply) }
            case .failure(let error)
            where error.code == .connectionClosed && operation.isIdempotent && !resent && NIODeadline.now() < deadline:
                resent = true
            case .failure(var error):
                if error.code == .timeout {
                    error.message = "no reply from guidond on \(configuration.socket) within \(timeout.formattedMilliseconds)"
                }
                return .failure(error)
            }
        }
    }

    /// Registers a `watch` stream's mailbox, so that `shutdown()` ends the stream; false once
    /// the client is shut down.
    func register(_ mailbox: WatchMailbox) -> Bool {
        lifecycle.withLockedValue { state in
            guard case .running(var watches) = state else { return false }
            watches[ObjectIdentifier(mailbox)] = mailbox
            state = .running(watches: watches)
            return true
        }
    }

    func unregister(_ mailbox: WatchMailbox) {
        lifecycle.withLockedValue { state in
            guard case .running(var watches) = state else { return }
            watches[ObjectIdentifier(mailbox)] = nil
            state = .running(watches: watches)
        }
    }
}
