/// The rules of `consume`, shared by both stores: validation, which limit refuses, what the
/// answer reports. Pure.
enum QuotaDecision {
    static func validate(_ subject: QuotaSubject, _ limits: [QuotaLimit]) throws(QuotaStoreError) {
        guard !limits.isEmpty, limits.count <= QuotaRequest.maximumLimits else {
            throw QuotaStoreError(.invalidLimit, "feature '\(subject.feature)' has \(limits.count) limits (1…\(QuotaRequest.maximumLimits) allowed)")
        }
        for (i, limit) in limits.enumerated() where limit.max < 0 || limit.max > QuotaLimit.maximumValue {
            throw QuotaStoreError(.invalidLimit, "feature '\(subject.feature)' limit \(i): max \(limit.max) is outside 0…\(QuotaLimit.maximumValue)")
        }
        try key(subject.feature, "feature")
        try key(subject.tenant, "tenant")
        if let user = subject.user { try key(user, "user (targeting key)") }
        if subject.user == nil, let i = limits.firstIndex(where: { $0.scope == .user }) {
            throw QuotaStoreError(.invalidKey, "feature '\(subject.feature)' limit \(i) is counted per user, and the request has no targeting key")
        }
    }

    static func validate(_ request: QuotaRequest) throws(QuotaStoreError) {
        try validate(request.subject, request.limits)
        guard request.amount >= 1, request.amount <= QuotaLimit.maximumValue else {
            throw QuotaStoreError(.invalidAmount, "amount \(request.amount) for feature '\(request.subject.feature)' is outside 1…\(QuotaLimit.maximumValue)")
        }
        if let key = request.idempotencyKey { try self.key(key, "idempotency key") }
    }

    static func key(_ text: String, _ what: String) throws(QuotaStoreError) {
        let count = text.utf8.count
        guard count >= 1, count <= QuotaRequest.maximumKeyLength else {
            throw QuotaStoreError(.invalidKey, "the \(what) is \(count == 0 ? "empty" : "\(count) bytes long") (1…\(QuotaRequest.maximumKeyLength) bytes allowed)")
        }
    }

    /// The index of the earlier limit that reads the same count as limit `i` (same unit and
    /// scope), or `i` itself.
    static func counterOwner(_ limits: [QuotaLimit], _ i: Int) -> Int {
        for j in 0..<i where limits[j].per == limits[i].per && limits[j].scope == limits[i].scope { return j }
        return i
    }

    /// The first hard limit that `amount` would take past its `max`, given each limit's count
    /// before; throws `overflow` when a count would pass the largest value.
    static func refusingLimit(_ limits: [QuotaLimit], amount: Int64, before: (Int) -> Int64) throws(QuotaStoreError) -> Int? {
        for i in limits.indices where limits[i].mode == .hard && before(i) > limits[i].max - amount {
            return i
        }
        for i in limits.indices where before(i) > QuotaLimit.maximumValue - amount {
            throw QuotaStoreError(.overflow, "feature limit \(i): count \(before(i)) + amount \(amount) would pass \(QuotaLimit.maximumValue)")
        }
        return nil
    }

    /// The answer: `after(i)` is limit `i`'s count after the request (its count before when
    /// refused).
    static func answer(
        _ limits: [QuotaLimit], amount: Int64, refusedBy: Int?, window: (Int) -> CalendarWindow, before: (Int) -> Int64, after: (Int) -> Int64
    ) -> QuotaAnswer {
        var shadowOver = false
        for i in limits.indices where limits[i].mode == .shadow && before(i) > limits[i].max - amount { shadowOver = true }
        if let refused = refusedBy {
            let status = QuotaLimitStatus(index: refused, limit: limits[refused], used: after(refused), window: window(refused), over: true)
            return QuotaAnswer(allowed: false, status: status, shadowOver: shadowOver)
        }
        let hasEnforced = limits.contains { $0.mode != .shadow }
        var best = -1
        var bestRemaining = Int64.max
        for i in limits.indices where !hasEnforced || limits[i].mode != .shadow {
            let remaining = limits[i].max - after(i)
            if remaining < bestRemaining { (best, bestRemaining) = (i, remaining) }
        }
        let status = QuotaLimitStatus(index: best, limit: limits[best], used: after(best), window: window(best), over: after(best) > limits[best].max)
        return QuotaAnswer(allowed: true, status: status, shadowOver: shadowOver)
    }

    /// The answer when the store cannot be asked: a hard limit whose `failMode` is `closed`
    /// refuses; otherwise allowed. Nothing is known of the counts.
    static func degraded(_ limits: [QuotaLimit], window: (Int) -> CalendarWindow) -> QuotaAnswer {
        if let closed = limits.firstIndex(where: { $0.mode == .hard && $0.failMode == .closed }) {
            let status = QuotaLimitStatus(index: closed, limit: limits[closed], used: nil, window: window(closed), over: false)
            return QuotaAnswer(allowed: false, status: status, degraded: true)
        }
        let first = limits.firstIndex { $0.mode != .shadow } ?? 0
        let status = QuotaLimitStatus(index: first, limit: limits[first], used: nil, window: window(first), over: false)
        return QuotaAnswer(allowed: true, status: status, degraded: true)
    }

    static func usage(_ limits: [QuotaLimit], window: (Int) -> CalendarWindow, used: (Int) -> Int64) -> [QuotaLimitStatus] {
        limits.indices.map { i in
            QuotaLimitStatus(index: i, limit: limits[i], used: used(i), window: window(i), over: used(i) > limits[i].max)
        }
    }
}
