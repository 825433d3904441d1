public import GuidonEngine
public import GuidonJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A compiled entitlements document: features, plans after inheritance, and tenants with their
/// overrides, answered like flags. Immutable; safe to share between threads; answering never
/// locks and, for one feature, never allocates.
///
/// Every answer a feature can give (per plan: the grant, the default, the default while the
/// subscription stops the grant; per override: its answer while the plan applies and while it
/// does not) is written as reply text when the document is compiled, so answering is finding the
/// tenant by its id's bytes, choosing one of those texts by the order of precedence at `now`,
/// and lending it.
public final class Entitlements: @unchecked Sendable {
    // Sendable: every stored property is immutable. The pointers point into `Frozen` tables
    // that `catalog` and `tenants` keep alive and that nothing writes after `init`.

    /// Problems that did not reject the document.
    public let warnings: [Diagnostic]

    let catalog: Catalog
    let tenants: TenantTable
    let memo: EntitlementsMemo
    let clock: @Sendable () -> Int64
    /// How many tenants were compiled rather than taken from a previous value.
    let compiledTenants: Int
    /// The value whose tenants this one reused (`memo.reused` gives their positions there), so
    /// that `diff(from:)` knows them unchanged without comparing them. Weak: a compiled value
    /// does not keep its predecessor alive.
    weak let reusedFrom: Entitlements?

    // What a resolution reads, as pointers (see `Frozen`).
    private let featureLookup: BytesIndex.Lookup
    private let tenantLookup: BytesIndex.Lookup
    private let records: UnsafePointer<TenantRecord>
    private let overrides: UnsafePointer<OverrideRecord>
    private let tenantText: UnsafePointer<UInt8>
    private let tenantLimits: UnsafePointer<Limit>
    private let catalogText: UnsafePointer<UInt8>
    private let catalogLimits: UnsafePointer<Limit>
    private let entries: UnsafePointer<AnswerEntry>
    private let flagMembers: UnsafePointer<TextSpan>
    private let kinds: UnsafePointer<UInt8>
    private let featureCount: Int

    init(
        catalog: Catalog, tenants: TenantTable, memo: EntitlementsMemo, warnings: [Diagnostic],
        clock: @escaping @Sendable () -> Int64, compiledTenants: Int, reusedFrom: Entitlements? = nil
    ) {
        self.catalog = catalog
        self.tenants = tenants
        self.memo = memo
        self.warnings = warnings
        self.clock = clock
        self.compiledTenants = compiledTenants
        self.reusedFrom = reusedFrom
        featureLookup = catalog.featureIndex.lookup
        tenantLookup = tenants.index.lookup
        records = tenants.records.pointer
        overrides = tenants.overrides.pointer
        tenantText = tenants.text.pointer
        tenantLimits = tenants.limits.pointer
        catalogText = catalog.text.pointer
        catalogLimits = catalog.limits.pointer
        entries = catalog.entries.pointer
        flagMembers = catalog.flagMembers.pointer
        kinds = catalog.kinds.pointer
        featureCount = catalog.features.count
    }

    /// Parses, validates and compiles an entitlements document. Throws a report holding every
    /// problem when the document is rejected.
    ///
    /// With `previous` (the value being served, when its file changed), a tenant whose definition
    /// is byte for byte the same as in `previous`'s document is taken from `previous` instead of
    /// being parsed and compiled again, provided `features` and `plans` are unchanged too. The
    /// result is the same as a compile without `previous`.
    public static func compile(
        json bytes: [UInt8], options: EntitlementsCompileOptions = EntitlementsCompileOptions(), reusing previous: Entitlements? = nil
    ) throws(ValidationReport) -> Entitlements {
        try EntitlementsCompiler(options: options).compile(bytes, reusing: previous)
    }

    // MARK: What the document holds

    /// The document's `timezone` (an IANA name; `UTC` when it gives none): usage-limit windows
    /// are calendar windows in it.
    public var timezone: String { catalog.timezone }
    /// Every feature, in document order.
    public var features: [FeatureInfo] { catalog.features }
    /// Every plan, after inheritance, in document order.
    public var plans: [PlanInfo] { catalog.plans }
    public var tenantCount: Int { tenants.count }

    public func hasFeature(_ key: String) -> Bool { featureLookup.position(of: key) != nil }

