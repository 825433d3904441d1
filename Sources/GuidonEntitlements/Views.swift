public import GuidonJSON

/// A page of the tenant listing.
public struct TenantQuery: Sendable, Hashable {
    /// Start after this tenant (the previous page's `next`); `nil`: from the first.
    public var after: String?
    /// At most this many tenants (1…1000; default 100).
    public var limit: Int
    /// Only tenants of this plan / in this status.
    public var plan: String?
    public var status: SubscriptionStatus?

    public static let maximumLimit = 1000

    public init(after: String? = nil, limit: Int = 100, plan: String? = nil, status: SubscriptionStatus? = nil) {
        self.after = after
        self.limit = limit
        self.plan = plan
        self.status = status
    }
}

/// Why a query of the compiled entitlements cannot be answered.
public struct EntitlementsQueryError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable { case unknownCursor, unknownPlan, invalidLimit }
        private let value: Value
        /// `after` names no tenant (it was removed since the previous page): start again.
        public static let unknownCursor = Code(value: .unknownCursor)
        /// `plan` names no plan.
        public static let unknownPlan = Code(value: .unknownPlan)
        /// `limit` is not between 1 and `TenantQuery.maximumLimit`.
        public static let invalidLimit = Code(value: .invalidLimit)

        public var description: String {
            switch value {
            case .unknownCursor: "unknownCursor"
            case .unknownPlan: "unknownPlan"
            case .invalidLimit: "invalidLimit"
            }
        }
    }

    public var code: Code
    public var message: String
    public var description: String { "\(code): \(message)" }
}

/// One line of the tenant listing.
public struct TenantSummary: Sendable, Hashable {
    public var id: String
    public var plan: String?
    public var status: SubscriptionStatus
    public var validUntil: Int64?
    /// How many features the tenant overrides.
    public var overrides: Int
}

/// One page of the tenant listing.
public struct TenantPage: Sendable, Hashable {
    public var tenants: [TenantSummary]
    /// How many tenants match the query's filters, on every page.
    public var total: Int
    /// The `after` of the next page; `nil` on the last.
    public var next: String?
}

extension Entitlements {
    // MARK: The `entitlements` view

