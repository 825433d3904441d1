import GuidonEngine
import GuidonEntitlements
import GuidonMetrics

extension Responder {
    /// Counts a `consume` refused because `tenant` is not entitled to `feature`, as a denial
    /// (`guidon_entitlement_denials_total{check="consume"}`), with the reason the engine gives.
    /// Asks the entitlements again, on the refusing path only.
    func countDenial(_ entitlements: Entitlements, feature: String, tenant: String, now: Int64) {
        guard counting, let counters, let denial = entitlements.denial(tenant: tenant, feature: feature, now: now) else { return }
        counters._withUnsafeGuaranteedRef { $0.denied(denial, by: .consume) }
    }
}

extension Responder {
    /// The loop's counting directory, for `{"entitled": …}` in flags' targeting (asked only when
    /// a context is read with entitlements served).
    @inline(__always)
    static func tenants(_ counters: Unmanaged<LoopCounters>?) -> CountingTenantDirectory? {
        counters?._withUnsafeGuaranteedRef { $0.tenantDirectory }
    }
}