    public func feature(_ key: String) -> FeatureInfo? {
        featureLookup.position(of: key).map { catalog.features[$0] }
    }

    public func plan(_ name: String) -> PlanInfo? {
        catalog.planIDs[name].map { catalog.plans[$0] }
    }

    public func hasTenant(_ id: String) -> Bool { tenantLookup.position(of: id) != nil }

    /// Whether `document` is, byte for byte, the text this value was compiled from (a memory
    /// compare: a writer that reads the file it serves need not digest or delimit it again).
    public func isCompiled(from document: [UInt8]) -> Bool {
        let source = memo.source
        guard source.count == document.count else { return false }
        return source.withUnsafeBytes { a in document.withUnsafeBytes { b in a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 } }
    }

    /// Where tenant `id`'s definition (its value, `{` to `}`) is in the text this value was
    /// compiled from, found through the tenant index; `nil` when there is no tenant with exactly
    /// these id bytes. An editor of that text (`isCompiled(from:)`) finds a tenant without
    /// delimiting 100,000 of them.
    public func definitionRange(ofTenant id: String) -> Range<Int>? {
        guard let t = tenantLookup.position(of: id), t < memo.spans.count else { return nil }
        return memo.spans[t].range
    }

    /// Where the last tenant's definition ends in the text this value was compiled from (`nil`
    /// without tenants): the `tenants` map closes after it, past white space.
    public var tenantDefinitionsEnd: Int? {
        memo.spans.last.map { Int($0.end) }
    }

    /// The lowest-ordered plan that grants `feature` (what a denied answer's `upgradeTo` names):
    /// `nil` when no plan does, or there is no such feature.
    public func upgradePlan(for feature: String) -> PlanInfo? {
        featureLookup.position(of: feature).flatMap { catalog.upgradeTo[$0] }.map { catalog.plans[$0] }
    }

    // MARK: Resolution

    /// One chosen answer: its entry and the arena its text and limits are in.
    struct Answer {
        let entry: AnswerEntry
        let text: UnsafePointer<UInt8>
        let limits: UnsafePointer<Limit>
        let source: EntitlementSource
        /// Why it tells the tenant no, when it does (`entry.entitled` is false).
        let why: EntitlementDenialReason
    }

    /// The order of precedence: the tenant's override of the feature unless it has expired →
    /// its plan's grant while the subscription is active or trialing and before `validUntil` →
    /// the feature's default. `tenant` is a position, or -1 for an unknown tenant (-2: the
    /// context names none; the answer is the same, only a denial's reason differs).
    @inline(__always)
    func answer(feature f: Int, tenant t: Int, now: Int64) -> Answer {
        guard t >= 0 else {
            return catalogAnswer(slot: 0, feature: f, kind: Catalog.Kind.notGranted, why: t == -2 ? .noTenant : .unknownTenant)
        }
        let record = records[t]
        let planApplies = record.status <= 1 && now < record.validUntil
        var i = Int(record.overrideStart)
        let end = i + Int(record.overrideCount)
        while i < end {
            let o = overrides + i
            let feature = Int(o.pointee.feature)
            if feature == f {
                if now < o.pointee.expiresAt {
                    let entry = planApplies ? o.pointee.whilePlanApplies : o.pointee.otherwise
                    return Answer(entry: entry, text: tenantText, limits: tenantLimits, source: .override, why: .override)
                }
                break
            }
            if feature > f { break }
            i += 1
        }
        let slot = Int(record.plan)
        guard slot != 0 else { return catalogAnswer(slot: 0, feature: f, kind: Catalog.Kind.notGranted, why: .noPlan) }
        let base = (slot * featureCount + f) * Catalog.kinds
        guard entries[base + Catalog.Kind.grant].present else {
            return catalogAnswer(slot: slot, feature: f, kind: Catalog.Kind.notGranted, why: .notGranted)
        }
        if planApplies {
            return Answer(
                entry: entries[base + Catalog.Kind.grant], text: catalogText, limits: catalogLimits, source: .plan, why: .notGranted)
        }
        let status = Int(record.status)
        return status > 1
            ? catalogAnswer(slot: slot, feature: f, kind: status, why: status == 2 ? .pastDue : status == 3 ? .canceled : .expired)
            : catalogAnswer(slot: slot, feature: f, kind: Catalog.Kind.ended, why: .ended)
    }

