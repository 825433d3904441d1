import CLinux
import GuidonCalendar
import GuidonEngine
public import GuidonEntitlements
import GuidonJSON
import GuidonMetrics
public import GuidonProtocol
public import GuidonQuota
public import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// The daemon's usage limits: the started store, and the time zones of the entitlements
/// documents served. Limits themselves come from the served entitlements (`ServedConfig`), so a
/// reload that edits a limit applies to the next request.
public final class QuotaService: Sendable {
    /// The store; `nil` when usage limits are off (no `--state-dir`, no `--quota-store`).
    let backend: QuotaBackend?
    /// Why they are off, for the refusal.
    let offReason: String
    /// Zones by name, loaded once (`/usr/share/zoneinfo`): a connection asks once per document.
    private let zones = NIOLockedValueBox<[String: TimeZoneRules]>(["UTC": .utc])
    let logger: Logger

    /// Starts the configured store (the embedded store reads its state back here).
    public init(_ configuration: QuotaConfiguration?, logger: Logger) throws(QuotaStoreError) {
        self.logger = logger
        if let configuration {
            if case .embedded(let directory) = configuration.store {
                // `--state-dir` itself is made when missing (systemd makes it under StateDirectory=);
                // the store makes its `quota` directory inside.
                let parent = String(directory.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropLast()
                    .map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/"))
                if !parent.isEmpty && mkdir(parent, 0o700) != 0 && errno != EEXIST {
                    throw QuotaStoreError(.stateUnwritable, "cannot create the state directory \(parent): \(String(cString: strerror(errno)))")
                }
            }
            backend = try QuotaBackend.start(configuration, logger: logger)
            offReason = ""
        } else {
            backend = nil
            offReason = "usage limits are off: start guidond with --state-dir DIR (counts kept on this host) or --quota-store redis://HOST:PORT"
        }
    }

    /// Stops the store (the embedded store writes every count first). Safe to call twice.
    public func shutdown() { backend?.shutdown() }

    /// Counts since the start, for `/metrics` and `stats`; `nil` when off.
    var statistics: QuotaStoreStatistics? { backend?.store.statistics }

    /// The rules of zone `name` (an entitlements document's `timezone`, checked when it was
    /// compiled), or `nil` when it cannot be loaded.
    func zone(_ name: String) -> TimeZoneRules? {
        if let known = zones.withLockedValue({ $0[name] }) { return known }
        do throws(TimeZoneError) {
            let rules = try TimeZoneRules.load(name)
            zones.withLockedValue { $0[name] = rules }
            return rules
        } catch {
            logger.error("usage limits: cannot load the time zone \(name): \(error)")
            return nil
        }
    }

    /// Unix seconds.
    static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec)
    }
}

extension QuotaLimit {
    /// An entitlements document's limit as the stores take it.
    init(_ limit: Limit) {
        let unit: WindowUnit
        switch limit.per {
        case .minute: unit = .minute
        case .hour: unit = .hour
        case .day: unit = .day
        case .week: unit = .week
        case .month: unit = .month
        }
        self.init(
            per: unit, max: limit.max, scope: limit.scope == .user ? .user : .tenant,
            mode: limit.mode == .hard ? .hard : (limit.mode == .soft ? .soft : .shadow),
            failMode: limit.failMode == .closed ? .closed : .open)
    }
}

/// How a `consume` ended, for `guidon_quota_answers_total`.
enum QuotaOutcome: Int, Sendable {
    case allowed = 0, denied = 1, degraded = 2

    static func of(_ answer: QuotaAnswer) -> QuotaOutcome {
        answer.degraded ? .degraded : (answer.allowed ? .allowed : .denied)
    }
}

/// A reply that the store gives later (Redis): `start` asks it, and calls `deliver` once, on
/// any thread, with the reply line and (for a `consume`) its outcome.
struct QuotaDeferral {
    let start: @Sendable (_ deliver: @escaping @Sendable ([UInt8], QuotaOutcome?) -> Void) -> Void
}

/// What a `consume` or `usage` is about, read from the request.
private struct QuotaAsk {
    var feature: String?
    var tenant: String
    var user: String?
}

// MARK: - Answering

