/// One usage limit of a feature, as the entitlements document declares it
/// (`{"per": "day", "max": 10, "scope": "user", "mode": "hard", "failMode": "open"}`).
public struct QuotaLimit: Sendable, Hashable {
    public enum Scope: String, Sendable, Hashable, CaseIterable {
        /// One count per tenant.
        case tenant
        /// One count per tenant and user (the context's targeting key).
        case user
    }

    public enum Mode: String, Sendable, Hashable, CaseIterable {
        /// Deny past the limit (the default).
        case hard
        /// Allow past the limit, and say it is over.
        case soft
        /// Count and report, never deny: for introducing a limit safely.
        case shadow
    }

    /// What a hard limit answers when the store cannot be asked (Redis slow or down).
    public enum FailMode: String, Sendable, Hashable, CaseIterable {
        /// Allow (the default: a metering outage should not become a product outage).
        case open
        /// Deny.
        case closed
    }

    /// The largest `max`, `amount` and count: 2^53 − 1, the last integer that JSON numbers and
    /// Redis's Lua (doubles) hold exactly.
    public static let maximumValue: Int64 = (1 << 53) - 1

    public var per: WindowUnit
    public var max: Int64
    public var scope: Scope
    public var mode: Mode
    public var failMode: FailMode

    public init(per: WindowUnit, max: Int64, scope: Scope = .tenant, mode: Mode = .hard, failMode: FailMode = .open) {
        self.per = per
        self.max = max
        self.scope = scope
        self.mode = mode
        self.failMode = failMode
    }
}

/// Which count a limit reads: usage is counted per (feature, tenant, user for `user` scope,
/// unit, window), not per limit, so that two limits of the same unit and scope share one count
/// and reordering or editing the document's limits never reassigns counts.
public struct QuotaSubject: Sendable, Hashable {
    public var feature: String
    public var tenant: String
    /// The targeting key; required when a limit has `user` scope.
    public var user: String?

    public init(feature: String, tenant: String, user: String? = nil) {
        self.feature = feature
        self.tenant = tenant
        self.user = user
    }
}

/// A `consume`: count `amount` against every limit of a feature, atomically.
public struct QuotaRequest: Sendable {
    /// The most limits one feature may have.
    public static let maximumLimits = 16
    /// The longest feature, tenant, user or idempotency key, in UTF-8 bytes.
    public static let maximumKeyLength = 512
    /// How long an idempotency key is remembered (24 hours).
    public static let idempotencyWindow: Int64 = 86_400

    public var subject: QuotaSubject
    /// The feature's limits, in document order (all apply).
    public var limits: [QuotaLimit]
    /// The zone of the document's `timezone`, for the calendar windows.
    public var zone: TimeZoneRules
    public var amount: Int64
    /// A request repeated with the same key within 24 hours gets the first answer again.
    public var idempotencyKey: String?
    /// Unix seconds.
    public var now: Int64
    /// The limits' windows at `now` in `zone`, when the caller has them already (a connection's
    /// `WindowMemo`); empty: the store computes them.
    public var windows: [CalendarWindow]

    public init(
        subject: QuotaSubject, limits: [QuotaLimit], zone: TimeZoneRules = .utc, amount: Int64 = 1, idempotencyKey: String? = nil, now: Int64,
        windows: [CalendarWindow] = []
    ) {
        self.subject = subject
        self.limits = limits
        self.zone = zone
        self.amount = amount
        self.idempotencyKey = idempotencyKey
        self.now = now
        self.windows = windows
    }

    /// Limit `i`'s window at `now`.
    @inline(__always)
    public func window(_ i: Int) -> CalendarWindow {
        windows.count == limits.count ? windows[i] : zone.window(limits[i].per, containing: now)
    }
}

/// A `usage` read (nothing counted), or the subject of a `reset`.
public struct QuotaUsageRequest: Sendable {
    public var subject: QuotaSubject
    public var limits: [QuotaLimit]
    public var zone: TimeZoneRules
    public var now: Int64

    public init(subject: QuotaSubject, limits: [QuotaLimit], zone: TimeZoneRules = .utc, now: Int64) {
        self.subject = subject
        self.limits = limits
        self.zone = zone
        self.now = now
    }
}

