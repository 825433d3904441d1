import GuidonEngine
import GuidonJSON
import Testing

@testable import GuidonEntitlements

/// A compile that reuses a previous value answers exactly as a fresh compile does.
@Suite struct ReuseTests {
    /// Every answer of `e` for every tenant (and an unknown one) and feature, at a few instants.
    static func answers(_ e: Entitlements) -> [String] {
        var out: [String] = []
        let tenants = (try? e.tenants(TenantQuery(limit: 1000)).tenants.map(\.id)) ?? []
        for tenant in tenants + ["nobody"] {
            for now: Int64 in [december15, 1_798_761_600, 1_830_000_000] {
                var view: [UInt8] = []
                e.writeEntitlements(tenant: tenant, now: now, into: &view)
                out.append(String(decoding: view, as: UTF8.self))
                for feature in e.features {
                    if let limits = e.limits(tenant: tenant, feature: feature.key, now: now) { out.append("\(limits)") }
                }
            }
            out.append("\(String(describing: e.tenant(tenant)))")
        }
        return out
    }

    static func edited(_ document: [UInt8], _ edits: [(String, String)]) -> [UInt8] {
        var text = String(decoding: document, as: UTF8.self)
        for (old, new) in edits {
            precondition(text.contains(old), "no \(old)")
            text = text.replacing(old, with: new, maxReplacements: 1)
        }
        return Array(text.utf8)
    }