extension Responder {
    /// Answers a `consume` or `usage` into `replies`, or returns the deferral that will (the
    /// Redis store answers on its own thread).
    mutating func answerQuota(config: ServedConfig, into replies: inout [UInt8]) -> QuotaDeferral? {
        let id = request.id
        let op = request.op
        func fail(_ code: ProtocolErrorCode, _ message: String) -> QuotaDeferral? {
            refuse(RequestError(code: code, message: message, id: id), into: &replies)
            return nil
        }
        guard let quotas = service.quotas else { return fail(.unavailable, "usage limits are off in this guidond") }
        guard let backend = quotas.backend else { return fail(.unavailable, quotas.offReason) }
        guard let entitlements = config.entitlements else {
            return fail(.invalidRequest, "this guidond serves no entitlements document (guidond --entitlements FILE), so no feature is metered")
        }
        let (tenantValue, user) = request.withContext { context in (context.attributes[config.tenantAttribute], context.targetingKey) }
        guard let tenant = Entitlements.tenantID(from: tenantValue), !tenant.isEmpty else {
            let found = tenantValue.map { "a \($0.typeName)" } ?? "none"
            return fail(.invalidRequest, "\(op.rawValue) needs the tenant: the context's \"\(config.tenantAttribute)\", a string or an integer (found \(found))")
        }
        if let feature = request.feature, !entitlements.hasFeature(feature) {
            return fail(.invalidRequest, "unknown feature \"\(feature)\": the entitlements document has no such feature")
        }
        guard let zone = zoneRules(for: entitlements, quotas) else {
            return fail(.unavailable, "the entitlements document's time zone \"\(entitlements.timezone)\" cannot be loaded")
        }
        let now = QuotaService.now()
        if op == .consume {
            return consume(
                request.feature!, tenant: tenant, user: user, amount: request.amount, key: request.idempotencyKey, now: now,
                zone: zone, entitlements: entitlements, backend: backend, id: id, into: &replies)
        }
        return usage(
            request.feature, tenant: tenant, user: user, now: now, zone: zone, entitlements: entitlements, backend: backend, id: id,
            into: &replies)
    }

    /// The zone of `entitlements`' `timezone`, kept per connection.
    private mutating func zoneRules(for entitlements: Entitlements, _ quotas: QuotaService) -> TimeZoneRules? {
        let name = entitlements.timezone
        if let cached = zoneCache, cached.name == name { return cached }
        zoneCache = quotas.zone(name)
        return zoneCache
    }

    private mutating func consume(
        _ feature: String, tenant: String, user: String?, amount: Int64, key: String?, now: Int64, zone: TimeZoneRules,
        entitlements: Entitlements, backend: QuotaBackend, id: JSONValue?, into replies: inout [UInt8]
    ) -> QuotaDeferral? {
        let counters = self.counters
        let counting = self.counting
        let answersHandle = self.quotaAnswers
        func count(_ outcome: QuotaOutcome) {
            if counting, let counters, let answersHandle {
                counters._withUnsafeGuaranteedRef { $0.count(answersHandle, outcome.rawValue) }
            }
        }
        // The limits that apply, into the kept request's storage.
        var limits: [QuotaLimit] = []
        swap(&limits, &quotaLimits)
        limits.removeAll(keepingCapacity: true)
        let entitled = entitlements.withLimits(tenant: tenant, feature: feature, now: now) { entitled, _, applying in
            if entitled { for limit in applying { limits.append(QuotaLimit(limit)) } }
            return entitled
        } ?? false
        defer { quotaLimits = limits }
        guard entitled else {
            count(.denied)
            countDenial(entitlements, feature: feature, tenant: tenant, now: now)
            QuotaReply.notEntitled(id: id, feature: feature, tenant: tenant, entitlements: entitlements, now: now, into: &replies)
            return nil
        }
        guard !limits.isEmpty else {
            count(.allowed)
            QuotaReply.unlimited(id: id, feature: feature, into: &replies)
            return nil
        }
        let quotaRequest = QuotaRequest(
            subject: QuotaSubject(feature: feature, tenant: tenant, user: user), limits: limits, zone: zone, amount: amount,
            idempotencyKey: key, now: now)
        switch backend {
        case .immediate(let store):
            do throws(QuotaStoreError) {
                let answer = try store.consume(quotaRequest)
                count(QuotaOutcome.of(answer))
                QuotaReply.consumed(id: id, feature: feature, answer, into: &replies)
            } catch {
                refuse(QuotaReply.error(error, id: id), into: &replies)
            }
            return nil
        case .deferred(let store):
            limits = []  // the request holds them now
            return QuotaDeferral { deliver in
                store.consume(quotaRequest) { result in
                    var line: [UInt8] = []
                    switch result {
                    case .success(let answer):
                        QuotaReply.consumed(id: id, feature: feature, answer, into: &line)
                        deliver(line, QuotaOutcome.of(answer))
                    case .failure(let error):
                        ReplyEncoder.error(QuotaReply.error(error, id: id), into: &line)
                        deliver(line, nil)
                    }
                }
            }
        }
    }