/// The state of one limit: what `usage` answers per limit, and what `consume` reports for the
/// limit that decided.
public struct QuotaLimitStatus: Sendable, Hashable {
    /// The limit's position in the request's `limits`.
    public var index: Int
    public var limit: QuotaLimit
    /// The count in the current window (after this request when it was counted); `nil` when
    /// the store could not be asked (`degraded`).
    public var used: Int64?
    /// `max - used`, never below 0; `nil` when `used` is.
    public var remaining: Int64?
    public var window: CalendarWindow
    /// The count is above `max` (past a soft or shadow limit), or a hard limit refused this request.
    public var over: Bool

    public init(index: Int, limit: QuotaLimit, used: Int64?, window: CalendarWindow, over: Bool) {
        self.index = index
        self.limit = limit
        self.used = used
        self.remaining = used.map { Swift.max(0, limit.max - $0) }
        self.window = window
        self.over = over
    }
}

/// The answer to a `consume`.
///
/// `status` is the limit that decided: the hard limit that refused, otherwise the limit with
/// the least remaining (hard and soft before shadow; the first in document order on a tie).
public struct QuotaAnswer: Sendable, Hashable {
    public var allowed: Bool
    public var status: QuotaLimitStatus
    /// A shadow limit would have refused this request (it was counted and allowed).
    public var shadowOver: Bool
    /// The store could not be asked in time: each hard limit's `failMode` decided, nothing counted.
    public var degraded: Bool
    /// The answer is the first answer to this idempotency key, given again.
    public var replayed: Bool

    public var used: Int64? { status.used }
    public var limit: Int64 { status.limit.max }
    public var remaining: Int64? { status.remaining }
    public var resetAt: Int64 { status.window.end }
    public var window: WindowUnit { status.window.unit }
    public var mode: QuotaLimit.Mode { status.limit.mode }

    public init(allowed: Bool, status: QuotaLimitStatus, shadowOver: Bool = false, degraded: Bool = false, replayed: Bool = false) {
        self.allowed = allowed
        self.status = status
        self.shadowOver = shadowOver
        self.degraded = degraded
        self.replayed = replayed
    }
}

/// Counts over time, for `stats` and `/metrics`.
public struct QuotaStoreStatistics: Sendable, Hashable {
    public var consumed: UInt64 = 0
    public var denied: UInt64 = 0
    /// Answers decided by `failMode` because the store could not be asked in time.
    public var degraded: UInt64 = 0
    public var replayed: UInt64 = 0
    public init() {}
}

public typealias QuotaCompletion<Value> = @Sendable (Result<Value, QuotaStoreError>) -> Void

/// Where counts live. Both stores answer through `completion`; the embedded store also
/// answers synchronously (`SynchronousQuotaStore`), which the daemon uses to reply inline.
public protocol QuotaStore: AnyObject, Sendable {
    /// Counts `request.amount` in every limit when no hard limit refuses; otherwise counts
    /// nothing. `completion` is called exactly once (on the caller's thread for the embedded
    /// store, on the store's own thread for Redis).
    func consume(_ request: QuotaRequest, completion: @escaping QuotaCompletion<QuotaAnswer>)
    /// Every limit's state, in `limits` order, without counting.
    func usage(_ request: QuotaUsageRequest, completion: @escaping QuotaCompletion<[QuotaLimitStatus]>)
    /// Forgets the counts of `subject` in every window: the tenant's and, when `subject.user` is
    /// `nil`, every user's; answers how many counts were removed.
    func reset(_ subject: QuotaSubject, completion: @escaping QuotaCompletion<Int>)
    var statistics: QuotaStoreStatistics { get }
    /// Stops the store (the embedded store writes what it has). Safe to call twice.
    func shutdown()
}

/// A store that answers on the caller's thread, at once.
public protocol SynchronousQuotaStore: QuotaStore {
    func consume(_ request: QuotaRequest) throws(QuotaStoreError) -> QuotaAnswer
    func usage(_ request: QuotaUsageRequest) throws(QuotaStoreError) -> [QuotaLimitStatus]
    func reset(_ subject: QuotaSubject) throws(QuotaStoreError) -> Int
}

extension SynchronousQuotaStore {
    public func consume(_ request: QuotaRequest, completion: @escaping QuotaCompletion<QuotaAnswer>) {
        completion(Result { () throws(QuotaStoreError) in try consume(request) })
    }

    public func usage(_ request: QuotaUsageRequest, completion: @escaping QuotaCompletion<[QuotaLimitStatus]>) {
        completion(Result { () throws(QuotaStoreError) in try usage(request) })
    }

    public func reset(_ subject: QuotaSubject, completion: @escaping QuotaCompletion<Int>) {
        completion(Result { () throws(QuotaStoreError) in try reset(subject) })
    }
}
