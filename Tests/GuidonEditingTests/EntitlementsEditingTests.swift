import Foundation
import GuidonEditing
import GuidonEngine
import GuidonEntitlements
import GuidonJSON
import Testing

/// The bundled example entitlements file, as bytes and as text.
let exampleEntitlements: [UInt8] = {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("protocol/examples/entitlements.json")
    return Array(try! Data(contentsOf: url))
}()

/// 2026-12-07T09:00:00Z: the examples' overrides of tenant 5 are then in force.
let editNow: Int64 = 1_796_634_000

private func apply(_ action: EntitlementsOperation.Action, to document: [UInt8] = exampleEntitlements, by: String? = nil, reason: String? = nil) throws -> EntitlementsEdit {
    try EntitlementsEditor().apply(EntitlementsOperation(action, by: by, reason: reason, now: editNow), to: document)
}

private func refusal(_ action: EntitlementsOperation.Action, to document: [UInt8] = exampleEntitlements) -> EditError? {
    do {
        _ = try apply(action, to: document)
        return nil
    } catch let error as EditError {
        return error
    } catch {
        return nil
    }
}

/// `document` with `old` replaced by `new`, which must occur exactly once.
private func replacing(_ old: String, _ new: String, in document: [UInt8] = exampleEntitlements) -> String {
    let source = text(document)
    #expect(source.components(separatedBy: old).count == 2, "\(old) is not in the document exactly once")
    return source.replacingOccurrences(of: old, with: new)
}

/// `actual` is `expected`; otherwise the issue shows their unified diff.
private func expectText(_ actual: [UInt8], _ expected: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let diff = TextDiff.unified(Array(expected.utf8), actual, path: "entitlements.json")
    #expect(diff.isEmpty, "\n\(diff)", sourceLocation: sourceLocation)
}

private func value(_ edit: EntitlementsEdit, _ feature: String, _ tenant: String) -> JSONValue? {
    edit.entitlements.evaluate(feature, tenant: tenant, now: editNow)?.value
}

private func variant(_ edit: EntitlementsEdit, _ feature: String, _ tenant: String) -> String? {
    edit.entitlements.evaluate(feature, tenant: tenant, now: editNow)?.variant
}

@Suite("Entitlements edits")
struct EntitlementsEditingTests {
    // MARK: Tenants