    private mutating func usage(
        _ feature: String?, tenant: String, user: String?, now: Int64, zone: TimeZoneRules, entitlements: Entitlements,
        backend: QuotaBackend, id: JSONValue?, into replies: inout [UInt8]
    ) -> QuotaDeferral? {
        // (feature, entitled, limits) for the one feature, or every metered feature.
        // Limits counted per user are read only for a context with a targeting key.
        var asks: [(feature: String, entitled: Bool, limits: [QuotaLimit])] = []
        for key in feature.map({ [$0] }) ?? entitlements.features.map(\.key) {
            let found = entitlements.withLimits(tenant: tenant, feature: key, now: now) { entitled, _, applying in
                (entitled, entitled ? applying.map(QuotaLimit.init) : [], applying.count)
            }
            guard let (entitled, all, declared) = found else { continue }
            let limits = user == nil ? all.filter { $0.scope == .tenant } : all
            if feature != nil {
                if limits.isEmpty && !all.isEmpty {
                    refuse(RequestError(
                        code: .invalidRequest,
                        message: "feature \"\(key)\" is counted per user: give the context's targetingKey", id: id), into: &replies)
                    return nil
                }
                asks.append((key, entitled, limits))
            } else if entitled && declared > 0 && !limits.isEmpty {
                asks.append((key, entitled, limits))
            }
        }
        let requests = asks.map { ask in
            QuotaUsageRequest(subject: QuotaSubject(feature: ask.feature, tenant: tenant, user: user), limits: ask.limits, zone: zone, now: now)
        }
        let store = backend.store
        let single = feature != nil
        let entitledFlags = asks.map(\.entitled)
        let deferral = QuotaDeferral { deliver in
            let gather = Gather(count: requests.count) { results in
                var line: [UInt8] = []
                if let failure = results.lazy.compactMap({ $0.failure }).first {
                    ReplyEncoder.error(QuotaReply.error(failure, id: id), into: &line)
                } else {
                    let entries = zip(requests, results).enumerated().map { i, pair in
                        (pair.0.subject.feature, entitledFlags[i], pair.1.success ?? [])
                    }
                    QuotaReply.usage(id: id, tenant: tenant, single: single, entries, into: &line)
                }
                deliver(line, nil)
            }
            for (i, request) in requests.enumerated() {
                if request.limits.isEmpty {
                    gather.set(i, .success([]))
                } else {
                    store.usage(request) { gather.set(i, $0) }
                }
            }
        }
        if case .immediate = backend {
            // Answered on this thread, at once.
            let box = NIOLockedValueBox<[UInt8]>([])
            deferral.start { line, _ in box.withLockedValue { $0 = line } }
            replies += box.withLockedValue { $0 }
            return nil
        }
        return deferral
    }
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
    fileprivate var success: Success? {
        if case .success(let value) = self { return value }
        return nil
    }
}

/// Collects `count` results, given in any order on any thread, and calls `done` once with all.
private final class Gather: Sendable {
    private let state: NIOLockedValueBox<(left: Int, results: [Result<[QuotaLimitStatus], QuotaStoreError>])>
    private let done: @Sendable ([Result<[QuotaLimitStatus], QuotaStoreError>]) -> Void

    init(count: Int, done: @escaping @Sendable ([Result<[QuotaLimitStatus], QuotaStoreError>]) -> Void) {
        state = NIOLockedValueBox((count, Array(repeating: .success([]), count: count)))
        self.done = done
        if count == 0 { done([]) }
    }

    func set(_ index: Int, _ result: Result<[QuotaLimitStatus], QuotaStoreError>) {
        let finished: [Result<[QuotaLimitStatus], QuotaStoreError>]? = state.withLockedValue { state in
            state.results[index] = result
            state.left -= 1
            return state.left == 0 ? state.results : nil
        }
        if let finished { done(finished) }
    }
}

