import GuidonEngine
import GuidonJSON
import Testing

@testable import GuidonEntitlements

/// The order of precedence: override (unless expired) → plan grant (while the subscription
/// applies) → the feature's default.
@Suite struct PrecedenceTests {
    static let document = """
        {
          "features": {
            "reports": {"description": "Reports", "default": false},
            "chat": {"description": "Chat, on for everyone", "default": true},
            "export": {"description": "Exports", "default": false}
          },
          "plans": {
            "basic": {"displayName": "Basic", "order": 1, "grants": {"reports": true}},
            "pro": {"displayName": "Pro", "order": 2, "inherits": "basic", "grants": {"export": true}},
            "max": {"displayName": "Max", "order": 3, "inherits": "pro", "grants": {"*": true, "reports": false}}
          },
          "tenants": {
            "active": {"plan": "basic", "status": "active"},
            "trialing": {"plan": "basic", "status": "trialing"},
            "past_due": {"plan": "basic", "status": "past_due"},
            "canceled": {"plan": "basic", "status": "canceled"},
            "expired": {"plan": "basic", "status": "expired"},
            "lapsed": {"plan": "basic", "status": "active", "validUntil": "2026-12-01T00:00:00Z"},
            "pro": {"plan": "pro", "status": "active", "validUntil": "2027-01-01T00:00:00Z"},
            "max": {"plan": "max", "status": "active"},
            "override-on": {"plan": "basic", "status": "active",
              "overrides": {"export": {"enabled": true, "notes": "beta", "by": "ana", "at": "2026-12-01T09:00:00+01:00"}}},
            "override-off": {"plan": "pro", "status": "active",
              "overrides": {"reports": {"enabled": false, "by": "ops"}, "chat": {"enabled": false}}},
            "override-expiring": {"plan": "basic", "status": "active",
              "overrides": {"reports": {"enabled": false, "expiresAt": "2026-12-20T00:00:00Z"}}},
            "override-canceled": {"plan": "pro", "status": "canceled",
              "overrides": {"export": {"enabled": true}}}
          }
        }
        """

    func answer(_ feature: String, _ tenant: String?, now: Int64 = december15) throws -> EvaluationResult {
        let e = try compile(Self.document)
        return try #require(e.evaluate(feature, tenant: tenant, now: now))
    }

    @Test func planGrantWhileTheSubscriptionApplies() throws {
        for tenant in ["active", "trialing"] {
            let r = try answer("reports", tenant)
            #expect(r.value == true)
            #expect(r.variant == "plan:basic")
            #expect(r.reason == .targetingMatch)
            #expect(r.metadata == ["source": "plan", "plan": "basic"])
        }
    }

    @Test(arguments: ["past_due", "canceled", "expired"])
    func aStatusThatStopsThePlanFallsThroughToTheDefault(status: String) throws {
        let r = try answer("reports", status)
        #expect(r.value == false)
        #expect(r.variant == "default")
        #expect(r.reason == .default)
        // The plan grants it: no upgrade would help, the subscription says why.
        #expect(r.metadata == ["source": "default", "plan": "basic", "subscription": .string(status)])
    }

    @Test func aSubscriptionPastValidUntilFallsThrough() throws {
        let r = try answer("reports", "lapsed")
        #expect(r.value == false)
        #expect(r.metadata["subscription"] == "ended")
        // The second before validUntil, the plan still applies.
        let before = try answer("reports", "lapsed", now: 1_796_083_199)
        #expect(before.value == true)
        #expect(try answer("reports", "lapsed", now: 1_796_083_200).value == false)
    }

    @Test func notGrantedGivesTheDefaultAndTheLowestPlanThatGrantsIt() throws {
        let r = try answer("export", "active")
        #expect(r.value == false)
        #expect(r.variant == "default")
        #expect(r.reason == .default)
        #expect(r.metadata == ["source": "default", "plan": "basic", "upgradeTo": "pro"])
        let e = try compile(Self.document)
        #expect(e.upgradePlan(for: "export")?.name == "pro")
        #expect(e.upgradePlan(for: "reports")?.name == "basic")
        #expect(e.upgradePlan(for: "chat")?.name == "max")  // through "*"
        #expect(e.upgradePlan(for: "nope") == nil)
    }

