import Foundation
import CAllocCounter
@testable import GuidonEngine
import GuidonJSON
import Testing

@testable import GuidonEntitlements

/// `{"entitled": …}` and `$tenant.…` in flags' targeting, evaluated by the engine against the
/// compiled example entitlements (the engine sees them as a `TenantDirectory`).
@Suite struct TargetingTests {
    static let flags = #"""
        {"flags": {
          "dashboard": {"state": "ENABLED", "variants": {"new": "new", "old": "old"}, "defaultVariant": "old",
                        "targeting": {"if": [{"entitled": "analytics"}, "new", "old"]}},
          "by-plan": {"state": "ENABLED", "variants": {"enterprise": 3, "growth": 2, "other": 0}, "defaultVariant": "other",
                      "targeting": {"if": [{"==": [{"var": "$tenant.plan"}, "enterprise"]}, "enterprise",
                                           {"==": [{"var": "$tenant.plan"}, "growth"]}, "growth", "other"]}},
          "lapsed": {"state": "ENABLED", "variants": {"yes": true, "no": false}, "defaultVariant": "no",
                     "targeting": {"if": [{"!": {"var": "$tenant.active"}}, "yes", "no"]}},
          "voice-beta": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                         "targeting": {"if": [{"and": [{"entitled": "voice_ai"}, {"!=": [{"var": "$tenant.status"}, "past_due"]}]}, "on", "off"]}}
        }}
        """#

    func snapshot(_ e: Entitlements?, mode: CompileOptions.Mode = .strict, flags: String = Self.flags) throws(ValidationReport) -> Snapshot {
        try Snapshot.compile(
            json: Array(flags.utf8), options: CompileOptions(mode: mode, features: e.map { Set($0.features.map(\.key)) }))
    }

    func context(_ e: Entitlements?, tenant: String?) -> EvaluationContext {
        var context = EvaluationContext(attributes: tenant.map { ["tenantId": .string($0)] } ?? [:])
        context.tenantDirectory = e
        context.tenant = tenant
        return context
    }

    @Test func entitledAndTenantVariables() throws {
        let e = try example()
        let s = try snapshot(e)
        func value(_ flag: String, _ tenant: String?) -> JSONValue? {
            s.evaluate(flag, context: context(e, tenant: tenant), now: december15).value
        }
        // analytics: granted by starter (and every plan above it).
        #expect(value("dashboard", "5") == "new")
        #expect(value("dashboard", "acme") == "new")
        #expect(value("dashboard", "nobody") == "old")
        #expect(value("dashboard", nil) == "old")
        #expect(value("by-plan", "hooli") == 3)
        #expect(value("by-plan", "acme") == 2)
        #expect(value("by-plan", "5") == 0)
        #expect(value("by-plan", "nobody") == 0)
        // umbrella's subscription is canceled: not active; acme's is.
        #expect(value("lapsed", "umbrella") == true)
        #expect(value("lapsed", "acme") == false)
        // tenant 5: voice_ai by an override, subscription active.
        #expect(value("voice-beta", "5") == true)
        #expect(value("voice-beta", "umbrella") == false)
        // Without a directory in the context (no entitlements served), nothing is entitled.
        #expect(s.evaluate("dashboard", context: context(nil, tenant: "5"), now: december15).value == "old")
    }

    @Test func strictModeRejectsAnUnknownFeature() throws {
        let e = try example()
        let flags = #"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a", "targeting": {"if": [{"entitled": "voice_aj"}, "b", "a"]}}}}"#
        do throws(ValidationReport) {
            _ = try snapshot(e, flags: flags)
            Issue.record("compiled")
        } catch {
            #expect(error.errors.count == 1)
            #expect(error.errors.first?.message.contains("\"voice_aj\" is not a feature") == true)
            #expect(error.errors.first?.message.contains("did you mean \"voice_ai\"?") == true)
            #expect(error.errors.first?.path == "flags.f.targeting.if[0].entitled")
        }
        // With no entitlements at all, strict mode says so.
        do throws(ValidationReport) {
            _ = try snapshot(nil, flags: flags)
            Issue.record("compiled")
        } catch {
            #expect(error.errors.first?.message.contains("no entitlements file is served") == true)
        }
        // Lenient: a warning, and the rule answers false.
        let lenient = try snapshot(e, mode: .lenient, flags: flags)
        #expect(lenient.warnings.count == 1)
        #expect(lenient.evaluate("f", context: context(e, tenant: "5"), now: december15).value == 1)
        // A feature that is not a string literal, or the wrong number of arguments.
        for bad in [#"{"entitled": 5}"#, #"{"entitled": ["a", "b"]}"#] {
            let flags = #"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a", "targeting": {"if": [\#(bad), "a", "a"]}}}}"#
            #expect(throws: ValidationReport.self) { try snapshot(e, flags: flags) }
        }
    }

    @Test func strictModeRejectsAnUnknownTenantAttribute() throws {
        let e = try example()
        let flags = #"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a", "targeting": {"if": [{"==": [{"var": "$tenant.plna"}, "growth"]}, "b", "a"]}}}}"#
        do throws(ValidationReport) {
            _ = try snapshot(e, flags: flags)
            Issue.record("compiled")
        } catch {
            #expect(error.errors.count == 1)
            #expect(error.errors.first?.message.contains("\"$tenant.plna\" is not a tenant attribute") == true, "\(error)")
            #expect(error.errors.first?.message.contains("did you mean \"$tenant.plan\"?") == true, "\(error)")
            #expect(error.errors.first?.path == "flags.f.targeting.if[0].==[0].var")
        }
        // `$tenant` on its own names no attribute either.
        let whole = flags.replacingOccurrences(of: "$tenant.plna", with: "$tenant")
        #expect(throws: ValidationReport.self) { try snapshot(e, flags: whole) }
        // Lenient: a warning, and the attribute reads null for every tenant.
        let lenient = try snapshot(e, mode: .lenient, flags: flags)
        #expect(lenient.warnings.count == 1)
        #expect(lenient.evaluate("f", context: context(e, tenant: "acme"), now: december15).value == 1)
        // Every attribute the directory knows compiles in strict mode, and deeper paths too.
        for name in TenantAttributes.names + ["plan.length"] {
            let ok = flags.replacingOccurrences(of: "$tenant.plna", with: "$tenant.\(name)")
            _ = try snapshot(e, flags: ok)
        }
        // A path computed from the context is not checked (nothing to check it against until
        // evaluation); one computed from constants is folded, and checked.
        let computed = flags.replacingOccurrences(of: #"{"var": "$tenant.plna"}"#, with: #"{"var": {"cat": ["$tenant.", {"var": "attr"}]}}"#)
        _ = try snapshot(e, flags: computed)
        let folded = flags.replacingOccurrences(of: #"{"var": "$tenant.plna"}"#, with: #"{"var": {"cat": ["$tenant.", "plna"]}}"#)
        #expect(throws: ValidationReport.self) { try snapshot(e, flags: folded) }
    }

    @Test func aCompileWithOtherFeaturesReusesNoFlag() throws {
        let e = try example()
        let first = try snapshot(e)
        let same = try Snapshot.compile(json: Array(Self.flags.utf8), options: CompileOptions(features: Set(e.features.map(\.key))), reusing: first)
        #expect(same.compiledCount == 0)
        var fewer = Set(e.features.map(\.key))
        fewer.remove("telegram_bot")
        let other = try Snapshot.compile(json: Array(Self.flags.utf8), options: CompileOptions(features: fewer), reusing: first)
        #expect(other.compiledCount == 4)
    }

    @Test func evaluatingAllocatesNothing() throws {
        let e = try example()
        let s = try snapshot(e)
        let contexts = ["5", "acme", "umbrella", "nobody"].map { context(e, tenant: $0) }
        let keys = ["dashboard", "by-plan", "lapsed", "voice-beta"]
        var total = 0
        func evaluateAll() -> UInt64 {
            let before = guidon_thread_alloc_count()
            for _ in 0..<50 {
                for i in 0..<contexts.count {
                    for k in 0..<keys.count {
                        s.withResult(keys[k], context: contexts[i], now: december15) { total += $0.served?.count ?? 0 }
                    }
                }
            }
            return guidon_thread_alloc_count() - before
        }
        _ = evaluateAll()
        let allocations = evaluateAll()
        #expect(total > 0)
        // 800 evaluations; a debug build's loops may allocate once or twice. (`in` is left out:
        // in a debug build its scan of the list allocates an iterator, as every array loop does.)
        if guidon_alloc_counting() != 0 { #expect(allocations <= 2, "\(allocations) allocations") }
    }
}
