/// Why an entitlement told a tenant no: the closed set of reasons the entitlements engine tells
/// apart (`GuidonEntitlements`' order of precedence), as `guidon_entitlement_denials_total`
/// labels them. Declared here, beside `EncodedResult`, which carries one for a feature's answer
/// that denies (`denial`), so that a server counts denials without asking again.
public enum EntitlementDenialReason: UInt8, CaseIterable, Sendable, BitwiseCopyable {
    /// The tenant's plan does not grant the feature (and its default is off).
    case notGranted
    /// An override turns the feature off for the tenant.
    case override
    /// The plan grants it, but the subscription is `past_due`.
    case pastDue
    /// … `canceled`.
    case canceled
    /// … `expired`.
    case expired
    /// … but the subscription's `validUntil` has passed.
    case ended
    /// The tenant has no plan (a lenient-mode document).
    case noPlan
    /// The context names a tenant the document does not have.
    case unknownTenant
    /// The context names no tenant (no `tenantId`, or not a string or integer).
    case noTenant
    /// The feature is not in the document (`{"entitled": "nope"}` in lenient mode): counted
    /// without its key.
    case unknownFeature

    /// The label value (snake case, as OpenTelemetry's enumerations are written).
    public var label: String {
        switch self {
        case .notGranted: "not_granted"
        case .override: "override"
        case .pastDue: "past_due"
        case .canceled: "canceled"
        case .expired: "expired"
        case .ended: "ended"
        case .noPlan: "no_plan"
        case .unknownTenant: "unknown_tenant"
        case .noTenant: "no_tenant"
        case .unknownFeature: "unknown_feature"
        }
    }
}

/// A feature's answer that tells the tenant no: which feature (its position in the entitlements
/// document, -1 for a key that is no feature) and why. "No" is "not entitled", as the `entitled`
/// operator and `consume` read it: a boolean feature answering `false`, or a configuration
/// feature answering its default (neither an override nor the plan grants it).
public struct EntitlementDenial: Sendable, Hashable, BitwiseCopyable {
    public var feature: Int32
    public var reason: EntitlementDenialReason

    @inlinable
    public init(feature: Int32, reason: EntitlementDenialReason) {
        self.feature = feature
        self.reason = reason
    }
}