    @Test func setPlanChangesOnlyThePlansName() throws {
        let edit = try apply(.setPlan(tenant: "5", plan: "growth", status: nil))
        expectText(edit.document, replacing(
            #""plan": "starter", "status": "active", "validUntil": "2027-06-30T00:00:00Z""#,
            #""plan": "growth", "status": "active", "validUntil": "2027-06-30T00:00:00Z""#))
        #expect(edit.summary == "tenant 5: plan starter → growth")
        #expect(variant(edit, "whatsapp_channel", "5") == "plan:growth")
        #expect(edit.draft.before?.object?["plan"] == "starter" && edit.draft.after?.object?["plan"] == "growth")
    }

    @Test func setPlanCreatesATenantAfterTheLast() throws {
        let edit = try apply(.setPlan(tenant: "wayne", plan: "growth", status: "trialing"))
        let expected = replacing(
            #""expiresAt": "2027-01-15T00:00:00Z"}}}"#,
            #""expiresAt": "2027-01-15T00:00:00Z"}}},"# + "\n    " + #""wayne": {"plan": "growth", "status": "trialing"}"#)
        expectText(edit.document, expected)
        #expect(edit.summary == "tenant wayne: created on plan growth (trialing)")
        #expect(variant(edit, "voice_ai", "wayne") == "plan:growth")
    }

    @Test func setStatusAndValidUntil() throws {
        let edit = try apply(.setStatus(tenant: "acme", status: "past_due", validUntil: .set(Instant.parse("2027-02-01")!)))
        expectText(edit.document, replacing(
            #""acme": {"name": "Acme Corp", "plan": "growth", "status": "active"}"#,
            #""acme": {"name": "Acme Corp", "plan": "growth", "status": "past_due", "validUntil": "2027-02-01T00:00:00Z"}"#))
        #expect(edit.summary == "tenant acme: status active → past_due, validUntil none → 2027-02-01T00:00:00Z")
        #expect(variant(edit, "voice_ai", "acme") == "default")

        let cleared = try apply(.setStatus(tenant: "globex", status: "active", validUntil: .clear))
        expectText(cleared.document, replacing(
            #""plan": "growth", "status": "past_due", "validUntil": "2027-03-31T23:59:59+02:00","#,
            #""plan": "growth", "status": "active","#))
        #expect(variant(cleared, "voice_ai", "globex") == "plan:growth")
    }

    @Test func disablingAnOverrideChangesOneValue() throws {
        let change = OverrideChange(
            enabled: false, notes: "premium trial", by: "sam.okafor", at: Instant.parse("2026-12-01T10:00:00Z"),
            expiresAt: Instant.parse("2027-01-01T00:00:00Z"))
        let edit = try apply(.setOverride(tenant: "5", feature: "voice_ai", change))
        expectText(edit.document, replacing(#""voice_ai": {"enabled": true,"#, #""voice_ai": {"enabled": false,"#))
        #expect(edit.summary == "tenant 5: voice_ai off (override by sam.okafor, until 2027-01-01T00:00:00Z), was on")
        #expect(value(edit, "voice_ai", "5") == false)
    }

    @Test func enablingWritesNotesByAndAt() throws {
        let edit = try apply(
            .setOverride(tenant: "acme", feature: "sso_saml", OverrideChange(enabled: true, expiresAt: Instant.parse("2027-03-01"))),
            by: "sam.okafor", reason: "enabled for the premium trial")
        let expected = replacing(
            #""acme": {"name": "Acme Corp", "plan": "growth", "status": "active"},"#,
            """
            "acme": {
                  "name": "Acme Corp",
                  "plan": "growth",
                  "status": "active",
                  "overrides": {
                    "sso_saml": {
                      "enabled": true,
                      "notes": "enabled for the premium trial",
                      "by": "sam.okafor",
                      "at": "2026-12-07T09:00:00Z",
                      "expiresAt": "2027-03-01T00:00:00Z"
                    }
                  }
                },
            """)
        expectText(edit.document, expected)
        #expect(value(edit, "sso_saml", "acme") == true)
        let metadata = edit.entitlements.evaluate("sso_saml", tenant: "acme", now: editNow)?.metadata
        #expect(metadata?["by"] == "sam.okafor" && metadata?["notes"] == "enabled for the premium trial")
    }

    @Test func anOverrideAddedToAMultiLineTenant() throws {
        let edit = try apply(.setOverride(tenant: "5", feature: "analytics", OverrideChange(enabled: false, notes: "not yet", by: "li.wei")))
        let expected = replacing(
            #""at": "2026-12-01T10:00:00Z", "expiresAt": "2027-01-01T00:00:00Z"}"#,
            #""at": "2026-12-01T10:00:00Z", "expiresAt": "2027-01-01T00:00:00Z"},"# + "\n        "
                + #""analytics": {"enabled": false, "notes": "not yet", "by": "li.wei", "at": "2026-12-07T09:00:00Z"}"#)
        expectText(edit.document, expected)
        #expect(value(edit, "analytics", "5") == false)
    }

    @Test func clearingTheLastOverrideRemovesTheOverridesMember() throws {
        let edit = try apply(.clearOverride(tenant: "5", feature: "voice_ai"))
        let expected = replacing(
            """
            "validUntil": "2027-06-30T00:00:00Z",
                  "overrides": {
                    "voice_ai": {"enabled": true, "notes": "premium trial", "by": "sam.okafor",
                                 "at": "2026-12-01T10:00:00Z", "expiresAt": "2027-01-01T00:00:00Z"}
                  }
            """,
            #""validUntil": "2027-06-30T00:00:00Z""#)
        expectText(edit.document, expected)
        #expect(edit.summary == "tenant 5: voice_ai override cleared (was on)")
        #expect(variant(edit, "voice_ai", "5") == "default")

        let one = try apply(.clearOverride(tenant: "initech", feature: "seats"))
        expectText(one.document, replacing(
            #"by": "maria.lopez", "at": "2026-11-02T09:00:00Z"},"# + "\n        " + #""seats": {"enabled": true, "config": {"max": 8}, "notes": "three contractors for the launch", "by": "maria.lopez", "at": "2026-11-02T09:05:00Z"}"#,
            #"by": "maria.lopez", "at": "2026-11-02T09:00:00Z"}"#))
    }

    @Test func deleteTenant() throws {
        let edit = try apply(.deleteTenant("acme"))
        expectText(edit.document, replacing("\n    " + #""acme": {"name": "Acme Corp", "plan": "growth", "status": "active"},"#, ""))
        #expect(edit.entitlements.tenant("acme") == nil)
    }

    // MARK: Bulk

    @Test func bulkForOneTenantIsOneEdit() throws {
        let edit = try apply(.bulk([
            .init(tenant: "initech", feature: "voice_ai", override: OverrideChange(enabled: true)),
            .init(tenant: "initech", feature: "seats", override: nil),
            .init(tenant: "initech", feature: "ai_assistant", override: OverrideChange(enabled: false)),
        ]), by: "ops.bot", reason: "pilot ended")
        #expect(edit.summary.hasPrefix("tenant initech: voice_ai on (override by ops.bot); seats override cleared (was on); ai_assistant off"), "\(edit.summary)")
        #expect(value(edit, "voice_ai", "initech") == true)
        #expect(variant(edit, "seats", "initech") == "plan:starter")
        #expect(variant(edit, "ai_assistant", "initech") == "override")
        // Only initech's text changed.
        let (prefix, suffix) = difference(exampleEntitlements, edit.document)
        let start = text(exampleEntitlements).utf8.count - text(exampleEntitlements).components(separatedBy: #""initech": {"#)[1].utf8.count
        #expect(prefix >= start)
        #expect(suffix >= text(exampleEntitlements).components(separatedBy: #""umbrella": {"#)[1].utf8.count)
    }

    @Test func bulkForOneFeatureAcrossTenants() throws {
        let edit = try apply(.bulk(["acme", "globex", "hooli", "stark"].map {
            .init(tenant: $0, feature: "priority_support", override: OverrideChange(enabled: true, notes: "incident 4711"))
        }), by: "li.wei")
        #expect(edit.summary == "feature priority_support: on for 4 tenants (acme, globex, hooli, stark)")
        for tenant in ["acme", "globex", "hooli", "stark"] { #expect(value(edit, "priority_support", tenant) == true) }
        #expect(value(edit, "priority_support", "5") == false)
        #expect(edit.draft.after?.object?.keys == ["acme", "globex", "hooli", "stark"])
        // Every other tenant keeps its bytes: 5, initech and umbrella.
        for kept in [#""5": {"#, #""initech": {"#, #""umbrella": {"name": "Umbrella""#] {
            #expect(text(edit.document).contains(kept))
        }
    }

    @Test func bulkRefusesWholeAndNamesTheChange() throws {
        let unknown = refusal(.bulk([
            .init(tenant: "acme", feature: "voice_ai", override: OverrideChange(enabled: false)),
            .init(tenant: "acme", feature: "voice_aii", override: OverrideChange(enabled: false)),
        ]))
        #expect(unknown?.code == .notFound)
        #expect(unknown?.message == #"no feature "voice_aii" in the entitlements document; did you mean "voice_ai"? (change 2)"#)
        let twice = refusal(.bulk([
            .init(tenant: "acme", feature: "voice_ai", override: OverrideChange(enabled: false)),
            .init(tenant: "acme", feature: "voice_ai", override: nil),
        ]))
        #expect(twice?.code == .invalidArgument)
        let noOverride = refusal(.bulk([.init(tenant: "acme", feature: "voice_ai", override: nil)]))
        #expect(noOverride?.message == #"tenant "acme" has no override of "voice_ai" to clear (change 1)"#)
    }

    // MARK: Plans

    @Test func createPlanGrantAndRevoke() throws {
        let created = try apply(.createPlan(name: "scale", definition: ["displayName": "Scale", "order": 4, "inherits": "growth", "grants": ["sso_saml": true]]))
        #expect(created.summary == "plan scale: created (order 4; inherits growth; grants sso_saml)")
        #expect(text(created.document).contains(#"},"# + "\n    " + #""scale": {"displayName": "Scale", "order": 4, "inherits": "growth", "grants": {"sso_saml": true}}"# + "\n  },"))
        #expect(created.entitlements.plan("scale")?.inherits == "growth")

        let granted = try apply(.grant(plan: "starter", feature: "voice_ai", grant: true))
        expectText(granted.document, replacing(#""analytics": true"# + "\n      }", #""analytics": true,"# + "\n        " + #""voice_ai": true"# + "\n      }"))
        #expect(granted.summary == "plan starter: grants voice_ai")
        #expect(variant(granted, "voice_ai", "acme") == "plan:growth")

        let configured = try apply(.grant(plan: "starter", feature: "seats", grant: ["config": ["max": 10]]))
        expectText(configured.document, replacing(#""seats": {"config": {"max": 5}}"#, #""seats": {"config": {"max": 10}}"#))
        #expect(configured.summary == #"plan starter: grants seats {"config":{"max":10}} (was {"config":{"max":5}})"#)

        // Own grant, nothing inherited: removed.
        let removed = try apply(.revoke(plan: "growth", feature: "whatsapp_channel"))
        expectText(removed.document, replacing(#""whatsapp_channel": true,"# + "\n        ", ""))
        #expect(removed.summary == "plan growth: no longer grants whatsapp_channel")
        // Inherited: false over it.
        let overInherited = try apply(.revoke(plan: "growth", feature: "analytics"))
        #expect(overInherited.summary == "plan growth: revokes analytics (false over the grant inherited from starter)")
        #expect(variant(overInherited, "analytics", "acme") == "default")
        #expect(variant(overInherited, "analytics", "5") == "plan:starter")
        // Through "*".
        let fromStar = try apply(.revoke(plan: "enterprise", feature: "audit_log_export"))
        #expect(fromStar.summary == #"plan enterprise: revokes audit_log_export (false, excepting it from "*")"#)
        #expect(variant(fromStar, "audit_log_export", "hooli") == "default")
        #expect(refusal(.revoke(plan: "starter", feature: "sso_saml"))?.message == #"plan "starter" does not grant "sso_saml": nothing to revoke"#)
        #expect(refusal(.revoke(plan: "starter", feature: "telegram_bot"))?.message.contains("core feature") == true)
        #expect(refusal(.createPlan(name: "growth", definition: [:]))?.code == .alreadyExists)
        #expect(refusal(.grant(plan: "grwth", feature: "voice_ai", grant: true))?.message == #"no plan "grwth" in the entitlements document; did you mean "growth"?"#)
    }

    @Test func updatePlanChangesOnlyTheMembersGiven() throws {
        let renamed = try apply(.updatePlan(name: "growth", changes: PlanChanges(displayName: .set("Growth Plus"), order: .set(5))), by: "ana", reason: "repricing")
        expectText(renamed.document, replacing(
            #""displayName": "Growth", "order": 2, "inherits": "starter","#, #""displayName": "Growth Plus", "order": 5, "inherits": "starter","#))
        #expect(renamed.summary == #"plan growth: displayName "Growth" → "Growth Plus", order 2 → 5"#)
        #expect(renamed.entitlements.plan("growth")?.displayName == "Growth Plus" && renamed.entitlements.plan("growth")?.order == 5)
        #expect(renamed.draft.before?.object?["order"] == 2 && renamed.draft.after?.object?["order"] == 5)
        #expect(renamed.draft.after?.object?["grants"] == renamed.draft.before?.object?["grants"])
        // Its grants, and every other byte, are untouched.
        #expect(variant(renamed, "voice_ai", "acme") == "plan:growth")

        // Removed: inherits goes with its comma; growth no longer has starter's analytics.
        let orphaned = try apply(.updatePlan(name: "growth", changes: PlanChanges(inherits: .remove)))
        expectText(orphaned.document, replacing(#""order": 2, "inherits": "starter","#, #""order": 2,"#))
        #expect(orphaned.summary == #"plan growth: inherits "starter" → none"#)
        #expect(variant(orphaned, "analytics", "acme") == "default")
        #expect(variant(orphaned, "analytics", "5") == "plan:starter")

        // Added: in its usual place among the plan's members.
        let described = try apply(.updatePlan(name: "starter", changes: PlanChanges(description: .set("For small shops"))))
        expectText(described.document, replacing(
            #""displayName": "Starter", "order": 1,"#, #""displayName": "Starter", "description": "For small shops", "order": 1,"#))
        #expect(described.summary == #"plan starter: description none → "For small shops""#)
        // A new parent.
        let reparented = try apply(.updatePlan(name: "enterprise", changes: PlanChanges(inherits: .set("starter"))))
        expectText(reparented.document, replacing(#""order": 3, "inherits": "growth","#, #""order": 3, "inherits": "starter","#))
        #expect(reparented.entitlements.plan("enterprise")?.inherits == "starter")

        // As it already is: nothing changes.
        let same = try apply(.updatePlan(name: "growth", changes: PlanChanges(displayName: .set("Growth"))))
        #expect(!same.changed && same.document == exampleEntitlements)
        #expect(same.summary == "plan growth: unchanged (already as given)")
    }

    @Test func updatePlanRefusesCyclesUnknownPlansAndNothing() throws {
        let cycle = try #require(refusal(.updatePlan(name: "starter", changes: PlanChanges(inherits: .set("enterprise")))))
        #expect(cycle.code == .invalidArgument)
        #expect(cycle.message == #"plan "starter" cannot inherit from "enterprise", which inherits from it: "starter" → "enterprise" → "growth" → "starter" would be a cycle"#)
        #expect(refusal(.updatePlan(name: "growth", changes: PlanChanges(inherits: .set("growth"))))?.message == #"plan "growth" cannot inherit from itself"#)
        let parent = try #require(refusal(.updatePlan(name: "enterprise", changes: PlanChanges(inherits: .set("grwth")))))
        #expect(parent.code == .notFound)
        #expect(parent.message == #"plan "enterprise" cannot inherit from "grwth": no plan "grwth" in the entitlements document; did you mean "growth"?"#)
        let plan = try #require(refusal(.updatePlan(name: "grwth", changes: PlanChanges(order: .set(9)))))
        #expect(plan.code == .notFound && plan.message == #"no plan "grwth" in the entitlements document; did you mean "growth"?"#)
        let nothing = try #require(refusal(.updatePlan(name: "growth", changes: PlanChanges())))
        #expect(nothing.code == .invalidArgument && nothing.message.hasPrefix(#"nothing to change in plan "growth""#), "\(nothing.message)")
        // A cycle already in the file (edited by hand) is the compiler's: refused with its report.
        let looped = Array(replacing(#""displayName": "Starter", "order": 1,"#, #""displayName": "Starter", "order": 1, "inherits": "enterprise","#).utf8)
        let report = try #require(refusal(.updatePlan(name: "growth", changes: PlanChanges(order: .set(7))), to: looped))
        #expect(report.code == .invalidDocument)
        #expect(report.report?.errors.contains { $0.path == "plans.starter.inherits" && $0.message.contains("inherits from itself") } == true, "\(report)")
    }

    // MARK: The document

    @Test func setTimezoneReplacesOnlyTheZone() throws {
        let edit = try apply(.setTimezone("America/New_York"))
        expectText(edit.document, replacing(#""timezone": "Europe/Berlin","#, #""timezone": "America/New_York","#))
        #expect(edit.summary == "timezone: Europe/Berlin → America/New_York" && edit.draft.subject == "timezone")
        #expect(edit.entitlements.timezone == "America/New_York")
        #expect(edit.draft.before == .object(["timezone": "Europe/Berlin"]) && edit.draft.after == .object(["timezone": "America/New_York"]))
        let same = try apply(.setTimezone("Europe/Berlin"))
        #expect(!same.changed && same.summary == "timezone: already Europe/Berlin")

        // A document without one: the member is added after "$schema", in the root's layout.
        let without = Array(replacing(#""timezone": "Europe/Berlin","# + "\n  ", "").utf8)
        let added = try apply(.setTimezone("Europe/Berlin"), to: without)
        expectText(added.document, text(exampleEntitlements))
        #expect(added.summary == "timezone: none (UTC) → Europe/Berlin")
        let bare = Array(#"{"features": {"a": {"description": "x", "default": false}}, "plans": {}, "tenants": {}}"#.utf8)
        expectText(try apply(.setTimezone("UTC"), to: bare).document, #"{"timezone": "UTC", "features": {"a": {"description": "x", "default": false}}, "plans": {}, "tenants": {}}"#)
    }

    @Test func setTimezoneRefusesAZoneTheHostDoesNotKnow() throws {
        let editor = EntitlementsEditor(options: EntitlementsCompileOptions(isKnownTimeZone: { ["UTC", "Europe/Berlin", "Europe/Paris"].contains($0) }))
        let operation = EntitlementsOperation(.setTimezone("Europe/Atlantis"), now: editNow)
        #expect(try editor.apply(EntitlementsOperation(.setTimezone("Europe/Paris"), now: editNow), to: exampleEntitlements).entitlements.timezone == "Europe/Paris")
        do {
            _ = try editor.apply(operation, to: exampleEntitlements)
            Issue.record("an unknown zone was accepted")
        } catch {
            #expect(error.code == .invalidDocument)
            #expect(error.message == "timezone: the change (Europe/Berlin → Europe/Atlantis) would make an entitlements document that does not validate (1 error); nothing was changed")
            let problem = try #require(error.report?.errors.first)
            #expect(problem.path == "timezone" && problem.line == 3, "\(problem)")
            #expect(problem.message == #"unknown time zone "Europe/Atlantis"; use an IANA name such as "Europe/Paris" or "UTC""#)
        }
        // Without a zone database: a name not spelled like one.
        #expect(refusal(.setTimezone("Berlin"))?.code == .invalidDocument)
        #expect(refusal(.setTimezone(""))?.code == .invalidArgument)
    }

    // MARK: Features

    @Test func addFeatureIsAlignedWithItsSiblings() throws {
        let edit = try apply(.addFeature(key: "beta_inbox", definition: ["default": false, "category": "channels", "description": "The new inbox"]))
        expectText(edit.document, replacing(
            #""priority_support":  {"description": "A four-hour response time", "category": "support", "default": false}"# + "\n  },",
            #""priority_support":  {"description": "A four-hour response time", "category": "support", "default": false},"# + "\n    "
                + #""beta_inbox":        {"description": "The new inbox", "category": "channels", "default": false}"# + "\n  },"))
        #expect(edit.summary == "feature beta_inbox: added (default false)")
        #expect(edit.entitlements.feature("beta_inbox")?.kind == .boolean)
        // Enterprise grants "*": it has it.
        #expect(variant(edit, "beta_inbox", "hooli") == "plan:enterprise")
    }

    @Test func removeFeatureNamesWhatUsesItOrCascades() throws {
        let refused = refusal(.removeFeature(key: "seats", cascade: false))
        #expect(refused?.message == #"feature "seats" is still granted by plans starter, growth, enterprise and overridden for 1 tenant (initech): revoke and clear those first, or remove it with cascade (--cascade), which removes them too"#)
        let edit = try apply(.removeFeature(key: "seats", cascade: true))
        #expect(edit.summary == "feature seats: removed and its grants in starter, growth, enterprise and its overrides for 1 tenant")
        #expect(!text(edit.document).contains("\"seats\""))
        #expect(edit.entitlements.feature("seats") == nil)
        let unused = try apply(.removeFeature(key: "priority_support", cascade: false))
        #expect(unused.summary == "feature priority_support: removed")
        expectText(unused.document, replacing(
            #""audit_log_export":  {"description": "Export of the admin audit log", "category": "security", "default": false},"# + "\n    "
                + #""priority_support":  {"description": "A four-hour response time", "category": "support", "default": false}"#,
            #""audit_log_export":  {"description": "Export of the admin audit log", "category": "security", "default": false}"#))
    }

    // MARK: Validation

    @Test func aChangeThatWouldNotValidateIsRefusedWithItsReport() throws {
        let error = try #require(refusal(.grant(plan: "growth", feature: "voice_ai", grant: ["config": ["model": "x"]])))
        #expect(error.code == .invalidDocument)
        #expect(error.message.hasPrefix("plan growth: the change (grants voice_ai {\"config\":{\"model\":\"x\"}} (was {\"limits\":"), "\(error.message)")
        #expect(error.message.hasSuffix("would make an entitlements document that does not validate (1 error); nothing was changed"))
        let problem = try #require(error.report?.errors.first)
        #expect(problem.path.hasPrefix("plans.growth.grants.voice_ai"), "\(problem.path)")
        #expect(problem.line == 39)

        let override = try #require(refusal(.setOverride(tenant: "5", feature: "voice_ai", OverrideChange(enabled: true, config: ["a": 1]))))
        #expect(override.code == .invalidDocument)
        #expect(override.report?.errors.first?.path.hasPrefix("tenants.5.overrides.voice_ai.config") == true, "\(String(describing: override.report))")

        #expect(refusal(.setStatus(tenant: "5", status: "paused", validUntil: .keep))?.message
            == #""paused" is not a subscription status (one of active, trialing, past_due, canceled, expired)"#)
        #expect(refusal(.setPlan(tenant: "5", plan: "pro", status: nil))?.message.contains("its plans: \"starter\", \"growth\", \"enterprise\"") == true)
        #expect(refusal(.setOverride(tenant: "acm", feature: "voice_ai", OverrideChange(enabled: true)))?.message
            == #"no tenant "acm" in the entitlements document; did you mean "acme"? (put it on a plan first: set-plan creates it)"#)
        #expect(refusal(.setOverride(tenant: "5", feature: "voice_ai", OverrideChange(enabled: true, at: 100, expiresAt: 50)))?.code == .invalidArgument)
        #expect(refusal(.addFeature(key: "x", definition: ["description": "no default"]))?.message.contains("needs a \"default\"") == true)
        #expect(refusal(.setPlan(tenant: "5", plan: "growth", status: nil), to: Array("{\"features\": {\"a\": {\"default\": true}}, \"plans\": [".utf8))?.code == .invalidDocument)
    }

    @Test func aFeatureMayNotBecomeAFlagsKey() throws {
        let draft = try EntitlementsEditor().draft(
            EntitlementsOperation(.addFeature(key: "search-v2", definition: ["default": false, "description": "x"]), now: editNow), to: exampleEntitlements)
        #expect(throws: EditError.self) { try EntitlementsEditor().validate(draft, flagKeys: ["search-v2", "theme"]) }
    }

    // MARK: Scale

    @Test func anEditOfOneTenantAmongThousandsChangesOnlyItsLine() throws {
        var document = #"{"features": {"a": {"description": "A", "default": false}}, "plans": {"p": {"order": 1, "grants": {"a": true}}}, "tenants": {"#
        for i in 0..<5000 { document += (i > 0 ? ",\n" : "\n") + #"  "t\#(i)": {"plan": "p", "status": "active"}"# }
        document += "\n}}\n"
        let bytes = Array(document.utf8)
        let previous = try Entitlements.compile(json: bytes)
        let edit = try EntitlementsEditor().apply(
            EntitlementsOperation(.setOverride(tenant: "t2500", feature: "a", OverrideChange(enabled: false, by: "x")), now: editNow),
            to: bytes, reusing: previous)
        let expected = document.replacingOccurrences(
            of: #""t2500": {"plan": "p", "status": "active"}"#,
            with: #""t2500": {"plan": "p", "status": "active", "overrides": {"a": {"enabled": false, "by": "x", "at": "2026-12-07T09:00:00Z"}}}"#)
        expectText(edit.document, expected)
        #expect(edit.entitlements.evaluate("a", tenant: "t2500", now: editNow)?.value == false)
        #expect(edit.entitlements.evaluate("a", tenant: "t2501", now: editNow)?.value == true)
    }
    /// The daemon drafts with the served value, which finds a tenant through its index instead of
    /// delimiting every tenant: each tenant operation must make the same bytes, summary, before
    /// and after (or the same refusal) as without it, and a served value compiled from other
    /// bytes (the file was edited by hand since) must not be used.
    @Test func draftingWithTheServedValueChangesNothingButTheWay() throws {
        let served = try Entitlements.compile(json: exampleEntitlements)
        let stale = try Entitlements.compile(json: Array(replacing(#""acme": {"name": "Acme Corp""#, #""acme": {"name": "Acme Inc""#).utf8))
        let actions: [EntitlementsOperation.Action] = [
            .setOverride(tenant: "acme", feature: "voice_ai", OverrideChange(enabled: true, notes: "trial")),
            .setOverride(tenant: "5", feature: "voice_ai", OverrideChange(enabled: false)),
            .clearOverride(tenant: "5", feature: "voice_ai"),
            .clearOverride(tenant: "acme", feature: "voice_ai"),
            .setPlan(tenant: "globex", plan: "enterprise", status: "active"),
            .setPlan(tenant: "newco", plan: "starter", status: nil),
            .setStatus(tenant: "initech", status: "active", validUntil: .clear),
            .deleteTenant("umbrella"),
            .deleteTenant("nobody"),
            .bulk([
                .init(tenant: "hooli", feature: "voice_ai", override: OverrideChange(enabled: true)),
                .init(tenant: "acme", feature: "voice_ai", override: OverrideChange(enabled: false)),
            ]),
            .bulk([.init(tenant: "acme", feature: "voice_ai", override: OverrideChange(enabled: true)), .init(tenant: "nobody", feature: "voice_ai", override: OverrideChange(enabled: true))]),
        ]
        func outcome(_ action: EntitlementsOperation.Action, served: Entitlements?) -> String {
            do {
                let draft = try EntitlementsEditor().draft(EntitlementsOperation(action, by: "x", now: editNow), to: exampleEntitlements, served: served)
                return [text(draft.document), draft.summary, draft.subject, "\(draft.before.map(JSONWriter.string) ?? "-")",
                        "\(draft.after.map(JSONWriter.string) ?? "-")", "\(draft.changed)"].joined(separator: "\n")
            } catch {
                return "refused: \(error)"
            }
        }
        for action in actions {
            let plain = outcome(action, served: nil)
            #expect(outcome(action, served: served) == plain, "\(action)")
            #expect(outcome(action, served: stale) == plain, "\(action)")
        }
    }
}