// MARK: - Replies

/// The reply lines of `consume` and `usage` (see protocol/PROTOCOL.md §3.12–3.13).
enum QuotaReply {
    /// A store's refusal as a protocol error: bad input is `INVALID_REQUEST`, a store that is not
    /// running or cannot be asked is `UNAVAILABLE`.
    static func error(_ error: QuotaStoreError, id: JSONValue?) -> RequestError {
        let code: ProtocolErrorCode = (error.code == .stopped || error.code == .unavailable) ? .unavailable : .invalidRequest
        return RequestError(code: code, message: error.message, id: id)
    }

    static func consumed(id: JSONValue?, feature: String, _ answer: QuotaAnswer, into out: inout [UInt8]) {
        var w = Writer(id: id, into: &out)
        w.bool("allowed", answer.allowed, &out)
        if !answer.allowed { w.word("reason", answer.degraded ? "STORE_UNAVAILABLE" : "LIMIT_EXCEEDED", &out) }
        w.string("feature", feature, &out)
        w.int("used", answer.used, &out)
        w.int("limit", answer.limit, &out)
        w.int("remaining", answer.remaining, &out)
        w.timestamp("resetAt", answer.resetAt, &out)
        w.word("window", word(answer.window), &out)
        w.word("scope", answer.status.limit.scope == .user ? "user" : "tenant", &out)
        w.word("mode", word(answer.mode), &out)
        if answer.status.over { w.bool("over", true, &out) }
        if answer.shadowOver { w.bool("shadowOver", true, &out) }
        if answer.replayed { w.bool("replayed", true, &out) }
        w.bool("degraded", answer.degraded, &out)
        w.end(&out)
    }

    static func word(_ unit: WindowUnit) -> StaticString {
        switch unit {
        case .minute: "minute"
        case .hour: "hour"
        case .day: "day"
        case .week: "week"
        case .month: "month"
        }
    }

    static func word(_ mode: QuotaLimit.Mode) -> StaticString {
        switch mode {
        case .hard: "hard"
        case .soft: "soft"
        case .shadow: "shadow"
        }
    }

    static func unlimited(id: JSONValue?, feature: String, into out: inout [UInt8]) {
        var w = Writer(id: id, into: &out)
        w.bool("allowed", true, &out)
        w.string("feature", feature, &out)
        w.bool("unlimited", true, &out)
        w.bool("degraded", false, &out)
        w.end(&out)
    }

    /// Denied by the entitlement: its `reason` and `metadata` as `eval` gives them.
    static func notEntitled(id: JSONValue?, feature: String, tenant: String, entitlements: Entitlements, now: Int64, into out: inout [UInt8]) {
        var w = Writer(id: id, into: &out)
        w.bool("allowed", false, &out)
        w.word("reason", "NOT_ENTITLED", &out)
        w.string("feature", feature, &out)
        _ = entitlements.withResult(feature: feature, tenant: tenant, now: now) { result in
            out.append(contentsOf: ",\"entitlement\":{\"reason\":\"".utf8)
            out.append(contentsOf: result.reason.rawValue.utf8)
            out.append(UInt8(ascii: "\""))
            // `served` is `,"value":…,"variant":…`; `metadata` the object.
            if let served = result.served { out.append(contentsOf: served) }
            out.append(contentsOf: ",\"metadata\":".utf8)
            out.append(contentsOf: result.metadata)
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: ",\"degraded\":false}\n".utf8)
    }

    /// One limit's state: `{"per":…,"scope":…,"mode":…,"failMode":…,"max":…,"used":…,"remaining":…,"resetAt":…,"over":…}`.
    static func limit(_ status: QuotaLimitStatus) -> JSONValue {
        [
            "per": .string(status.limit.per.rawValue), "scope": .string(status.limit.scope.rawValue),
            "mode": .string(status.limit.mode.rawValue), "failMode": .string(status.limit.failMode.rawValue),
            "max": .int(status.limit.max), "used": status.used.map(JSONValue.int) ?? .null,
            "remaining": status.remaining.map(JSONValue.int) ?? .null, "resetAt": .string(Timestamp.rfc3339(status.window.end)),
            "over": .bool(status.over),
        ]
    }

