import GuidonEngine
import Testing

@testable import GuidonEntitlements

/// Why a tenant is denied: the reason each step of the order of precedence gives, the same
/// from `denial(tenant:feature:)` as on a lent answer (`EncodedResult.denial`), and no denial
/// exactly where `isEntitled` is true.
@Suite("Entitlements: denial reasons")
struct DenialTests {
    static let document = #"""
        {
          "timezone": "UTC",
          "features": {
            "voice_ai": {"default": false},
            "chat": {"default": true},
            "seats": {"default": {"max": 3}}
          },
          "plans": {
            "free": {"displayName": "Free", "order": 1, "grants": {}},
            "pro": {"displayName": "Pro", "order": 2, "grants": {"voice_ai": true, "seats": {"config": {"max": 10}}}}
          },
          "tenants": {
            "paying": {"plan": "pro", "status": "active"},
            "trial": {"plan": "pro", "status": "trialing"},
            "poor": {"plan": "free", "status": "active"},
            "late": {"plan": "pro", "status": "past_due"},
            "gone": {"plan": "pro", "status": "canceled"},
            "old": {"plan": "pro", "status": "expired"},
            "lapsed": {"plan": "pro", "status": "active", "validUntil": "2020-01-01T00:00:00Z"},
            "muted": {"plan": "pro", "status": "active",
                      "overrides": {"chat": {"enabled": false, "by": "ops"}, "voice_ai": {"enabled": false, "by": "ops"}}},
            "gifted": {"plan": "free", "status": "canceled", "overrides": {"voice_ai": {"enabled": true, "by": "ops"}}},
            "stale-override": {"plan": "free", "status": "active",
                      "overrides": {"voice_ai": {"enabled": true, "by": "ops", "expiresAt": "2020-01-01T00:00:00Z"}}},
            "planless": {"plan": "gold", "status": "active"}
          }
        }
        """#

    func reasons(_ e: Entitlements, _ feature: String, _ tenant: String?) -> (EntitlementDenialReason?, EntitlementDenialReason?) {
        let direct = e.denial(tenant: tenant, feature: feature, now: december15)
        let lent = e.withResult(feature: feature, tenant: tenant, now: december15) { $0.denial }
        if let direct { #expect(direct.feature == Int32(e.features.firstIndex { $0.key == feature } ?? -1)) }
        #expect(direct == lent ?? nil, "\(feature) for \(tenant ?? "nil")")
        #expect((direct == nil) == e.isEntitled(tenant: tenant, feature: feature, now: december15), "\(feature) for \(tenant ?? "nil")")
        return (direct?.reason, lent??.reason)
    }

    @Test func eachStepOfThePrecedenceGivesItsReason() throws {
        let e = try compile(Self.document, mode: .lenient)  // lenient: "planless" names no plan there is
        let cases: [(String, String?, EntitlementDenialReason?)] = [
            ("voice_ai", "paying", nil),
            ("voice_ai", "trial", nil),
            ("voice_ai", "poor", .notGranted),
            ("voice_ai", "late", .pastDue),
            ("voice_ai", "gone", .canceled),
            ("voice_ai", "old", .expired),
            ("voice_ai", "lapsed", .ended),
            ("voice_ai", "muted", .override),
            ("chat", "muted", .override),
            ("voice_ai", "gifted", nil),  // an override applies whatever the subscription's status
            ("voice_ai", "stale-override", .notGranted),  // an expired override falls through
            ("voice_ai", "planless", .noPlan),
            ("voice_ai", "nobody", .unknownTenant),
            ("voice_ai", nil, .noTenant),
            ("chat", "poor", nil),  // a core feature
            ("chat", nil, nil),
            ("chat", "gone", nil),
            ("seats", "paying", nil),
            ("seats", "poor", .notGranted),  // a configuration feature answering its default
            ("seats", "late", .pastDue),
        ]
        for (feature, tenant, expected) in cases {
            let (direct, lent) = reasons(e, feature, tenant)
            #expect(direct == expected, "\(feature) for \(tenant ?? "nil")")
            #expect(lent == expected, "\(feature) for \(tenant ?? "nil")")
        }
        // A key that is no feature: denied without a position (counted without its key).
        #expect(e.denial(tenant: "paying", feature: "nope", now: december15) == EntitlementDenial(feature: -1, reason: .unknownFeature))
        // A type mismatch is an error, not a denial.
        #expect(e.withResult(feature: "voice_ai", tenant: "poor", type: .string, now: december15) { $0.denial } == .some(nil))
    }

    @Test func everyFeatureOfTheExampleAgreesWithIsEntitled() throws {
        let e = try example()
        for tenant in ["5", "acme", "nobody", "17", "42"] as [String?] + [nil] {
            for feature in e.features.map(\.key) { _ = reasons(e, feature, tenant) }
        }
    }
}
