public import GuidonRESP
public import Logging
import NIOConcurrencyHelpers

/// Counts shared by every guidond of a fleet, in one Redis: `consume` is one `EVALSHA` of
/// `QuotaScript` (atomic in Redis), pipelined over a few connections of a `RESPClient`.
///
/// No caller waits longer than `timeout` (50 ms): past it, or at once while Redis is down
/// (the client backs off between reconnection attempts), each hard limit's `failMode` decides
/// and the answer says `degraded`; such answers are counted and logged at most once every 10 s.
/// The client reconnects by itself, so answers come from Redis again as soon as it is back.
/// Completions are called on the client's thread.
public final class RedisQuotaStore: QuotaStore {
    public struct Configuration: Sendable {
        public var address: RedisAddress
        /// The longest a request may wait for Redis (default 50 ms).
        public var timeout: Duration
        /// Connections to Redis (default 2).
        public var connections: Int
        /// Prefix of every key this store writes (default `gq`).
        public var keyPrefix: String
        /// A count's key lives this long after its window ends (default 60 s).
        public var expiryGrace: Int64
        /// Reconnection backoff and limits of each connection.
        public var connection: RESPConnectionConfiguration

        public init(
            address: RedisAddress, timeout: Duration = .milliseconds(50), connections: Int = 2, keyPrefix: String = "gq",
            expiryGrace: Int64 = 60, connection: RESPConnectionConfiguration = RESPConnectionConfiguration()
        ) {
            self.address = address
            self.timeout = timeout
            self.connections = connections
            self.keyPrefix = keyPrefix
            self.expiryGrace = expiryGrace
            self.connection = connection
        }
    }

    public let configuration: Configuration
    private let client: RESPClient
    private let logger: Logger
    private let timeoutNanos: UInt64
    private let stats = NIOLockedValueBox(QuotaStoreStatistics())
    private let degradedLog = NIOLockedValueBox(RateLimitedLog())

    public init(configuration: Configuration, logger: Logger) throws(QuotaStoreError) {
        self.configuration = configuration
        self.logger = logger
        let (seconds, attoseconds) = configuration.timeout.components
        let timeout = max(2_000_000, UInt64(max(0, seconds)) &* 1_000_000_000 &+ UInt64(max(0, attoseconds) / 1_000_000_000))
        // The client fails a command up to one tick after its deadline: the deadline is one tick
        // short of the timeout, so that no caller waits longer than the timeout.
        let tick = min(5_000_000, timeout / 5)
        timeoutNanos = timeout - tick
        do throws(RESPError) {
            client = try RESPClient(configuration: RESPClient.Configuration(
                address: configuration.address, connections: configuration.connections, connection: configuration.connection, tick: tick))
        } catch {
            throw QuotaStoreError(.invalidAddress, error.message)
        }
    }

    /// Starts the client and loads the script (answers do not wait for it: `EVALSHA` falls
    /// back to `EVAL` when Redis does not know the script).
    public func start() {
        client.start()
        client.send(RESPCommand.encode(["SCRIPT", "LOAD", QuotaScript.source]), timeout: .seconds(5)) { [logger] result in
            if case .failure(let error) = result { logger.info("quota: Redis script not loaded yet (\(error)); it will load on first use") }
        }
    }

    public func shutdown() { client.shutdown() }

    /// A connection to this store's Redis for an event loop to drive (one per loop; see
    /// `consume(_:via:completion:)`), with the pool's reconnection and timing rules.
    public func makeLoopConnection() throws(RESPError) -> RESPLoopConnection {
        try RESPLoopConnection(address: configuration.address, configuration: configuration.connection)
    }

    public var statistics: QuotaStoreStatistics { stats.withLockedValue { $0 } }

    // MARK: - Keys

    private func appendPart(_ s: String, to key: inout String) {
        key += String(s.utf8.count)
        key += ":"
        key += s
    }