    @Test func inheritanceChains() throws {
        #expect(try answer("reports", "pro").variant == "plan:pro")  // from basic
        #expect(try answer("export", "pro").value == true)
        #expect(try answer("export", "max").variant == "plan:max")  // from pro, and "*"
        // max revokes what it inherits from basic, and "*" does not bring it back.
        let revoked = try answer("reports", "max")
        #expect(revoked.value == false)
        #expect(revoked.metadata == ["source": "default", "plan": "max", "upgradeTo": "basic"])
        let e = try compile(Self.document)
        #expect(e.plan("max")?.grants.map(\.feature) == ["chat", "export"])
        #expect(e.plan("max")?.grants.first { $0.feature == "export" }?.grantedBy == "pro")
        #expect(e.plan("max")?.grants.first { $0.feature == "chat" }?.grantedBy == "max")
    }

    @Test func aCoreFeatureIsOnWithoutAGrant() throws {
        let r = try answer("chat", "active")
        #expect(r.value == true)
        #expect(r.reason == .default)
        #expect(r.metadata == ["source": "default", "plan": "basic"])
        #expect(try answer("chat", "canceled").value == true)
        #expect(try answer("chat", nil).value == true)
        #expect(try compile(Self.document).isEntitled(tenant: "past_due", feature: "chat"))
    }