    @inline(__always)
    private func catalogAnswer(slot: Int, feature f: Int, kind: Int, why: EntitlementDenialReason) -> Answer {
        Answer(
            entry: entries[(slot * featureCount + f) * Catalog.kinds + kind], text: catalogText, limits: catalogLimits,
            source: .default, why: why)
    }

    /// The position of tenant `id`: -1 for an unknown tenant, -2 for none.
    @inline(__always)
    func tenantPosition(_ id: String?) -> Int {
        guard let id else { return -2 }
        return tenantLookup.position(of: id) ?? -1
    }

    @inline(__always)
    func tenantPosition(bytes id: UnsafeRawBufferPointer?) -> Int {
        guard let id else { return -2 }
        return tenantLookup.position(of: id) ?? -1
    }

    /// Answers `feature` for `tenant` at `now` and lends `body` the reply members, the way
    /// `Snapshot.withResult` lends a flag's: nothing is allocated and no reference counted.
    /// `nil` (and `body` is not called) when there is no such feature: the key may be a flag's.
    ///
    /// A tenant that is `nil` (the context names none) or unknown gets the feature's default.
    /// `type` is checked like a flag's: a boolean feature asked for as anything but `boolean`, or
    /// a configuration feature as anything but `object`, answers `ERROR`/`TYPE_MISMATCH`.
    @inline(__always)
    public func withResult<Result>(
        feature key: String, tenant: String?, type: ValueType? = nil, now: Int64? = nil, _ body: (EncodedResult) -> Result
    ) -> Result? {
        guard let f = featureLookup.position(of: key) else { return nil }
        return lend(answer(feature: f, tenant: tenantPosition(tenant), now: now ?? clock()), feature: f, type: type, body)
    }

    /// `withResult(feature:tenant:type:now:_:)` reading the tenant only when `key` is a feature
    /// (a server decodes the request's context for it only then).
    @inline(__always)
    public func withResult<Result>(
        feature key: String, tenantReading tenant: () -> String?, type: ValueType? = nil, now: Int64? = nil,
        _ body: (EncodedResult) -> Result
    ) -> Result? {
        guard let f = featureLookup.position(of: key) else { return nil }
        return lend(answer(feature: f, tenant: tenantPosition(tenant()), now: now ?? clock()), feature: f, type: type, body)
    }

    /// `withResult(feature:tenant:type:now:_:)` for a caller holding the key and the tenant id as
    /// UTF-8 bytes (a request line, say).
    @inline(__always)
    public func withResult<Result>(
        featureBytes key: UnsafeRawBufferPointer, tenantBytes tenant: UnsafeRawBufferPointer?, type: ValueType? = nil,
        now: Int64? = nil, _ body: (EncodedResult) -> Result
    ) -> Result? {
        guard let f = featureLookup.position(of: key) else { return nil }
        return lend(answer(feature: f, tenant: tenantPosition(bytes: tenant), now: now ?? clock()), feature: f, type: type, body)
    }

    /// Answers every feature for `tenant`, in document order, lending `body` each result's reply
    /// members (what an `evalAll` adds to the flags' results).
    public func forEachResult(tenant: String?, now: Int64? = nil, _ body: (EncodedResult) -> Void) {
        let now = now ?? clock()
        let t = tenantPosition(tenant)
        for f in 0..<featureCount {
            lend(answer(feature: f, tenant: t, now: now), feature: f, type: nil, body)
        }
    }

    /// The tenant id a context attribute names: a string as it is, an integer as its decimal
    /// digits (products often number their tenants: `{"tenantId": 5}` is tenant `"5"`); `nil`
    /// for anything else (the feature's default then applies).
    public static func tenantID(from value: JSONValue?) -> String? {
        switch value {
        case .string(let id)?: id
        case .int(let n)?: String(n)
        default: nil
        }
    }

