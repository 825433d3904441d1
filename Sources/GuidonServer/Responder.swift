import GuidonEngine
import GuidonEntitlements
import GuidonJSON
import GuidonMetrics
public import GuidonProtocol
import GuidonQuota

/// What every connection shares.
public struct ServiceContext: Sendable {
    public var store: ConfigStore
    public var connections: Connections
    /// Longest accepted request line, in bytes, without its newline.
    public var maxLineBytes: Int
    /// How many reply bytes a connection may have waiting before it writes them out and,
    /// should the client not take them, stops answering (bounds the memory a burst of small
    /// requests with large replies can take).
    public var replyBudget: Int
    /// Builds the `status` reply body.
    public var status: @Sendable () -> DaemonStatus
    /// Where the admin socket is, to name it when a write is refused here (`nil`: there is none).
    public var adminSocketPath: String?
    /// Called on the loop with every write refused on this socket (the request line, the error
    /// and the connection's socket), to audit it off the loop.
    public var refusedWrite: (@Sendable (_ line: [UInt8], _ error: RequestError, _ socket: Int32) -> Void)?
    /// The counters, exposure events and HTTP listener; `nil`: nothing is counted (`stats`
    /// and `metrics` then show the configuration and connections only).
    public var observability: Observability?
    /// Usage limits (`consume`, `usage`, `usage.reset`); `nil`: off.
    public var quotas: QuotaService?

    public init(
        store: ConfigStore, connections: Connections, maxLineBytes: Int, replyBudget: Int = 256 * 1024,
        adminSocketPath: String? = nil, refusedWrite: (@Sendable ([UInt8], RequestError, Int32) -> Void)? = nil,
        observability: Observability? = nil, quotas: QuotaService? = nil, status: @escaping @Sendable () -> DaemonStatus
    ) {
        self.quotas = quotas
        self.store = store
        self.connections = connections
        self.maxLineBytes = maxLineBytes
        self.replyBudget = replyBudget
        self.adminSocketPath = adminSocketPath
        self.refusedWrite = refusedWrite
        self.observability = observability
        self.status = status
    }

    /// What `stats` and `metrics` show.
    func metricsReport() -> MetricsReport {
        if let observability { return observability.report(store: store, connections: connections) }
        let served = store.current
        let enabled = served.snapshot.flags.reduce(0) { $0 + ($1.state == .enabled ? 1 : 0) }
        return MetricsReport(
            counters: CounterSample(), counting: false, daemonVersion: Daemon.version, startedAt: served.loadedAt,
            uptimeSeconds: 0, connections: connections.count, configVersion: served.version, configLoadedAt: served.loadedAt,
            servedFlags: Set(served.snapshot.flags.map(\.key)), enabledFlags: enabled,
            disabledFlags: served.snapshot.count - enabled, reloads: store.reloadCounts, exposures: nil)
    }
}

/// Answers request lines into reply bytes: the protocol without the I/O.
///
/// Keeps one `Request` between lines, so that decoding reuses its storage and the usual
/// request allocates nothing.
///
/// Counts what it answers into its loop's counters (`LoopCounters`): the request's operation,
/// each evaluation by the flag's position, variant and reason, errors by type. For a flag that
/// asks for exposure events, the evaluation is noted while the reply is written and its event
/// recorded after (the context is read only then, and only for such flags).
struct Responder {
    let service: ServiceContext
    /// The connection's socket (for the credentials of a refused write), -1 for none.
    let socket: Int32
    private let parser = RequestParser()
    var request = Request(op: .ping)
    /// The loop's counters, unretained (its `LoopConfig` holds them for as long as the loop
    /// runs): a line's counts then cost no reference counting.
    private(set) var counters: Unmanaged<LoopCounters>?
    private(set) var counting: Bool
    private var tracking: Bool
    /// `guidon_quota_answers_total`, resolved once per loop.
    private(set) var quotaAnswers: CounterHandle?
    /// The zone of the entitlements document last asked for (see `answerQuota`).
    var zoneCache: TimeZoneRules?
    /// A `consume`'s request to the store, kept: each fills it in place (see `consume`).
    var quotaRequest = QuotaRequest.kept
    /// The windows last computed for this connection's `consume`s.
    var windowMemo = WindowMemo()
    /// The `resetAt` text written last (a consume reply).
    var resetAtText = QuotaReply.ResetAtText()
    /// Request lines answered since the session last asked (for the latency histogram).
    var answered = 0

    init(service: ServiceContext, socket: Int32 = -1, counters: LoopCounters? = nil) {
        self.service = service
        self.socket = socket
        self.counters = counters.map { Unmanaged.passUnretained($0) }
        counting = counters?.isCounting ?? false
        tracking = counters?.exposures != nil
        quotaAnswers = counters?.handle(MetricTable.quotaAnswers)
    }

    /// Counts into `counters` from now on (the connection moved to another loop).
    mutating func rehome(counters: LoopCounters?) {
        self.counters = counters.map { Unmanaged.passUnretained($0) }
        counting = counters?.isCounting ?? false
        tracking = counters?.exposures != nil
        quotaAnswers = counters?.handle(MetricTable.quotaAnswers)
    }