    @Test func anOverrideWinsOverThePlanAndTheDefault() throws {
        let on = try answer("export", "override-on")
        #expect(on.value == true)
        #expect(on.variant == "override")
        #expect(on.reason == .targetingMatch)
        #expect(on.metadata == [
            "source": "override", "plan": "basic", "notes": "beta", "by": "ana", "at": "2026-12-01T08:00:00Z",
        ])
        let off = try answer("reports", "override-off")
        #expect(off.value == false)
        #expect(off.variant == "override")
        #expect(off.reason == .targetingMatch)
        #expect(off.metadata == ["source": "override", "plan": "pro", "by": "ops"])
        // Only an override turns a core feature off.
        #expect(try answer("chat", "override-off").value == false)
    }

    @Test func anExpiredOverrideFallsThrough() throws {
        #expect(try answer("reports", "override-expiring", now: 1_797_724_799).value == false)
        let after = try answer("reports", "override-expiring", now: 1_797_724_800)
        #expect(after.value == true)
        #expect(after.variant == "plan:basic")
    }

    @Test func overridesApplyWhateverTheStatus() throws {
        let r = try answer("export", "override-canceled")
        #expect(r.value == true)
        #expect(r.variant == "override")
        // … while the plan's own grants do not.
        #expect(try answer("reports", "override-canceled").value == false)
    }

    @Test func anUnknownTenantGetsTheDefault() throws {
        for tenant in ["nobody", nil] as [String?] {
            let r = try answer("export", tenant)
            #expect(r.value == false)
            #expect(r.reason == .default)
            #expect(r.errorCode == nil)
            #expect(r.metadata == ["source": "default", "upgradeTo": "pro"])
        }
    }

    @Test func anUnknownFeatureIsNotAnAnswer() throws {
        let e = try compile(Self.document)
        #expect(e.evaluate("nope", tenant: "active") == nil)
        #expect(e.withResult(feature: "nope", tenant: "active") { _ in Issue.record("called") } == nil)
        #expect(!e.isEntitled(tenant: "active", feature: "nope"))
        #expect(e.limits(tenant: "active", feature: "nope") == nil)
        #expect(!e.hasFeature("nope"))
        #expect(e.hasFeature("reports"))
    }

    @Test func typesAreCheckedLikeFlags() throws {
        let e = try compile(Self.document)
        let mismatch = try #require(e.evaluate("reports", tenant: "active", type: .string))
        #expect(mismatch.reason == .error)
        #expect(mismatch.errorCode == .typeMismatch)
        #expect(mismatch.value == nil)
        #expect(mismatch.errorMessage == "feature 'reports' is a boolean feature (its value is a boolean), not a string")
        #expect(mismatch.metadata == ["source": "plan", "plan": "basic"])
        #expect(e.evaluate("reports", tenant: "active", type: .boolean)?.value == true)
        #expect(e.evaluate("reports", tenant: "active", type: .object)?.errorCode == .typeMismatch)
    }

    @Test func sourcesAndEntitlement() throws {
        let e = try compile(Self.document)
        #expect(e.source(tenant: "override-on", feature: "export", now: december15) == .override)
        #expect(e.source(tenant: "active", feature: "reports", now: december15) == .plan)
        #expect(e.source(tenant: "canceled", feature: "reports", now: december15) == .default)
        #expect(e.isEntitled(tenant: "override-on", feature: "export", now: december15))
        #expect(!e.isEntitled(tenant: "override-off", feature: "reports", now: december15))
        #expect(!e.isEntitled(tenant: "past_due", feature: "reports", now: december15))
        #expect(e.isEntitled(tenant: "trialing", feature: "reports", now: december15))
    }

    @Test func tenantAttributesForTargeting() throws {
        let e = try compile(Self.document)
        #expect(e.attribute("plan", ofTenant: "pro") == "pro")
        #expect(e.attribute("planName", ofTenant: "pro") == "Pro")
        #expect(e.attribute("planOrder", ofTenant: "pro") == 2)
        #expect(e.attribute("status", ofTenant: "past_due") == "past_due")
        #expect(e.attribute("validUntil", ofTenant: "pro") == .int(1_798_761_600))
        #expect(e.attribute("validUntil", ofTenant: "active") == nil)
        #expect(e.attribute("active", ofTenant: "lapsed", now: december15) == false)
        #expect(e.attribute("active", ofTenant: "pro", now: december15) == true)
        #expect(e.attribute("id", ofTenant: "pro") == "pro")
        #expect(e.attribute("plan", ofTenant: "nobody") == nil)
        #expect(e.attribute("colour", ofTenant: "pro") == nil)
    }

    @Test func theClockIsUsedWhenNoNowIsGiven() throws {
        let early = try Entitlements.compile(json: Array(Self.document.utf8), options: options(now: 1_797_724_799))
        let late = try Entitlements.compile(json: Array(Self.document.utf8), options: options(now: 1_797_724_800))
        #expect(early.evaluate("reports", tenant: "override-expiring")?.value == false)
        #expect(late.evaluate("reports", tenant: "override-expiring")?.value == true)
    }

    @Test func theExampleAnswersAsDocumented() throws {
        let e = try example()
        // Tenant 5: starter, with voice_ai turned on until 2027-01-01.
        #expect(e.evaluate("voice_ai", tenant: "5", now: december15)?.variant == "override")
        #expect(e.evaluate("voice_ai", tenant: "5", now: 1_798_761_600)?.metadata["upgradeTo"] == "growth")
        #expect(e.evaluate("payment_providers", tenant: "5", now: december15)?.value
            == ["providers": ["card", "zarinpal"], "payouts": ["schedule": "monthly", "currency": "EUR"]])
        // Globex is past due: its growth grants stop, its override keeps Telegram running.
        #expect(e.evaluate("whatsapp_channel", tenant: "globex", now: december15)?.metadata["subscription"] == "past_due")
        #expect(e.evaluate("telegram_bot", tenant: "globex", now: december15)?.variant == "override")
        // Hooli (enterprise) had video generation turned off at its own request.
        #expect(e.evaluate("video_generation", tenant: "hooli", now: december15)?.value == false)
        #expect(e.evaluate("sso_saml", tenant: "hooli", now: december15)?.variant == "plan:enterprise")
    }
}