    @inline(__always)
    private func lend<Result>(_ answer: Answer, feature f: Int, type: ValueType?, _ body: (EncodedResult) -> Result) -> Result {
        let entry = answer.entry
        let flag = flagMembers[f].bytes(in: catalogText)
        let metadata = UnsafeRawBufferPointer(
            start: answer.text + Int(entry.start + entry.servedCount), count: Int(entry.metadataCount))
        if let type, type != (kinds[f] == 0 ? .boolean : .object) {
            return body(EncodedResult(
                flag: flag, served: nil, reason: .error, errorCode: .typeMismatch,
                errorMessage: catalog.typeMismatch[f * ValueType.caseCount + type.position], metadata: metadata))
        }
        let served = UnsafeRawBufferPointer(start: answer.text + Int(entry.start), count: Int(entry.servedCount))
        return body(EncodedResult(
            flag: flag, served: served, reason: entry.reason, metadata: metadata,
            denial: entry.entitled ? nil : EntitlementDenial(feature: Int32(truncatingIfNeeded: f), reason: answer.why)))
    }

    /// Answers `feature` for `tenant` as an `EvaluationResult` (for callers off the hot path; a
    /// server lends the text with `withResult`). `nil` when there is no such feature.
    public func evaluate(_ feature: String, tenant: String?, type: ValueType? = nil, now: Int64? = nil) -> EvaluationResult? {
        withResult(feature: feature, tenant: tenant, type: type, now: now) { encoded in
            var value: JSONValue?
            var variant: String?
            if let served = encoded.served {
                // `,"value":…,"variant":…` → an object.
                var object: [UInt8] = [UInt8(ascii: "{")]
                object += served.dropFirst()
                object.append(UInt8(ascii: "}"))
                let members = (try? JSONParser().parse(object))?.object
                value = members?["value"]
                variant = members?["variant"]?.string
            }
            let metadata = (try? JSONParser().parse(Array(encoded.metadata)))?.object ?? JSONObject()
            return EvaluationResult(
                flagKey: feature, value: value, variant: variant, reason: encoded.reason, errorCode: encoded.errorCode,
                errorMessage: encoded.errorMessage, metadata: metadata)
        }
    }

    /// Whether `tenant` is entitled to `feature` at `now`: for a boolean feature, its value; for a
    /// configuration feature, whether an override or the plan grants it (its default does not
    /// count). `false` for a feature that does not exist. What the `entitled` targeting operator
    /// asks.
    @inline(__always)
    public func isEntitled(tenant: String?, feature: String, now: Int64? = nil) -> Bool {
        guard let f = featureLookup.position(of: feature) else { return false }
        return answer(feature: f, tenant: tenantPosition(tenant), now: now ?? clock()).entry.entitled
    }

    /// Why `tenant` is not entitled to `feature` at `now` (what `isEntitled` answers `false`
    /// for): `nil` when it is. A key that is no feature is denied as `unknownFeature`, at
    /// position -1 (counted without its key).
    public func denial(tenant: String?, feature: String, now: Int64? = nil) -> EntitlementDenial? {
        guard let f = featureLookup.position(of: feature) else { return EntitlementDenial(feature: -1, reason: .unknownFeature) }
        let answer = answer(feature: f, tenant: tenantPosition(tenant), now: now ?? clock())
        return answer.entry.entitled ? nil : EntitlementDenial(feature: Int32(truncatingIfNeeded: f), reason: answer.why)
    }

    /// Where `tenant`'s answer for `feature` comes from at `now` (`nil`: no such feature).
    public func source(tenant: String?, feature: String, now: Int64? = nil) -> EntitlementSource? {
        guard let f = featureLookup.position(of: feature) else { return nil }
        return answer(feature: f, tenant: tenantPosition(tenant), now: now ?? clock()).source
    }

    /// The limits that apply to `tenant`'s use of `feature` at `now`: the override's when it
    /// applies and declares some, else the plan grant's when the grant applies and declares
    /// some, else the feature's own (see ENTITLEMENTS.md, "Limits"). `nil`: no such feature.
    public func limits(tenant: String?, feature: String, now: Int64? = nil) -> EffectiveLimits? {
        withLimits(tenant: tenant, feature: feature, now: now) { entitled, source, limits in
            EffectiveLimits(entitled: entitled, source: source, limits: Array(limits))
        }
    }

