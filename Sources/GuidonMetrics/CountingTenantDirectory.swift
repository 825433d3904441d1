public import GuidonEngine
public import GuidonJSON
public import GuidonEntitlements

/// What `{"entitled": …}` and `$tenant.…` in a flag's targeting ask, on one loop: the
/// entitlements being served, answering as they do, with each `entitled` that answers false
/// counted as a denial (`guidon_entitlement_denials_total{check="targeting"}`) in the loop's
/// counters.
///
/// A loop puts its own into the contexts it evaluates (`LoopCounters.tenantDirectory`, made
/// when the loop takes a new entitlements document), so that counting touches no memory another
/// loop writes. `@unchecked Sendable`: used on its loop's thread only (a context holding it does
/// not outlive the request).
public final class CountingTenantDirectory: TenantDirectory, @unchecked Sendable {
    public let entitlements: Entitlements
    /// The loop's counters, which hold this.
    private unowned(unsafe) let counters: LoopCounters

    init(_ entitlements: Entitlements, counters: LoopCounters) {
        self.entitlements = entitlements
        self.counters = counters
    }

    public func hasFeature(_ key: String) -> Bool { entitlements.hasFeature(key) }

    public func isEntitled(tenant: String?, feature: String, now: Int64?) -> Bool {
        guard let denial = entitlements.denial(tenant: tenant, feature: feature, now: now) else { return true }
        counters.denied(denial, by: .targeting)
        return false
    }

    public func attribute(_ name: String, ofTenant tenant: String, now: Int64?) -> JSONValue? {
        entitlements.attribute(name, ofTenant: tenant, now: now)
    }
}
