import GuidonEngine
import GuidonJSON
import Testing

@testable import GuidonEntitlements

/// Usage limits as declared: on the feature, on a plan's grant, on an override; which apply.
@Suite struct LimitsTests {
    static let document = """
        {
          "features": {
            "video": {"description": "Videos", "default": false, "limits": [{"per": "day", "max": 2}]},
            "api": {"description": "API", "default": true, "limits": [{"per": "month", "max": 1000, "failMode": "closed"}]},
            "plain": {"description": "No limits", "default": false}
          },
          "plans": {
            "basic": {"displayName": "Basic", "order": 1, "grants": {"video": true, "plain": true}},
            "pro": {"displayName": "Pro", "order": 2, "inherits": "basic",
                    "grants": {"video": {"limits": [{"per": "day", "max": 10, "scope": "user"}, {"per": "month", "max": 100, "mode": "soft"}]}}},
            "pro-plus": {"displayName": "Pro+", "order": 3, "inherits": "pro", "grants": {"video": true}},
            "unlimited": {"displayName": "Unlimited", "order": 4, "inherits": "pro", "grants": {"video": {"limits": []}}}
          },
          "tenants": {
            "basic": {"plan": "basic", "status": "active"},
            "pro": {"plan": "pro", "status": "active"},
            "pro-plus": {"plan": "pro-plus", "status": "active"},
            "unlimited": {"plan": "unlimited", "status": "active"},
            "pro-lapsed": {"plan": "pro", "status": "canceled"},
            "pro-override": {"plan": "pro", "status": "active",
                             "overrides": {"video": {"enabled": true, "limits": [{"per": "hour", "max": 1, "mode": "shadow"}]}}},
            "pro-override-plain": {"plan": "pro", "status": "active", "overrides": {"video": {"enabled": true}}},
            "lapsed-override-plain": {"plan": "pro", "status": "expired", "overrides": {"video": {"enabled": true}}},
            "override-off": {"plan": "pro", "status": "active", "overrides": {"video": {"enabled": false}}}
          }
        }
        """

    func limits(_ tenant: String?, _ feature: String = "video") throws -> EffectiveLimits {
        try #require(compile(Self.document).limits(tenant: tenant, feature: feature, now: december15))
    }

    @Test func defaultsOfALimit() {
        let limit = Limit(per: .day, max: 3)
        #expect(limit.scope == .tenant && limit.mode == .hard && limit.failMode == .open)
    }

    @Test func aPlanGrantWithoutLimitsTakesTheFeaturesOwn() throws {
        #expect(try limits("basic") == EffectiveLimits(entitled: true, source: .default, limits: [Limit(per: .day, max: 2)]))
    }

    @Test func aPlanGrantsLimitsComeFirstAndAreInherited() throws {
        let pro = [Limit(per: .day, max: 10, scope: .user), Limit(per: .month, max: 100, mode: .soft)]
        #expect(try limits("pro") == EffectiveLimits(entitled: true, source: .plan, limits: pro))
        #expect(try limits("pro-plus") == EffectiveLimits(entitled: true, source: .plan, limits: pro))
    }

    @Test func anEmptyLimitsArrayMeansUnlimited() throws {
        #expect(try limits("unlimited") == EffectiveLimits(entitled: true, source: .plan, limits: []))
    }

    @Test func anOverridesLimitsComeBeforeThePlans() throws {
        #expect(try limits("pro-override") == EffectiveLimits(entitled: true, source: .override, limits: [Limit(per: .hour, max: 1, mode: .shadow)]))
    }

    @Test func anOverrideWithoutLimitsTakesThePlansWhileItApplies() throws {
        #expect(try limits("pro-override-plain").source == .plan)
        // The plan does not apply (expired): the feature's own.
        #expect(try limits("lapsed-override-plain") == EffectiveLimits(entitled: true, source: .default, limits: [Limit(per: .day, max: 2)]))
    }

    @Test func notEntitledMeansNoLimits() throws {
        #expect(try limits("pro-lapsed") == EffectiveLimits(entitled: false, source: nil, limits: []))
        #expect(try limits("override-off") == EffectiveLimits(entitled: false, source: nil, limits: []))
        #expect(try limits("nobody") == EffectiveLimits(entitled: false, source: nil, limits: []))
        #expect(try limits("basic", "plain") == EffectiveLimits(entitled: true, source: nil, limits: []))
    }

    @Test func aCoreFeatureHasItsOwnLimitsForEveryone() throws {
        let api = [Limit(per: .month, max: 1000, failMode: .closed)]
        #expect(try limits("nobody", "api") == EffectiveLimits(entitled: true, source: .default, limits: api))
        #expect(try limits("pro", "api") == EffectiveLimits(entitled: true, source: .default, limits: api))
    }

    @Test func limitsAreLentWithoutCopying() throws {
        let e = try compile(Self.document)
        let maxes = e.withLimits(tenant: "pro", feature: "video", now: december15) { entitled, source, limits in
            (entitled, source, limits.map(\.max))
        }
        #expect(maxes?.0 == true && maxes?.1 == .plan && maxes?.2 == [10, 100])
    }

    @Test func theViewShowsLimitsAndWhereTheyComeFrom() throws {
        let e = try compile(Self.document)
        let view = e.entitlements(tenant: "pro", now: december15)
        let video = view["features"]?.object?["video"]?.object
        #expect(video?["limitsFrom"] == "plan")
        #expect(video?["limits"] == [
            ["per": "day", "max": 10, "scope": "user", "mode": "hard", "failMode": "open"],
            ["per": "month", "max": 100, "scope": "tenant", "mode": "soft", "failMode": "open"],
        ])
        #expect(view["features"]?.object?["plain"]?.object?["limits"] == nil)
        #expect(e.entitlements(tenant: "basic", now: december15)["features"]?.object?["video"]?.object?["limitsFrom"] == "feature")
    }

    @Test func thePlansAndFeaturesShowTheirLimits() throws {
        let e = try compile(Self.document)
        #expect(e.feature("video")?.limits == [Limit(per: .day, max: 2)])
        #expect(e.feature("plain")?.limits == nil)
        #expect(e.plan("pro-plus")?.grants.first { $0.feature == "video" }?.limits?.count == 2)
        #expect(e.plan("basic")?.grants.first { $0.feature == "video" }?.limits == nil)
        #expect(e.tenant("pro-override")?.overrides.first?.limits == [Limit(per: .hour, max: 1, mode: .shadow)])
    }
}