    func counterKey(_ subject: QuotaSubject, _ limit: QuotaLimit, _ window: CalendarWindow) -> String {
        var key = configuration.keyPrefix + ":c:"
        appendPart(subject.feature, to: &key)
        appendPart(subject.tenant, to: &key)
        appendPart(limit.scope == .user ? subject.user ?? "" : "", to: &key)
        key += limit.per.rawValue + ":" + String(window.start)
        return key
    }

    func receiptKey(_ subject: QuotaSubject, _ idempotencyKey: String) -> String {
        var key = configuration.keyPrefix + ":r:"
        appendPart(subject.feature, to: &key)
        appendPart(subject.tenant, to: &key)
        appendPart(subject.user ?? "", to: &key)
        appendPart(idempotencyKey, to: &key)
        return key
    }

    // MARK: - consume

    /// What one `consume` sends, and how limits map to counts.
    struct Prepared: Sendable {
        /// The `EVALSHA` command, encoded.
        var command: [UInt8]
        var windows: [CalendarWindow]
        /// Limit i reads count `countOf[i]` (limits of one unit and scope share one).
        var countOf: [Int]
    }

    /// The script's command for `request`, written straight as RESP (`EVALSHA` or, with
    /// `sha: false`, `EVAL`): keys, then the arguments `QuotaScript` reads. Its keys are
    /// `counterKey` and `receiptKey`, written as bytes without a `String` in between (this
    /// and `parseReply` were most of the store's own time per request).
    func prepare(_ request: QuotaRequest, sha: Bool = true) -> Prepared {
        let limits = request.limits
        let windows = limits.indices.map { request.window($0) }
        var countOf = [Int](repeating: 0, count: limits.count)
        var counts = 0
        for i in limits.indices {
            let owner = QuotaDecision.counterOwner(limits, i)
            if owner == i {
                countOf[i] = counts
                counts += 1
            } else {
                countOf[i] = countOf[owner]
            }
        }
        let receipt = request.idempotencyKey != nil
        let keyCount = counts + (receipt ? 1 : 0)
        var out: [UInt8] = []
        out.reserveCapacity(512)
        RESPCommand.appendHeader(count: 3 + keyCount + 6 + 3 * counts + 3 * limits.count, to: &out)
        RESPCommand.appendArgument(sha ? "EVALSHA" : "EVAL", to: &out)
        RESPCommand.appendArgument(sha ? QuotaScript.sha : QuotaScript.source, to: &out)
        RESPCommand.appendArgument(Int64(keyCount), to: &out)
        var key: [UInt8] = []
        key.reserveCapacity(128)
        let subject = request.subject
        for i in limits.indices where QuotaDecision.counterOwner(limits, i) == i {
            key.removeAll(keepingCapacity: true)
            appendKeyStart("c", to: &key)
            appendPart(subject.feature, to: &key)
            appendPart(subject.tenant, to: &key)
            appendPart(limits[i].scope == .user ? subject.user ?? "" : "", to: &key)
            key.append(contentsOf: limits[i].per.rawValue.utf8)
            key.append(UInt8(ascii: ":"))
            RESPCommand.appendDecimal(windows[i].start, to: &key)
            key.withUnsafeBytes { RESPCommand.appendArgument(bytes: $0, to: &out) }
        }
        if let idempotencyKey = request.idempotencyKey {
            key.removeAll(keepingCapacity: true)
            appendKeyStart("r", to: &key)
            appendPart(subject.feature, to: &key)
            appendPart(subject.tenant, to: &key)
            appendPart(subject.user ?? "", to: &key)
            appendPart(idempotencyKey, to: &key)
            key.withUnsafeBytes { RESPCommand.appendArgument(bytes: $0, to: &out) }
        }
        for n in [request.amount, request.now, Int64(counts), Int64(limits.count), receipt ? 1 : 0, QuotaRequest.idempotencyWindow] {
            RESPCommand.appendArgument(n, to: &out)
        }
        for i in limits.indices where QuotaDecision.counterOwner(limits, i) == i {
            // Relative to the request's clock, not Redis's: the window was computed on this host.
            RESPCommand.appendArgument(max(1, windows[i].end + configuration.expiryGrace - request.now), to: &out)
            RESPCommand.appendArgument(windows[i].start, to: &out)
            RESPCommand.appendArgument(windows[i].end, to: &out)
        }
        for i in limits.indices {
            RESPCommand.appendArgument(Int64(countOf[i] + 1), to: &out)
            RESPCommand.appendArgument(limits[i].max, to: &out)
            RESPCommand.appendArgument(limits[i].mode == .hard ? "h" : limits[i].mode == .soft ? "s" : "w", to: &out)
        }
        return Prepared(command: out, windows: windows, countOf: countOf)
    }

