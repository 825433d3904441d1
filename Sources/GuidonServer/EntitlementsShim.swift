public import GuidonEntitlements

// TEMPORARY, until branch ent-serve ("Daemon: serve entitlements") is merged: it adds
// `ServedConfig.entitlements`. Delete this file when merging main.
extension ServedConfig {
    public var entitlements: Entitlements? { nil }
}

extension ServedConfig {
    public var tenantAttribute: String { "tenantId" }
}