    /// One feature's usage: the limit with the least remaining first-class, every limit under `limits`.
    static func feature(_ feature: String, entitled: Bool, _ statuses: [QuotaLimitStatus]) -> JSONObject {
        var body: JSONObject = ["feature": .string(feature), "entitled": .bool(entitled)]
        let degraded = statuses.contains { $0.used == nil }
        if statuses.isEmpty {
            body["unlimited"] = .bool(entitled)
        } else {
            // The limit that decides next: the least remaining (hard and soft before shadow).
            let decisive = statuses.min { a, b in
                let rankA = a.limit.mode == .shadow ? 1 : 0, rankB = b.limit.mode == .shadow ? 1 : 0
                if rankA != rankB { return rankA < rankB }
                return (a.remaining ?? .max) < (b.remaining ?? .max)
            }!
            body["used"] = decisive.used.map(JSONValue.int) ?? .null
            body["limit"] = .int(decisive.limit.max)
            body["remaining"] = decisive.remaining.map(JSONValue.int) ?? .null
            body["resetAt"] = .string(Timestamp.rfc3339(decisive.window.end))
            body["window"] = .string(decisive.limit.per.rawValue)
            body["mode"] = .string(decisive.limit.mode.rawValue)
            body["limits"] = .array(statuses.map(limit))
        }
        body["degraded"] = .bool(degraded)
        return body
    }

    static func usage(id: JSONValue?, tenant: String, single: Bool, _ entries: [(String, Bool, [QuotaLimitStatus])], into out: inout [UInt8]) {
        if single, let entry = entries.first {
            var body = feature(entry.0, entitled: entry.1, entry.2)
            body["tenant"] = .string(tenant)
            ReplyEncoder.reply(id: id, body, into: &out)
            return
        }
        ReplyEncoder.reply(
            id: id,
            ["tenant": .string(tenant), "features": .array(entries.map { .object(feature($0.0, entitled: $0.1, $0.2)) })],
            into: &out)
    }

    /// Writes a reply object member by member into the reply buffer, without building it.
    struct Writer {
        private var first = true

        init(id: JSONValue?, into out: inout [UInt8]) {
            out.append(UInt8(ascii: "{"))
            if let id {
                Self.append("\"id\":", to: &out)
                JSONWriter.write(id, into: &out)
                first = false
            }
        }

        @inline(__always)
        static func append(_ text: StaticString, to out: inout [UInt8]) {
            out.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        }

        @inline(__always)
        private mutating func key(_ name: StaticString, _ out: inout [UInt8]) {
            out.append(first ? UInt8(ascii: "\"") : UInt8(ascii: ","))
            if !first { out.append(UInt8(ascii: "\"")) }
            first = false
            Self.append(name, to: &out)
            out.append(UInt8(ascii: "\""))
            out.append(UInt8(ascii: ":"))
        }

        mutating func bool(_ name: StaticString, _ value: Bool, _ out: inout [UInt8]) {
            key(name, &out)
            Self.append(value ? "true" : "false", to: &out)
        }

        mutating func int(_ name: StaticString, _ value: Int64?, _ out: inout [UInt8]) {
            key(name, &out)
            if let value { JSONWriter.writeInt(value, into: &out) } else { Self.append("null", to: &out) }
        }

        mutating func string(_ name: StaticString, _ value: String, _ out: inout [UInt8]) {
            key(name, &out)
            JSONWriter.writeString(value, into: &out)
        }

        /// A word that needs no escaping (an enum's raw value).
        mutating func word(_ name: StaticString, _ value: StaticString, _ out: inout [UInt8]) {
            key(name, &out)
            out.append(UInt8(ascii: "\""))
            Self.append(value, to: &out)
            out.append(UInt8(ascii: "\""))
        }

        /// `2026-12-08T00:00:00Z`, written as bytes.
        mutating func timestamp(_ name: StaticString, _ t: Int64, _ out: inout [UInt8]) {
            key(name, &out)
            let (days, seconds) = CivilDate.split(unixSeconds: t)
            let (y, m, d) = CivilDate.civilFromDays(days)
            func digits(_ n: Int64, _ width: Int) {
                var divisor: Int64 = 1
                for _ in 1..<width { divisor *= 10 }
                var n = n
                while divisor > 0 {
                    out.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: n / divisor % 10))
                    n %= divisor
                    divisor /= 10
                }
            }
            out.append(UInt8(ascii: "\""))
            digits(y, 4)
            out.append(UInt8(ascii: "-"))
            digits(m, 2)
            out.append(UInt8(ascii: "-"))
            digits(d, 2)
            out.append(UInt8(ascii: "T"))
            digits(seconds / 3600, 2)
            out.append(UInt8(ascii: ":"))
            digits(seconds / 60 % 60, 2)
            out.append(UInt8(ascii: ":"))
            digits(seconds % 60, 2)
            Self.append("Z\"", to: &out)
        }

        /// Closes the object and the line.
        func end(_ out: inout [UInt8]) {
            Self.append("}\n", to: &out)
        }
    }
}