    private func appendKeyStart(_ kind: StaticString, to key: inout [UInt8]) {
        key.append(contentsOf: configuration.keyPrefix.utf8)
        key.append(UInt8(ascii: ":"))
        key.append(kind.utf8Start.pointee)
        key.append(UInt8(ascii: ":"))
    }

    private func appendPart(_ s: String, to key: inout [UInt8]) {
        RESPCommand.appendDecimal(Int64(s.utf8.count), to: &key)
        key.append(UInt8(ascii: ":"))
        key.append(contentsOf: s.utf8)
    }

    /// The `EVALSHA` a `consume` of `request` sends (for benchmarks: the bare round trip it is
    /// measured against).
    public func scriptCommand(for request: QuotaRequest) -> [UInt8] {
        prepare(request).command
    }

    public func consume(_ request: QuotaRequest, completion: @escaping QuotaCompletion<QuotaAnswer>) {
        consume(request, via: client, completion: completion)
    }

    /// `consume` through `sender` rather than the store's own pool: a daemon's event loop sends
    /// through a connection it drives itself (`RESPLoopConnection`, see `makeLoopConnection`), so
    /// that the reply is read, and `completion` called, on that loop. Answers as `consume` does.
    public func consume(_ request: QuotaRequest, via sender: any RESPSender, completion: @escaping QuotaCompletion<QuotaAnswer>) {
        do throws(QuotaStoreError) { try QuotaDecision.validate(request) } catch { return completion(.failure(error)) }
        let prepared = prepare(request)
        let deadline = RESPClient.now() &+ timeoutNanos
        sender.send(prepared.command, deadline: deadline) { [self] result in
            if case .failure(let error) = result, error.code == .serverError, error.message.hasPrefix("NOSCRIPT") {
                // Redis restarted or its scripts were flushed: EVAL loads the script again.
                sender.send(prepare(request, sha: false).command, deadline: deadline) { [self] result in
                    finish(result, request, prepared.windows, prepared.countOf, completion)
                }
                return
            }
            finish(result, request, prepared.windows, prepared.countOf, completion)
        }
    }

    private func finish(
        _ result: Result<RESPValue, RESPError>, _ request: QuotaRequest, _ windows: [CalendarWindow], _ countOf: [Int],
        _ completion: QuotaCompletion<QuotaAnswer>
    ) {
        switch result {
        case .success(let value):
            let reply: QuotaAnswer?
            switch value {
            case .bulkString(let bytes): reply = Self.parseReply(bytes, request, countOf)
            case .simpleString(let text): reply = Self.parseReply(text, request, countOf)
            default: reply = nil
            }
            guard let answer = reply else {
                return degrade(RESPError(.malformedReply, "unexpected reply to the quota script: \(value)"), request, windows, completion)
            }
            stats.withLockedValue { stats in
                if answer.replayed { stats.replayed &+= 1 } else if answer.allowed { stats.consumed &+= 1 } else { stats.denied &+= 1 }
            }
            completion(.success(answer))
        case .failure(let error) where error.code == .serverError && error.message.hasPrefix("OVERFLOW"):
            completion(.failure(QuotaStoreError(.overflow, "feature '\(request.subject.feature)': \(error.message)")))
        case .failure(let error):
            degrade(error, request, windows, completion)
        }
    }

