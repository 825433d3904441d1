import GuidonEngine
import GuidonJSON
import Testing

@testable import GuidonEntitlements

/// Configuration features: the default with each grant's `config` merged over it, then an
/// override's.
@Suite struct ConfigurationTests {
    static let document = """
        {
          "features": {
            "ai": {"description": "Assistant", "default": {"model": "small", "caps": {"tokens": 1000, "images": 0}, "tools": ["search"], "beta": null}}
          },
          "plans": {
            "basic": {"displayName": "Basic", "order": 1, "grants": {"ai": {"config": {"caps": {"tokens": 2000}}}}},
            "pro": {"displayName": "Pro", "order": 2, "inherits": "basic", "grants": {"ai": {"config": {"model": "medium", "tools": ["code"]}}}},
            "pro-plus": {"displayName": "Pro+", "order": 3, "inherits": "pro", "grants": {"ai": true}},
            "pro-reset": {"displayName": "Pro reset", "order": 4, "inherits": "pro", "grants": {"ai": false}},
            "regrant": {"displayName": "Regrant", "order": 5, "inherits": "pro-reset", "grants": {"ai": true}},
            "star": {"displayName": "Star", "order": 6, "inherits": "pro", "grants": {"*": true}},
            "beta": {"displayName": "Beta", "order": 7, "grants": {"ai": {"config": {"beta": {"on": true}}}}}
          },
          "tenants": {
            "none": {"plan": "basic", "status": "canceled"},
            "basic": {"plan": "basic", "status": "active"},
            "pro": {"plan": "pro", "status": "active"},
            "pro-plus": {"plan": "pro-plus", "status": "active"},
            "pro-reset": {"plan": "pro-reset", "status": "active"},
            "regrant": {"plan": "regrant", "status": "active"},
            "star": {"plan": "star", "status": "active"},
            "beta": {"plan": "beta", "status": "active"},
            "override-pro": {"plan": "pro", "status": "active", "overrides": {"ai": {"enabled": true, "config": {"caps": {"images": 5}}}}},
            "override-lapsed": {"plan": "pro", "status": "past_due", "overrides": {"ai": {"enabled": true, "config": {"caps": {"images": 5}}}}},
            "override-off": {"plan": "pro", "status": "active", "overrides": {"ai": {"enabled": false}}},
            "override-plain": {"plan": "basic", "status": "expired", "overrides": {"ai": {"enabled": true}}}
          }
        }
        """

    static let defaultValue: JSONValue = ["model": "small", "caps": ["tokens": 1000, "images": 0], "tools": ["search"], "beta": nil]

    func value(_ tenant: String) throws -> JSONValue? {
        try compile(Self.document).evaluate("ai", tenant: tenant, now: december15)?.value
    }

    @Test func notGrantedIsTheDefault() throws {
        #expect(try value("none") == Self.defaultValue)
        #expect(try value("nobody") == Self.defaultValue)
        #expect(try !compile(Self.document).isEntitled(tenant: "none", feature: "ai"))
    }

    @Test func objectsMergeMemberByMemberAndRecursively() throws {
        // basic's {"caps": {"tokens": 2000}} keeps the default's "images".
        #expect(try value("basic") == ["model": "small", "caps": ["tokens": 2000, "images": 0], "tools": ["search"], "beta": nil])
    }

    @Test func arraysAndScalarsAreReplacedAndInheritedConfigIsTheBase() throws {
        #expect(try value("pro") == ["model": "medium", "caps": ["tokens": 2000, "images": 0], "tools": ["code"], "beta": nil])
    }

    @Test func aTrueGrantKeepsTheInheritedConfiguration() throws {
        #expect(try value("pro-plus") == value("pro"))
        #expect(try value("star") == value("pro"))  // "*" keeps what is inherited too
    }

    @Test func aRevokedGrantRegrantedStartsFromTheDefault() throws {
        #expect(try value("pro-reset") == Self.defaultValue)
        #expect(try value("regrant") == Self.defaultValue)
        #expect(try compile(Self.document).evaluate("ai", tenant: "regrant", now: december15)?.variant == "plan:regrant")
    }

    @Test func nullInTheDefaultTakesAnyShape() throws {
        #expect(try value("beta") == ["model": "small", "caps": ["tokens": 1000, "images": 0], "tools": ["search"], "beta": ["on": true]])
    }

    @Test func anOverrideMergesOverThePlansValueWhileThePlanApplies() throws {
        #expect(try value("override-pro") == ["model": "medium", "caps": ["tokens": 2000, "images": 5], "tools": ["code"], "beta": nil])
    }

    @Test func anOverrideMergesOverTheDefaultWhenThePlanDoesNotApply() throws {
        #expect(try value("override-lapsed") == ["model": "small", "caps": ["tokens": 1000, "images": 5], "tools": ["search"], "beta": nil])
        #expect(try value("override-plain") == Self.defaultValue)
        #expect(try compile(Self.document).isEntitled(tenant: "override-plain", feature: "ai"))
    }

    @Test func anOverrideTurningItOffGivesTheDefault() throws {
        let e = try compile(Self.document)
        let r = try #require(e.evaluate("ai", tenant: "override-off", now: december15))
        #expect(r.value == Self.defaultValue)
        #expect(r.variant == "override")
        #expect(!e.isEntitled(tenant: "override-off", feature: "ai"))
    }

    @Test func aConfigurationFeatureIsAnObject() throws {
        let e = try compile(Self.document)
        #expect(e.evaluate("ai", tenant: "pro", type: .object, now: december15)?.reason == .targetingMatch)
        #expect(e.evaluate("ai", tenant: "pro", type: .boolean, now: december15)?.errorCode == .typeMismatch)
        #expect(e.features[0].kind == .configuration)
    }

    @Test func mergeIsAppliedLayerByLayer() {
        // A layer that replaces an object by a scalar, then one that sets a member: the result
        // is the last layer's object alone (merging the two layers first would keep "a").
        let base: JSONValue = ["x": ["a": 1]]
        let layered = merge(merge(base, ["x": 5]), ["x": ["b": 2]])
        #expect(layered == ["x": ["b": 2]])
        #expect(merge(base, ["x": ["b": 2]]) == ["x": ["a": 1, "b": 2]])
        #expect(merge(["x": [1, 2]], ["x": [3]]) == ["x": [3]])
        #expect(merge(["x": 1], ["x": nil]) == ["x": nil])
    }
}