    /// Writes what `tenant` has at `now`, as the members of a JSON object (without the braces:
    /// a reply puts its `id` first):
    /// `"tenant":ID,"found":BOOL[,"plan":…,"planName":…,"planOrder":…],"status":…[,"validUntil":…],"planApplies":BOOL,"features":{KEY:{…},…}`.
    /// Each feature's answer has the members of an `eval` result (`value`, `variant`, `reason`,
    /// `metadata`) and `entitled`, `why`, and `limits` with `limitsFrom` when limits apply. An
    /// unknown tenant is `"found":false` with every feature's default.
    public func writeEntitlements(tenant id: String, now: Int64? = nil, into out: inout [UInt8]) {
        let now = now ?? clock()
        let t = tenantPosition(id)
        out.append(contentsOf: #""tenant":"#.utf8)
        JSONWriter.writeString(id, into: &out)
        if t >= 0 {
            let record = tenants.records.buffer[t]
            out.append(contentsOf: #","found":true"#.utf8)
            out.append(contentsOf: catalog.planMembers.buffer[Int(record.plan)].bytes(in: catalog.text.pointer))
            out.append(contentsOf: #","status":""#.utf8)
            out.append(contentsOf: SubscriptionStatus(code: record.status).rawValue.utf8)
            out.append(UInt8(ascii: "\""))
            if record.validUntil != .max {
                out.append(contentsOf: #","validUntil":""#.utf8)
                Timestamp.write(record.validUntil, into: &out)
                out.append(UInt8(ascii: "\""))
            }
            out.append(contentsOf: (record.status <= 1 && now < record.validUntil ? #","planApplies":true"# : #","planApplies":false"#).utf8)
        } else {
            out.append(contentsOf: #","found":false"#.utf8)
        }
        out.append(contentsOf: #","features":{"#.utf8)
        let keys = catalog.viewKeys.pointer
        let catalogText = catalog.text.pointer
        for f in 0..<catalog.features.count {
            if f > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: keys[f].bytes(in: catalogText))
            let answer = answer(feature: f, tenant: t, now: now)
            let entry = answer.entry
            let text = answer.text + Int(entry.start)
            out.append(UInt8(ascii: "{"))
            // `served` without its leading comma.
            out.append(contentsOf: UnsafeRawBufferPointer(start: text + 1, count: Int(entry.servedCount) - 1))
            out.append(contentsOf: (entry.matched ? #","reason":"TARGETING_MATCH","metadata":"# : #","reason":"DEFAULT","metadata":"#).utf8)
            out.append(contentsOf: UnsafeRawBufferPointer(start: text + Int(entry.servedCount), count: Int(entry.metadataCount + entry.extraCount)))
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "}"))
    }

    /// `writeEntitlements(tenant:now:into:)` as a value (for callers off the hot path).
    public func entitlements(tenant id: String, now: Int64? = nil) -> JSONObject {
        var out: [UInt8] = [UInt8(ascii: "{")]
        writeEntitlements(tenant: id, now: now, into: &out)
        out.append(UInt8(ascii: "}"))
        // The text was written from values that parsed: it parses.
        return (try? JSONParser().parse(out))?.object ?? JSONObject()
    }

    // MARK: The `tenants` listing

    /// Tenants in document order, `query.limit` at a time, after `query.after` (a cursor that
    /// stays valid across reloads as long as that tenant exists).
    public func tenants(_ query: TenantQuery) throws(EntitlementsQueryError) -> TenantPage {
        guard (1...TenantQuery.maximumLimit).contains(query.limit) else {
            throw EntitlementsQueryError(code: .invalidLimit, message: "limit must be between 1 and \(TenantQuery.maximumLimit), not \(query.limit)")
        }
        var start = 0
        if let after = query.after {
            guard let t = tenants.index.lookup.position(of: after) else {
                throw EntitlementsQueryError(code: .unknownCursor, message: "no tenant \(quoted(after)) to continue after (removed since the previous page?): start again without \"after\"")
            }
            start = t + 1
        }
        var slot: UInt16?
        if let plan = query.plan {
            guard let p = catalog.planIDs[plan] else {
                throw EntitlementsQueryError(code: .unknownPlan, message: "no plan named \(quoted(plan))")
            }
            slot = UInt16(p + 1)
        }
        let records = tenants.records.buffer
        let status = query.status.map { UInt8($0.code) }
        func matches(_ r: TenantRecord) -> Bool { (slot.map { r.plan == $0 } ?? true) && (status.map { r.status == $0 } ?? true) }
        var page: [TenantSummary] = []
        var last = start - 1
        var t = start
        while t < records.count && page.count < query.limit {
            let r = records[t]
            if matches(r) {
                page.append(TenantSummary(
                    id: tenants.index.key(at: t), plan: r.plan == 0 ? nil : catalog.plans[Int(r.plan) - 1].name,
                    status: SubscriptionStatus(code: r.status), validUntil: r.validUntil == .max ? nil : r.validUntil,
                    overrides: Int(r.overrideCount)))
                last = t
            }
            t += 1
        }
        let more = (last + 1 < records.count) && records[(last + 1)...].contains(where: matches)
        let total = slot == nil && status == nil ? records.count : records.count(where: matches)
        return TenantPage(tenants: page, total: total, next: more ? page.last?.id : nil)
    }

    /// Writes a page as the members of a JSON object (without the braces):
    /// `"tenants":[{"id":…,"plan":…,"status":…,"validUntil":…,"overrides":N},…],"total":N[,"next":ID]`.
    public func writeTenants(_ query: TenantQuery, into out: inout [UInt8]) throws(EntitlementsQueryError) {
        let page = try tenants(query)
        out.append(contentsOf: #""tenants":["#.utf8)
        for (i, tenant) in page.tenants.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: #"{"id":"#.utf8)
            JSONWriter.writeString(tenant.id, into: &out)
            if let plan = tenant.plan {
                out.append(contentsOf: #","plan":"#.utf8)
                JSONWriter.writeString(plan, into: &out)
            }
            out.append(contentsOf: #","status":""#.utf8)
            out.append(contentsOf: tenant.status.rawValue.utf8)
            out.append(UInt8(ascii: "\""))
            if let validUntil = tenant.validUntil {
                out.append(contentsOf: #","validUntil":""#.utf8)
                Timestamp.write(validUntil, into: &out)
                out.append(UInt8(ascii: "\""))
            }
            out.append(contentsOf: #","overrides":"#.utf8)
            JSONWriter.writeInt(Int64(tenant.overrides), into: &out)
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: #"],"total":"#.utf8)
        JSONWriter.writeInt(Int64(page.total), into: &out)
        if let next = page.next {
            out.append(contentsOf: #","next":"#.utf8)
            JSONWriter.writeString(next, into: &out)
        }
    }
}