    private func degrade(_ error: RESPError, _ request: QuotaRequest, _ windows: [CalendarWindow], _ completion: QuotaCompletion<QuotaAnswer>) {
        stats.withLockedValue { $0.degraded &+= 1 }
        if let suppressed = degradedLog.withLockedValue({ $0.shouldLog(now: RESPClient.now()) }) {
            logger.warning("quota: Redis at \(configuration.address) did not answer in time; each limit's failMode decides (\(error))\(suppressed > 0 ? "; \(suppressed) more such answers since the last report" : "")")
        }
        completion(.success(QuotaDecision.degraded(request.limits) { windows[$0] }))
    }

    /// Reads the script's reply back into an answer.
    static func parseReply(_ text: String, _ request: QuotaRequest, _ countOf: [Int]) -> QuotaAnswer? {
        parseReply(Array(text.utf8), request, countOf)
    }

    /// Reads the script's reply (`n:` or `r:` and comma-separated decimal integers) back into
    /// an answer, from its bytes.
    static func parseReply(_ bytes: [UInt8], _ request: QuotaRequest, _ countOf: [Int]) -> QuotaAnswer? {
        guard bytes.count >= 2, bytes[1] == UInt8(ascii: ":"), bytes[0] == UInt8(ascii: "r") || bytes[0] == UInt8(ascii: "n") else { return nil }
        let replayed = bytes[0] == UInt8(ascii: "r")
        let countCount = (countOf.max() ?? -1) + 1
        var numbers: [Int64] = []
        numbers.reserveCapacity(1 + 3 * countCount)
        var i = 2
        while true {
            // One field: an optional minus, then 1 to 19 digits, without overflow.
            var negative = false
            if i < bytes.count, bytes[i] == UInt8(ascii: "-") {
                negative = true
                i += 1
            }
            var value: Int64 = 0
            var digits = 0
            while i < bytes.count, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") {
                let (times10, o1) = value.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times10.addingReportingOverflow(Int64(bytes[i] - UInt8(ascii: "0")))
                guard !o1, !o2 else { return nil }
                value = sum
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            numbers.append(negative ? -value : value)
            if i == bytes.count { break }
            guard bytes[i] == UInt8(ascii: ","), i + 1 < bytes.count else { return nil }
            i += 1
        }
        guard numbers.count == 1 + 3 * countCount else { return nil }
        let refusedAt = Int(numbers[0])
        let refused = refusedAt == 0 ? nil : refusedAt - 1
        let limits = request.limits
        guard refused.map({ limits.indices.contains($0) }) ?? true else { return nil }
        func used(_ i: Int) -> Int64 { numbers[1 + 3 * countOf[i]] }
        func window(_ i: Int) -> CalendarWindow {
            CalendarWindow(unit: limits[i].per, start: numbers[2 + 3 * countOf[i]], end: numbers[3 + 3 * countOf[i]])
        }
        let counted = refused == nil
        var answer = QuotaDecision.answer(
            limits, amount: request.amount, refusedBy: refused, window: window,
            before: { counted ? used($0) - request.amount : used($0) }, after: used)
        answer.replayed = replayed
        return answer
    }

    // MARK: - usage and reset