    /// `limits(tenant:feature:now:)`, lent without allocating (for the quota path).
    @inline(__always)
    public func withLimits<Result>(
        tenant: String?, feature: String, now: Int64? = nil,
        _ body: (_ entitled: Bool, _ source: EntitlementSource?, _ limits: UnsafeBufferPointer<Limit>) -> Result
    ) -> Result? {
        guard let f = featureLookup.position(of: feature) else { return nil }
        let answer = answer(feature: f, tenant: tenantPosition(tenant), now: now ?? clock())
        let entry = answer.entry
        return body(
            entry.entitled, entry.limitSource,
            UnsafeBufferPointer(start: answer.limits + Int(entry.limitsStart), count: Int(entry.limitsCount)))
    }

    /// One of the tenant's attributes, for targeting rules (`$tenant.plan`, …): `id`, `plan`
    /// (its name), `planName` (its display name), `planOrder`, `status`, `validUntil` (Unix
    /// seconds, as `$flagd.timestamp`), `active` (whether the plan's grants apply at `now`).
    /// `nil` for an unknown tenant or attribute, and for a plan attribute of a tenant without
    /// a plan (lenient mode) or a `validUntil` it does not have.
    public func attribute(_ name: String, ofTenant tenant: String, now: Int64? = nil) -> JSONValue? {
        guard let t = tenantLookup.position(of: tenant) else { return nil }
        let record = records[t]
        let plan = record.plan == 0 ? nil : catalog.plans[Int(record.plan) - 1]
        switch name {
        case "id": return .string(tenant)
        case "plan": return plan.map { .string($0.name) }
        case "planName": return plan.map { .string($0.displayName) }
        case "planOrder": return plan?.order.map { .int($0) }
        case "status": return .string(SubscriptionStatus(code: record.status).rawValue)
        case "validUntil": return record.validUntil == .max ? nil : .int(record.validUntil)
        case "active": return .bool(record.status <= 1 && (now ?? clock()) < record.validUntil)
        default: return nil
        }
    }

    /// The attribute names `attribute(_:ofTenant:now:)` knows.
    public static let tenantAttributes = TenantAttributes.names

    // MARK: Tenants

    /// What the document says about tenant `id` (its definition is parsed again from the kept
    /// text: for admin views, not for answering).
    public func tenant(_ id: String) -> TenantInfo? {
        guard let t = tenantLookup.position(of: id), t < memo.spans.count,
            let value = try? JSONParser().parse(memo.source, valueIn: memo.spans[t].range, depth: 2),
            case .object(let object) = value
        else { return nil }
        let record = records[t]
        var info = TenantInfo(
            id: id, plan: record.plan == 0 ? nil : catalog.plans[Int(record.plan) - 1].name,
            status: SubscriptionStatus(code: record.status), validUntil: record.validUntil == .max ? nil : record.validUntil,
            overrides: [])
        for (feature, definition) in object["overrides"]?.object ?? JSONObject() {
            guard let override = definition.object, catalog.featureIDs[feature] != nil else { continue }
            var problems = Problems()
            info.overrides.append(TenantInfo.Override(
                feature: feature, enabled: override["enabled"]?.bool ?? false, config: override["config"]?.object,
                limits: override["limits"].flatMap { readLimits($0, at: [], into: &problems) },
                notes: override["notes"]?.string, by: override["by"]?.string,
                at: override["at"]?.string.flatMap(Timestamp.parse), expiresAt: override["expiresAt"]?.string.flatMap(Timestamp.parse)))
        }
        return info
    }

    /// Errors for the features whose key is also a flag's (a key is one or the other), located
    /// in this document. The daemon checks the two files together with it.
    public func conflicts(withFlagKeys flagKeys: some Sequence<String>) -> [Diagnostic] {
        var problems: [(Problem, Int, Int)] = []
        for key in flagKeys where hasFeature(key) {
            problems.append((Problem(kind: .error, path: [.key("features"), .key(key)],
                message: "\(quoted(key)) is both a flag (in the flag file) and a feature; a key must be one or the other"), 0, 0))
        }
        return DiagnosticLocator(bytes: memo.source).diagnostics(problems, mode: .strict).errors
    }
}

extension ValueType {
    /// `allCases.count`, without making the array.
    static let caseCount = allCases.count

    /// The position in `allCases`.
    var position: Int {
        switch self {
        case .boolean: 0
        case .string: 1
        case .integer: 2
        case .float: 3
        case .object: 4
        }
    }
}

/// `{"entitled": …}` and `$tenant.…` in flags' targeting ask the entitlements served with them.
extension Entitlements: TenantDirectory {}