// MARK: - The admin operation

/// `usage.reset` on the admin socket: forgets a tenant's counts of one feature (every window;
/// every user's, or one user's with `user`), audited like a write: `by` and `reason` are
/// required, and the record is written before the reply.
enum QuotaAdmin {
    static func handle(
        _ request: AdminRequest, service: ServiceContext, writer: DocumentWriter, from caller: Caller,
        reply: @escaping @Sendable ([UInt8]) -> Void
    ) {
        @Sendable func answer(_ result: Result<JSONObject, RequestError>) {
            var line: [UInt8] = []
            switch result {
            case .success(let body): ReplyEncoder.reply(id: request.id, body, into: &line)
            case .failure(let error): ReplyEncoder.error(error, into: &line)
            }
            reply(line)
        }
        func fail(_ code: ProtocolErrorCode, _ message: String) -> RequestError {
            RequestError(code: code, message: message, id: request.id)
        }
        guard request.verb == "reset" else {
            return answer(.failure(fail(.unknownOp, "unknown op \"\(request.op)\"; the usage operation of the admin socket is usage.reset (read usage with {\"op\":\"usage\"})")))
        }
        let subject: QuotaSubject
        do throws(RequestError) {
            let tenant = try request.string("tenant")
            let feature = try request.string("feature")
            let user = try request.optionalString("user")
            guard !tenant.isEmpty, !feature.isEmpty else { throw fail(.invalidArgument, "\"tenant\" and \"feature\" must not be empty") }
            guard let by = request.by, !by.isEmpty else { throw fail(.invalidArgument, "usage.reset needs \"by\": who resets (recorded in the audit log)") }
            guard let reason = request.reason, !reason.isEmpty else {
                throw fail(.invalidArgument, "usage.reset needs \"reason\": why (recorded in the audit log)")
            }
            _ = by
            _ = reason
            if let entitlements = service.store.current.entitlements, !entitlements.hasFeature(feature) {
                throw fail(.notFound, "unknown feature \"\(feature)\": the entitlements document has no such feature")
            }
            subject = QuotaSubject(feature: feature, tenant: tenant, user: user)
        } catch {
            var record = AuditRecord(
                socket: caller.socket, actor: caller.peer, request: request, action: request.op, document: "usage",
                subject: request.members["feature"]?.string, result: .invalid)
            record.error = error
            return writer.audit(record) { _ in answer(.failure(error)) }
        }
        guard let store = service.quotas?.backend?.store else {
            return answer(.failure(fail(.unavailable, service.quotas?.offReason ?? "usage limits are off in this guidond")))
        }
        store.reset(subject) { result in
            var record = AuditRecord(
                socket: caller.socket, actor: caller.peer, request: request, action: request.op, document: "usage",
                subject: subject.feature, result: .applied)
            let target: JSONObject = {
                var target: JSONObject = ["tenant": .string(subject.tenant), "feature": .string(subject.feature)]
                if let user = subject.user { target["user"] = .string(user) }
                return target
            }()
            record.before = .object(target)
            switch result {
            case .success(let removed):
                record.summary = "reset the usage of \(subject.feature) for tenant \(subject.tenant)\(subject.user.map { ", user \($0)" } ?? ""): \(removed) counts removed"
                record.after = ["removed": .int(Int64(removed))]
                writer.audit(record) { written in
                    var body = target
                    body["ok"] = .bool(true)
                    body["removed"] = .int(Int64(removed))
                    body["audited"] = .bool(written)
                    answer(.success(body))
                }
            case .failure(let error):
                let refusal = QuotaReply.error(error, id: request.id)
                record.result = .failed
                record.error = refusal
                writer.audit(record) { _ in answer(.failure(refusal)) }
            }
        }
    }
}