    public func usage(_ request: QuotaUsageRequest, completion: @escaping QuotaCompletion<[QuotaLimitStatus]>) {
        do throws(QuotaStoreError) { try QuotaDecision.validate(request.subject, request.limits) } catch { return completion(.failure(error)) }
        let limits = request.limits
        let windows = limits.map { request.zone.window($0.per, containing: request.now) }
        let keys = limits.indices.map { counterKey(request.subject, limits[$0], windows[$0]) }
        client.send(RESPCommand.encode(["MGET"] + keys), deadline: RESPClient.now() &+ timeoutNanos) { [self] result in
            guard case .success(.array(let values)) = result, values.count == keys.count else {
                if case .failure(let error) = result { degradeUsage(error) }
                // Unknown counts: `used` is nil, as in a degraded consume.
                return completion(.success(limits.indices.map { i in
                    QuotaLimitStatus(index: i, limit: limits[i], used: nil, window: windows[i], over: false)
                }))
            }
            let used = values.map { $0.integer ?? 0 }
            completion(.success(QuotaDecision.usage(limits, window: { windows[$0] }, used: { used[$0] })))
        }
    }

    private func degradeUsage(_ error: RESPError) {
        if let suppressed = degradedLog.withLockedValue({ $0.shouldLog(now: RESPClient.now()) }) {
            logger.warning("quota: Redis at \(configuration.address) did not answer a usage read in time (\(error))\(suppressed > 0 ? "; \(suppressed) more since the last report" : "")")
        }
    }

    /// Deletes the keys of `subject` with `SCAN … MATCH` and `DEL`: a walk over the whole
    /// keyspace, acceptable for an audited admin operation (never on the request path).
    public func reset(_ subject: QuotaSubject, completion: @escaping QuotaCompletion<Int>) {
        do throws(QuotaStoreError) {
            try QuotaDecision.key(subject.feature, "feature")
            try QuotaDecision.key(subject.tenant, "tenant")
        } catch { return completion(.failure(error)) }
        var prefix = configuration.keyPrefix + ":c:"
        appendPart(subject.feature, to: &prefix)
        appendPart(subject.tenant, to: &prefix)
        if let user = subject.user { appendPart(user, to: &prefix) }
        scan(cursor: "0", pattern: Self.globEscaped(prefix) + "*", deleted: 0, completion: completion)
    }

    private func scan(cursor: String, pattern: String, deleted: Int, completion: @escaping QuotaCompletion<Int>) {
        let deadline = RESPClient.now() &+ 5_000_000_000
        client.send(RESPCommand.encode(["SCAN", cursor, "MATCH", pattern, "COUNT", "1000"]), deadline: deadline) { [self] result in
            guard case .success(.array(let parts)) = result, parts.count == 2, let next = parts[0].string, case .array(let found) = parts[1] else {
                return completion(.failure(QuotaStoreError(.unavailable, "reset: Redis did not answer SCAN: \(result)")))
            }
            let keys = found.compactMap(\.string)
            @Sendable func proceed(_ deletedNow: Int) {
                if next == "0" { completion(.success(deleted + deletedNow)) } else { scan(cursor: next, pattern: pattern, deleted: deleted + deletedNow, completion: completion) }
            }
            guard !keys.isEmpty else { return proceed(0) }
            client.send(RESPCommand.encode(["DEL"] + keys), deadline: deadline) { result in
                guard case .success(.integer(let n)) = result else {
                    return completion(.failure(QuotaStoreError(.unavailable, "reset: Redis did not answer DEL: \(result)")))
                }
                proceed(Int(n))
            }
        }
    }

    static func globEscaped(_ text: String) -> String {
        var out = ""
        for character in text {
            if "*?[]\\".contains(character) { out.append("\\") }
            out.append(character)
        }
        return out
    }
}

/// At most one line every 10 s, with the count of the ones held back.
struct RateLimitedLog {
    private var last: UInt64 = 0
    private var suppressed = 0

    /// The number held back since the last line when a line should be written now, else nil.
    mutating func shouldLog(now: UInt64) -> Int? {
        if last != 0 && now - last < 10_000_000_000 {
            suppressed += 1
            return nil
        }
        defer {
            last = now
            suppressed = 0
        }
        return suppressed
    }
}