    /// Answers `line` (without its newline) from `config`, appending the reply to `replies`.
    /// A `watch` calls `subscribe` before it reads the version it reports, so that no reload
    /// falls between the two unannounced. A `consume` or `usage` that the store answers later
    /// (Redis) writes nothing and returns the deferral: the caller keeps the reply's place.
    @discardableResult
    mutating func answer(
        _ line: UnsafeRawBufferPointer, config: ServedConfig, into replies: inout [UInt8], subscribe: () -> Void
    ) -> QuotaDeferral? {
        var line = line
        if let last = line.last, last == UInt8(ascii: "\r") { line = UnsafeRawBufferPointer(rebasing: line.dropLast()) }
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return nil }
        answered += 1
        do {
            try parser.parse(line, into: &request)
        } catch {
            if error.code == .forbidden {
                refuseWrite(line, error, into: &replies)
                return nil
            }
            refuse(error, into: &replies)
            return nil
        }
        let op = request.op
        if counting { counters?._withUnsafeGuaranteedRef { $0.request(op) } }
        let snapshot = config.snapshot
        // Trivial values, captured by the closures below without counting references (and
        // nothing mutable: a mutable capture there costs a dynamic exclusivity check per result).
        let (counters, counting, tracking) = (self.counters, self.counting, self.tracking)
        switch op {
        case .eval:
            if let keys = request.flags {
                let type = request.type
                ReplyEncoder.evalMany(id: request.id, default: request.defaultValue, into: &replies) { each in
                    config.forEachResult(keys, context: request.context, type: type, tenants: Self.tenants(counters)) { result in
                        each(result)
                        Self.observe(result, counters, counting, tracking)
                    }
                }
            } else {
                let (id, defaultValue) = (request.id, request.defaultValue)
                config.withResult(request.flag ?? "", context: request.context, type: request.type, tenants: Self.tenants(counters)) { result in
                    ReplyEncoder.eval(id: id, result: result, default: defaultValue, into: &replies)
                    Self.observe(result, counters, counting, tracking)
                }
            }
        case .evalAll:
            ReplyEncoder.evalAll(id: request.id, into: &replies) { each in
                config.forEachResult(context: request.context, tenants: Self.tenants(counters)) { result in
                    each(result)
                    Self.observe(result, counters, counting, tracking)
                }
            }
        case .ping:
            let entitlements = config.entitlements.map { value in
                (version: config.entitlementsVersion ?? "", features: value.features.count, plans: value.plans.count, tenants: value.tenantCount)
            }
            ReplyEncoder.ping(
                id: request.id, configVersion: config.version, flagCount: snapshot.count, entitlements: entitlements, into: &replies)
        case .status:
            ReplyEncoder.reply(id: request.id, service.status().json, into: &replies)
        case .list:
            ReplyEncoder.reply(id: request.id, FlagListing.json(configVersion: config.version, flags: snapshot.flags), into: &replies)
        case .watch:
            subscribe()
            let now = service.store.current
            ReplyEncoder.reply(id: request.id, ["ok": true, "watching": true, "configVersion": .string(now.version)], into: &replies)
        case .stats:
            ReplyEncoder.reply(id: request.id, service.metricsReport().statsJSON, into: &replies)
        case .entitlements, .tenants:
            do {
                try EntitlementsOps.answer(request, config: config, into: &replies)
            } catch {
                refuse(error, into: &replies)
            }
        case .metrics:
            let text = String(decoding: service.metricsReport().prometheusText(), as: UTF8.self)
            ReplyEncoder.reply(
                id: request.id, ["contentType": .string(MetricsReport.prometheusContentType), "text": .string(text)], into: &replies)
        case .consume, .usage:
            return answerQuota(config: config, into: &replies)
        }
        if tracking, let counters, counters._withUnsafeGuaranteedRef({ $0.hasPendingExposures }) {
            recordExposures(counters)
        }
        return nil
    }

    /// Counts one result (a feature's answer that denies the tenant as an entitlement denial),
    /// and notes it when its flag asks for exposure events (OFREP's answers too).
    @inline(__always)
    static func observe(_ result: EncodedResult, _ counters: Unmanaged<LoopCounters>?, _ counting: Bool, _ tracking: Bool) {
        guard let counters else { return }
        counters._withUnsafeGuaranteedRef { counters in
            if counting {
                counters.evaluation(position: result.flagPosition, variant: result.variantIndex, reason: result.reason, error: result.errorCode)
                if let denial = result.denial { counters.denied(denial, by: .eval) }
            }
            if tracking, let position = result.flagPosition, counters.tracks(position) {
                counters.noteExposure(position: position, variant: result.variantIndex, reason: result.reason, error: result.errorCode)
            }
        }
    }

    /// Answers a refused line with its error, and counts it.
    mutating func refuse(_ error: RequestError, into replies: inout [UInt8]) {
        if counting { counters?._withUnsafeGuaranteedRef { $0.refused(error.code) } }
        ReplyEncoder.error(error, into: &replies)
    }

    /// Records the exposure events noted while the reply was written (reading the request's
    /// context for its targeting key and `tenantId`).
    private mutating func recordExposures(_ counters: Unmanaged<LoopCounters>) {
        request.withContext { context in
            counters._withUnsafeGuaranteedRef {
                $0.recordNotedExposures(targetingKey: context.targetingKey, tenant: { context.attributes["tenantId"]?.string })
            }
        }
    }

    /// An admin operation on the query socket: `FORBIDDEN`, naming the admin socket, and audited.
    private mutating func refuseWrite(_ line: UnsafeRawBufferPointer, _ error: RequestError, into replies: inout [UInt8]) {
        var refusal = error
        if let path = service.adminSocketPath {
            refusal.message += "; send it to the admin socket, \(path)"
        } else {
            refusal.message += "; this guidond has no admin socket (start it with --admin-socket PATH)"
        }
        service.refusedWrite?(Array(line), refusal, socket)
        refuse(refusal, into: &replies)
    }
}
