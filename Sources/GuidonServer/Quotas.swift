import CLinux
import GuidonCalendar
import GuidonEngine
import GuidonEntitlements
import GuidonJSON
import GuidonMetrics
import GuidonProtocol
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
///
/// Started `on` an event loop (from that loop's thread), a Redis `consume` goes through the
/// loop's own connection (`QuotaLoopLink`) and `deliver` is called on that loop; without one
/// (the admin socket), through the store's pool, on its poll thread.
struct QuotaDeferral {
    typealias Deliver = @Sendable ([UInt8], QuotaOutcome?) -> Void
    let run: @Sendable (_ loop: EventLoop?, _ deliver: @escaping Deliver) -> Void

    func start(_ deliver: @escaping Deliver) { run(nil, deliver) }
    func start(on loop: EventLoop, _ deliver: @escaping Deliver) { run(loop, deliver) }
}

/// What a `consume` or `usage` is about, read from the request.
private struct QuotaAsk {
    var feature: String?
    var tenant: String
    var user: String?
}

// MARK: - Answering

extension QuotaRequest {
    /// What a connection's `Responder` keeps between `consume`s (filled in place by each).
    static let kept = QuotaRequest(subject: QuotaSubject(feature: "", tenant: ""), limits: [], now: 0)
}

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
        let now = QuotaService.now()
        if op == .consume {
            // The feature is looked up once: `withLimits` answers nil for an unknown one.
            return consume(
                request.feature!, tenant: tenant, user: user, amount: request.amount, key: request.idempotencyKey, now: now,
                quotas: quotas, entitlements: entitlements, backend: backend, id: id, into: &replies)
        }
        if let feature = request.feature, !entitlements.hasFeature(feature) {
            return fail(.invalidRequest, Self.unknownFeature(feature))
        }
        guard let zone = zoneRules(for: entitlements, quotas) else {
            return fail(.unavailable, Self.zoneUnavailable(entitlements))
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
        windowMemo.reset()
        return zoneCache
    }

    private static func unknownFeature(_ feature: String) -> String {
        "unknown feature \"\(feature)\": the entitlements document has no such feature"
    }

    private static func zoneUnavailable(_ entitlements: Entitlements) -> String {
        "the entitlements document's time zone \"\(entitlements.timezone)\" cannot be loaded"
    }

    private mutating func consume(
        _ feature: String, tenant: String, user: String?, amount: Int64, key: String?, now: Int64, quotas: QuotaService,
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
        // The kept request, filled in place: its limits' and windows' storage is reused, and
        // the store borrows it (a request built here was copied once more on its way).
        quotaRequest.limits.removeAll(keepingCapacity: true)
        let found = entitlements.withLimits(tenant: tenant, feature: feature, now: now) { entitled, _, applying in
            if entitled { for limit in applying { quotaRequest.limits.append(QuotaLimit(limit)) } }
            return entitled
        }
        guard let entitled = found else {
            refuse(RequestError(code: .invalidRequest, message: Self.unknownFeature(feature), id: id), into: &replies)
            return nil
        }
        guard let zone = zoneRules(for: entitlements, quotas) else {
            refuse(RequestError(code: .unavailable, message: Self.zoneUnavailable(entitlements), id: id), into: &replies)
            return nil
        }
        guard entitled else {
            count(.denied)
            countDenial(entitlements, feature: feature, tenant: tenant, now: now)
            QuotaReply.notEntitled(id: id, feature: feature, tenant: tenant, entitlements: entitlements, now: now, into: &replies)
            return nil
        }
        guard !quotaRequest.limits.isEmpty else {
            count(.allowed)
            QuotaReply.unlimited(id: id, feature: feature, into: &replies)
            return nil
        }
        quotaRequest.subject.feature = feature
        quotaRequest.subject.tenant = tenant
        quotaRequest.subject.user = user
        if quotaRequest.zone.name != zone.name { quotaRequest.zone = zone }
        quotaRequest.amount = amount
        quotaRequest.idempotencyKey = key
        quotaRequest.now = now
        windowMemo.windows(of: quotaRequest.limits, at: now, in: zone, into: &quotaRequest.windows)
        switch backend {
        case .immediate(let store):
            do throws(QuotaStoreError) {
                let answer = try store.consume(quotaRequest)
                count(QuotaOutcome.of(answer))
                QuotaReply.consumed(id: id, feature: feature, answer, resetAt: &resetAtText, into: &replies)
            } catch {
                refuse(QuotaReply.error(error, id: id), into: &replies)
            }
            return nil
        case .deferred(let store):
            let deferred = quotaRequest
            // The deferred request holds these now: the kept one starts new storage.
            quotaRequest.limits = []
            quotaRequest.windows = []
            return QuotaDeferral { loop, deliver in
                let completion: QuotaCompletion<QuotaAnswer> = { result in
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
                if let loop, let link = quotas.loopSender(on: loop, store: store) {
                    store.consume(deferred, via: link.connection, completion: completion)
                } else {
                    store.consume(deferred, completion: completion)
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
        let deferral = QuotaDeferral { _, deliver in
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

    /// `resetAt`'s text for the instant last written, kept by a connection's `Responder`: every
    /// consume of one window writes the same 20 bytes.
    struct ResetAtText {
        var instant = Int64.min
        var text: (UInt64, UInt64, UInt32) = (0, 0, 0)
    }

    /// A `consume` reply. Written in three copies (the members before `feature`, the feature's
    /// string, the rest), the numbers and words straight into a stack buffer: appending each
    /// piece to the reply array cost as much as the store's counting (perf, 16 × 16).
    static func consumed(id: JSONValue?, feature: String, _ answer: QuotaAnswer, resetAt: inout ResetAtText, into out: inout [UInt8]) {
        if let id {
            Writer.append("{\"id\":", to: &out)
            JSONWriter.write(id, into: &out)
            Writer.append(answer.allowed ? ",\"allowed\":true,\"feature\":" : ",\"allowed\":false,\"reason\":", to: &out)
        } else {
            Writer.append(answer.allowed ? "{\"allowed\":true,\"feature\":" : "{\"allowed\":false,\"reason\":", to: &out)
        }
        if !answer.allowed {
            Writer.append(answer.degraded ? "\"STORE_UNAVAILABLE\",\"feature\":" : "\"LIMIT_EXCEEDED\",\"feature\":", to: &out)
        }
        JSONWriter.writeString(feature, into: &out)
        // At most 3 × (10 + 20) + 32 + 30 + 14 + 14 + 11 + 18 + 16 + 19 bytes: 384 hold it.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 384) { buffer in
            var w = RawWriter(buffer.baseAddress!)
            w.text(",\"used\":")
            w.int(answer.used)
            w.text(",\"limit\":")
            w.int(answer.limit)
            w.text(",\"remaining\":")
            w.int(answer.remaining)
            w.text(",\"resetAt\":\"")
            let t = answer.resetAt
            if resetAt.instant != t {
                resetAt.instant = t
                withUnsafeMutableBytes(of: &resetAt.text) { Self.writeTimestamp(t, $0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
            }
            withUnsafeBytes(of: resetAt.text) { w.bytes($0.baseAddress!, 20) }
            w.text("\",\"window\":\"")
            w.text(word(answer.window))
            w.text("\",\"scope\":")
            w.text(answer.status.limit.scope == .user ? "\"user\",\"mode\":\"" : "\"tenant\",\"mode\":\"")
            w.text(word(answer.mode))
            w.text("\"")
            if answer.status.over { w.text(",\"over\":true") }
            if answer.shadowOver { w.text(",\"shadowOver\":true") }
            if answer.replayed { w.text(",\"replayed\":true") }
            w.text(answer.degraded ? ",\"degraded\":true}\n" : ",\"degraded\":false}\n")
            out.append(contentsOf: UnsafeBufferPointer(start: buffer.baseAddress, count: w.count))
        }
    }

    /// `consumed` with a `resetAt` text of its own (a reply written off the loop).
    static func consumed(id: JSONValue?, feature: String, _ answer: QuotaAnswer, into out: inout [UInt8]) {
        var resetAt = ResetAtText()
        consumed(id: id, feature: feature, answer, resetAt: &resetAt, into: &out)
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` (20 bytes) at `to`.
    static func writeTimestamp(_ t: Int64, _ to: UnsafeMutablePointer<UInt8>) {
        let (days, seconds) = CivilDate.split(unixSeconds: t)
        let (y, m, d) = CivilDate.civilFromDays(days)
        var i = 0
        func digits(_ n: Int64, _ width: Int) {
            var n = n
            var k = width - 1
            while k >= 0 {
                to[i + k] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: n % 10)
                n /= 10
                k -= 1
            }
            i += width
        }
        func put(_ c: Unicode.Scalar) {
            to[i] = UInt8(ascii: c)
            i += 1
        }
        digits(y, 4)
        put("-")
        digits(m, 2)
        put("-")
        digits(d, 2)
        put("T")
        digits(seconds / 3600, 2)
        put(":")
        digits(seconds / 60 % 60, 2)
        put(":")
        digits(seconds % 60, 2)
        put("Z")
    }

    /// Bytes into a buffer the caller sized.
    struct RawWriter {
        let base: UnsafeMutablePointer<UInt8>
        var count = 0

        init(_ base: UnsafeMutablePointer<UInt8>) { self.base = base }

        @inline(__always)
        mutating func text(_ s: StaticString) {
            (base + count).update(from: s.utf8Start, count: s.utf8CodeUnitCount)
            count += s.utf8CodeUnitCount
        }

        @inline(__always)
        mutating func bytes(_ p: UnsafeRawPointer, _ n: Int) {
            UnsafeMutableRawPointer(base + count).copyMemory(from: p, byteCount: n)
            count += n
        }

        /// A decimal integer, or `null`.
        mutating func int(_ value: Int64?) {
            guard let value else { return text("null") }
            var magnitude = value.magnitude
            if value < 0 {
                base[count] = UInt8(ascii: "-")
                count += 1
            }
            // Two digits at a time from a local table (a static one is a lazy global, checked on
            // every access), backwards into 24 bytes of stack, then one copy. Counting the digits
            // first and dividing by 100 in a loop took ~240 instructions for a 16-digit count.
            let pairs: StaticString = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"
            let table = pairs.utf8Start
            var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
            let written = withUnsafeMutableBytes(of: &digits) { scratch -> Int in
                let end = scratch.baseAddress!.assumingMemoryBound(to: UInt8.self) + 24
                var k = end
                while magnitude >= 100 {
                    let pair = Int(magnitude % 100)
                    magnitude /= 100
                    k -= 2
                    k[0] = table[pair &* 2]
                    k[1] = table[pair &* 2 &+ 1]
                }
                if magnitude >= 10 {
                    k -= 2
                    k[0] = table[Int(magnitude) &* 2]
                    k[1] = table[Int(magnitude) &* 2 &+ 1]
                } else {
                    k -= 1
                    k[0] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude)
                }
                let n = k.distance(to: end)
                (base + count).update(from: k, count: n)
                return n
            }
            count += written
        }
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