    func expectSameAsFresh(_ bytes: [UInt8], reusing previous: Entitlements, compiled expected: Int? = nil,
                           sourceLocation: SourceLocation = #_sourceLocation) throws -> Entitlements {
        let reused = try Entitlements.compile(json: bytes, options: options(), reusing: previous)
        let fresh = try Entitlements.compile(json: bytes, options: options())
        #expect(Self.answers(reused) == Self.answers(fresh), sourceLocation: sourceLocation)
        #expect(reused.warnings == fresh.warnings, sourceLocation: sourceLocation)
        if let expected { #expect(reused.compiledTenants == expected, sourceLocation: sourceLocation) }
        return reused
    }

    @Test func anUnchangedDocumentCompilesNoTenant() throws {
        let document = try exampleDocument()
        let first = try Entitlements.compile(json: document, options: options())
        #expect(first.compiledTenants == 7)
        let again = try expectSameAsFresh(document, reusing: first, compiled: 0)
        // The same tenants in the same order: the index is shared.
        #expect(again.tenants.index.lookup.slots == first.tenants.index.lookup.slots)
    }

    @Test func oneChangedTenantIsTheOnlyOneCompiled() throws {
        let document = try exampleDocument()
        let first = try Entitlements.compile(json: document, options: options())
        let changed = Self.edited(document, [(#""acme": {"name": "Acme Corp", "plan": "growth""#, #""acme": {"name": "Acme Corp", "plan": "enterprise""#)])
        let second = try expectSameAsFresh(changed, reusing: first, compiled: 1)
        #expect(second.evaluate("sso_saml", tenant: "acme", now: december15)?.value == true)
        #expect(first.evaluate("sso_saml", tenant: "acme", now: december15)?.value == false)
        let diff = second.diff(from: first)
        #expect(diff.tenants == EntitlementsDiff.Changes(added: [], changed: ["acme"], removed: []))
        #expect(diff.features.isEmpty && diff.plans.isEmpty && !diff.timezoneChanged)
        #expect(second.tenants.index.lookup.slots == first.tenants.index.lookup.slots)
    }

    @Test func changedOverridesAreRecompiledAndTheRestKeepTheirText() throws {
        let document = try exampleDocument()
        let first = try Entitlements.compile(json: document, options: options())
        let changed = Self.edited(document, [(#""notes": "premium trial""#, #""notes": "premium trial, extended""#)])
        let second = try expectSameAsFresh(changed, reusing: first, compiled: 1)
        #expect(second.evaluate("voice_ai", tenant: "5", now: december15)?.metadata["notes"] == "premium trial, extended")
        #expect(second.evaluate("seats", tenant: "initech", now: december15)?.value == ["max": 8])
    }

    @Test func addedRemovedAndMovedTenants() throws {
        let document = try exampleDocument()
        let first = try Entitlements.compile(json: document, options: options())
        // Remove acme, add wayne at the front, so that every other tenant moves.
        let changed = Self.edited(document, [
            (#""acme": {"name": "Acme Corp", "plan": "growth", "status": "active"},"#, ""),
            (#""tenants": {"#, #""tenants": {"wayne": {"plan": "enterprise", "status": "trialing"},"#),
        ])
        let second = try expectSameAsFresh(changed, reusing: first, compiled: 1)
        #expect(!second.hasTenant("acme") && second.hasTenant("wayne"))
        #expect(second.diff(from: first).tenants == EntitlementsDiff.Changes(added: ["wayne"], changed: [], removed: ["acme"]))
    }

    @Test func aChangedPlanRecompilesEveryTenant() throws {
        let document = try exampleDocument()
        let first = try Entitlements.compile(json: document, options: options())
        let changed = Self.edited(document, [(#""seats": {"config": {"max": 5}}"#, #""seats": {"config": {"max": 6}}"#)])
        let second = try expectSameAsFresh(changed, reusing: first, compiled: 7)
        // Growth and enterprise set seats of their own: only starter's grants changed.
        #expect(second.diff(from: first).plans.changed == ["starter"])
        // A changed feature does too.
        let third = try expectSameAsFresh(
            Self.edited(changed, [(#""default": {"max": 3}"#, #""default": {"max": 4}"#)]), reusing: second, compiled: 7)
        #expect(third.diff(from: second).features.changed == ["seats"])
        // The timezone does not: no tenant depends on it.
        let fourth = try expectSameAsFresh(
            Self.edited(changed, [(#""timezone": "Europe/Berlin""#, #""timezone": "Europe/Paris""#)]), reusing: second, compiled: 0)
        #expect(fourth.diff(from: second).timezoneChanged)
    }

    @Test func featuresAfterTheTenantsAreComparedToo() throws {
        let before = #"{"tenants": {"t": {"plan": "p", "status": "active"}}, "plans": {"p": {"order": 1, "grants": {"f": true}}}, "features": {"f": {"description": "F", "default": false}}}"#
        let after = #"{"tenants": {"t": {"plan": "p", "status": "active"}}, "plans": {"p": {"order": 1, "grants": {"f": true}}}, "features": {"f": {"description": "F", "default": true}, "g": {"description": "G", "default": false}}}"#
        let first = try compile(before)
        let second = try expectSameAsFresh(Array(after.utf8), reusing: first, compiled: 1)
        #expect(second.features.count == 2)
    }

    @Test func warningsOfReusedTenantsAreReplayedAndModesReclassifyThem() throws {
        let document = #"{"features": {"f": {"description": "F", "default": false}}, "plans": {"p": {"order": 1}}, "tenants": {"t": {"plan": "p", "status": "active", "overrides": {"nope": {"enabled": true}}}, "u": {"plan": "p", "status": "active", "colour": "red"}}}"#
        let lenient = try compile(document, mode: .lenient)
        #expect(lenient.warnings.map(\.path) == ["tenants.t.overrides.nope", "tenants.u.colour"])
        let again = try compile(document, mode: .lenient, reusing: lenient)
        #expect(again.compiledTenants == 0)
        #expect(again.warnings == lenient.warnings)
        // Strict mode, reusing the lenient compile: the same problem now rejects the document.
        do {
            _ = try Entitlements.compile(json: Array(document.utf8), options: options(.strict), reusing: lenient)
            Issue.record("accepted")
        } catch {
            #expect(error.errors.map(\.path) == ["tenants.t.overrides.nope"])
            #expect(error.errors.first?.line == 1)
        }
    }

    @Test func aRejectedRecompileLeavesThePreviousValueUsable() throws {
        let document = try exampleDocument()
        let first = try Entitlements.compile(json: document, options: options())
        let broken = Self.edited(document, [(#""status": "past_due""#, #""status": "late""#)])
        #expect(throws: ValidationReport.self) { try Entitlements.compile(json: broken, options: options(), reusing: first) }
        #expect(first.evaluate("whatsapp_channel", tenant: "acme", now: december15)?.value == true)
        _ = try expectSameAsFresh(document, reusing: first, compiled: 0)
    }
}
