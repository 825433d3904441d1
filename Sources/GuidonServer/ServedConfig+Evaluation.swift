public import GuidonEngine
import GuidonEntitlements
import GuidonJSON
public import GuidonMetrics
import GuidonOFREP

/// How any request evaluates keys against the served configuration: the query socket's `eval`
/// and `evalAll` and OFREP's two endpoints all come through these functions, so that what
/// answers a key is decided here, once: a feature of the entitlements file (when one is
/// served) answers for the context's tenant (its `tenantAttribute`); any other key is a flag's.
/// The files validate together so that no key is both.
///
/// Each lends its results (`EncodedResult`: the reply's text, written when the flag or the
/// entitlements were compiled), so that answering allocates nothing; they are inlined into the
/// request path, and pass the caller's context closure on as it is (`reading:`), so that the
/// socket's request path costs what it cost when it called the snapshot directly (callgrind:
/// the same instructions per request). Without entitlements the only addition is one test of
/// an optional.
///
/// A feature's answer that denies the tenant carries the denial (`EncodedResult.denial`) for the
/// caller to count; a flag's `{"entitled": …}` asks `tenants`, the loop's counting directory
/// (`LoopCounters.tenantDirectory`), when the caller passes one for these entitlements.
extension ServedConfig {
    /// Evaluates `key` (a flag's value of `type`, when given) for `context`, which is read only
    /// if the key's rules need it (or the key is a feature), and lends `body` the result.
    @inline(__always)
    public func withResult(
        _ key: String, context: @autoclosure () -> EvaluationContext, type: ValueType? = nil,
        tenants: @autoclosure () -> CountingTenantDirectory? = nil, _ body: (EncodedResult) -> Void
    ) {
        if let entitlements {
            let attribute = tenantAttribute
            let answered: Void? = entitlements.withResult(
                feature: key, tenantReading: { Entitlements.tenantID(from: context().attributes[attribute]) }, type: type, body)
            if answered != nil { return }
            // A flag whose targeting asks about the tenant (`entitled`, `$tenant.…`) finds it in the context.
            return snapshot.withResult(
                key, reading: { Self.withTenant(context(), entitlements, attribute, tenants()) }, type: type, body)
        }
        snapshot.withResult(key, reading: context, type: type, body)
    }

    /// Evaluates `keys` in order, against this one configuration, reading `context` at most once.
    @inline(__always)
    public func forEachResult(
        _ keys: [String], context: @autoclosure () -> EvaluationContext, type: ValueType? = nil,
        tenants: @autoclosure () -> CountingTenantDirectory? = nil, _ body: (EncodedResult) -> Void
    ) {
        guard let entitlements else { return snapshot.forEachResult(keys, reading: context, type: type, body) }
        let attribute = tenantAttribute
        var decoded: EvaluationContext?
        func read() -> EvaluationContext {
            if let decoded { return decoded }
            let value = Self.withTenant(context(), entitlements, attribute, tenants())
            decoded = value
            return value
        }
        for key in keys {
            let answered: Void? = entitlements.withResult(
                feature: key, tenantReading: { Entitlements.tenantID(from: read().attributes[attribute]) }, type: type, body)
            if answered == nil { snapshot.withResult(key, reading: read, type: type, body) }
        }
    }

    /// Evaluates every key (the flags in document order, then the features in document order),
    /// reading `context` at most once.
    @inline(__always)
    public func forEachResult(
        context: @autoclosure () -> EvaluationContext, tenants: @autoclosure () -> CountingTenantDirectory? = nil,
        _ body: (EncodedResult) -> Void
    ) {
        guard let entitlements else { return snapshot.forEachResult(reading: context, body) }
        let attribute = tenantAttribute
        var decoded: EvaluationContext?
        func read() -> EvaluationContext {
            if let decoded { return decoded }
            let value = Self.withTenant(context(), entitlements, attribute, tenants())
            decoded = value
            return value
        }
        snapshot.forEachResult(reading: read, body)
        entitlements.forEachResult(tenant: read().tenant, body)
    }

    /// `context` with the tenant it names and the entitlements to ask about it: `tenants` when
    /// it answers from these entitlements (a loop's, counting denials), else the entitlements.
    @inline(__always)
    static func withTenant(
        _ context: EvaluationContext, _ entitlements: Entitlements, _ attribute: String, _ tenants: CountingTenantDirectory? = nil
    ) -> EvaluationContext {
        var context = context
        if let tenants, tenants.entitlements === entitlements {
            context.tenantDirectory = tenants
        } else {
            context.tenantDirectory = entitlements
        }
        context.tenant = Entitlements.tenantID(from: context.attributes[attribute])
        return context
    }

    /// The tenant `context` names (its `tenantAttribute`: a string, or an integer as its digits).
    public func tenant(in context: EvaluationContext) -> String? {
        Entitlements.tenantID(from: context.attributes[tenantAttribute])
    }
}

/// The served configuration as OFREP evaluates it on the HTTP listener's thread, asking the
/// listener's counting directory (`tenants`) for `{"entitled": …}` in flags' targeting.
struct CountingOFREPSource: OFREPSource {
    let served: ServedConfig
    let tenants: CountingTenantDirectory?

    var revision: String { served.revision }
    var flagSetMetadata: JSONObject { served.flagSetMetadata }

    @inline(__always)
    func withResult(_ key: String, context: @autoclosure () -> EvaluationContext, type: ValueType?, _ body: (EncodedResult) -> Void) {
        served.withResult(key, context: context(), type: type, tenants: tenants, body)
    }

    @inline(__always)
    func forEachResult(context: @autoclosure () -> EvaluationContext, _ body: (EncodedResult) -> Void) {
        served.forEachResult(context: context(), tenants: tenants, body)
    }
}
