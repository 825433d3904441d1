public import GuidonJSON

/// What targeting may ask about tenants: `{"entitled": "feature"}` and `$tenant.NAME`
/// variables. Implemented by `GuidonEntitlements.Entitlements`, so that the engine does not
/// depend on it; a server puts the one it serves, and the context's tenant, into the
/// `EvaluationContext` it evaluates (`tenantDirectory`, `tenant`).
public protocol TenantDirectory: AnyObject, Sendable {
    /// Whether `key` is a feature.
    func hasFeature(_ key: String) -> Bool
    /// `{"entitled": feature}` for `tenant` (nil: none in the context) at `now`.
    func isEntitled(tenant: String?, feature: String, now: Int64?) -> Bool
    /// `$tenant.NAME` (`id`, `plan`, `planName`, `planOrder`, `status`, `validUntil`, `active`);
    /// `nil` (JSON null) for an unknown tenant or name.
    func attribute(_ name: String, ofTenant tenant: String, now: Int64?) -> JSONValue?
}

/// The names `$tenant.NAME` may use: a `var` naming another is refused in strict mode.
public enum TenantAttributes {
    public static let names = ["id", "plan", "planName", "planOrder", "status", "validUntil", "active"]
}
