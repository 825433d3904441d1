import CAllocCounter
import GuidonEngine
import GuidonJSON
import GuidonProtocol
import Testing

@testable import GuidonEntitlements

/// Answers as a server sends them: lent text, reply lines, the `entitlements` view, the
/// `tenants` listing.
@Suite struct AnswerTests {
    @Test func aLentAnswerIsAnEvalReply() throws {
        let e = try example()
        var line: [UInt8] = []
        _ = e.withResult(feature: "voice_ai", tenant: "5", type: .boolean, now: december15) { r in
            ReplyEncoder.eval(id: 7, result: r, default: false, into: &line)
        }
        #expect(String(decoding: line, as: UTF8.self) == #"""
            {"id":7,"flag":"voice_ai","value":true,"variant":"override","reason":"TARGETING_MATCH","metadata":{"source":"override","plan":"starter","notes":"premium trial","by":"sam.okafor","at":"2026-12-01T10:00:00Z","expiresAt":"2027-01-01T00:00:00Z"}}

            """#)
        line = []
        _ = e.withResult(feature: "seats", tenant: "acme", type: .boolean, now: december15) { r in
            ReplyEncoder.eval(id: nil, result: r, default: false, into: &line)
        }
        #expect(String(decoding: line, as: UTF8.self) == #"""
            {"flag":"seats","value":false,"reason":"ERROR","errorCode":"TYPE_MISMATCH","errorMessage":"feature 'seats' is a configuration feature (its value is an object), not a boolean","metadata":{"source":"plan","plan":"growth"}}

            """#)
    }

    @Test func lentAnswersAndEvaluationsAgree() throws {
        let e = try example()
        for tenant in ["5", "acme", "globex", "initech", "umbrella", "hooli", "stark", "nobody"] {
            for feature in e.features.map(\.key) {
                for type in [nil] + ValueType.allCases {
                    let lent = try #require(lentReply(e, feature, tenant: tenant, type: type))
                    let result = try #require(e.evaluate(feature, tenant: tenant, type: type, now: december15))
                    #expect(lent["flag"] == .string(feature))
                    #expect(lent["value"] == result.value)
                    #expect(lent["variant"] == result.variant.map(JSONValue.string))
                    #expect(lent["reason"] == .string(result.reason.rawValue))
                    #expect(lent["metadata"] == .object(result.metadata))
                }
            }
        }
    }

    @Test func answeringOneFeatureAllocatesNothing() throws {
        let e = try example()
        let tenantIDs = ["5", "acme", "globex", "nobody"]
        var total = 0
        func answerAll() -> UInt64 {
            let before = guidon_thread_alloc_count()
            for _ in 0..<100 {
                // By index: a debug build's array iterator allocates.
                for i in 0..<tenantIDs.count {
                    let tenant = tenantIDs[i]
                    total += e.withResult(feature: "voice_ai", tenant: tenant, now: december15) { $0.served?.count ?? 0 } ?? 0
                    total += e.withResult(feature: "seats", tenant: tenant, type: .boolean, now: december15) { $0.metadata.count } ?? 0
                    total += e.isEntitled(tenant: tenant, feature: "payment_providers", now: december15) ? 1 : 0
                    total += e.withLimits(tenant: tenant, feature: "voice_ai", now: december15) { $2.count } ?? 0
                }
            }
            return guidon_thread_alloc_count() - before
        }
        _ = answerAll()  // the first run instantiates the loop's generic metadata
        let allocations = answerAll()
        #expect(total > 0)
        // 1,600 answers; a debug build's loop may allocate once.
        if guidon_alloc_counting() != 0 { #expect(allocations <= 1) }
    }

    @Test func everyFeatureForAnEvalAll() throws {
        let e = try example()
        var line: [UInt8] = []
        ReplyEncoder.evalAll(id: "all", into: &line) { each in e.forEachResult(tenant: "hooli", now: december15, each) }
        let reply = try #require(try JSONParser().parse(line.dropLast().map { $0 }).object)
        let results = try #require(reply["results"]?.object)
        #expect(results.keys == e.features.map(\.key))
        for (key, result) in results {
            let expected = try #require(e.evaluate(key, tenant: "hooli", now: december15))
            #expect(result.object?["value"] == expected.value)
            #expect(result.object?["variant"] == expected.variant.map(JSONValue.string))
        }
        #expect(results["video_generation"]?.object?["value"] == false)
    }

    @Test func tenantIDsFromAContext() {
        #expect(Entitlements.tenantID(from: "acme") == "acme")
        #expect(Entitlements.tenantID(from: 5) == "5")
        #expect(Entitlements.tenantID(from: -12) == "-12")
        #expect(Entitlements.tenantID(from: 5.5) == nil)
        #expect(Entitlements.tenantID(from: nil) == nil)
        #expect(Entitlements.tenantID(from: ["id": 5]) == nil)
    }

    @Test func tenantIDsAsBytes() throws {
        let e = try example()
        let id: [UInt8] = Array("globex".utf8)
        let key: [UInt8] = Array("telegram_bot".utf8)
        let variant = id.withUnsafeBytes { tenant in
            key.withUnsafeBytes { feature in
                e.withResult(featureBytes: feature, tenantBytes: tenant, now: december15) { r in
                    String(decoding: r.served ?? UnsafeRawBufferPointer(start: nil, count: 0), as: UTF8.self)
                }
            }
        }
        #expect(variant == #","value":true,"variant":"override""#)
    }

    @Test func theEntitlementsView() throws {
        let e = try example()
        let view = e.entitlements(tenant: "globex", now: december15)
        #expect(view["tenant"] == "globex")
        #expect(view["found"] == true)
        #expect(view["plan"] == "growth" && view["planName"] == "Growth" && view["planOrder"] == 2)
        #expect(view["status"] == "past_due")
        #expect(view["validUntil"] == "2027-03-31T21:59:59Z")
        #expect(view["planApplies"] == false)
        let features = try #require(view["features"]?.object)
        #expect(features.keys == e.features.map(\.key))
        let telegram = try #require(features["telegram_bot"]?.object)
        #expect(telegram["value"] == true)
        #expect(telegram["variant"] == "override")
        #expect(telegram["reason"] == "TARGETING_MATCH")
        #expect(telegram["entitled"] == true)
        #expect(telegram["why"] == #"turned on by an override by li.wei at 2026-11-20T08:30:00Z: "keep support running while the invoice is sorted out""#)
        let whatsapp = try #require(features["whatsapp_channel"]?.object)
        #expect(whatsapp["why"] == #"plan "growth" grants it, but the subscription is past_due; the feature's default applies"#)
        #expect(whatsapp["metadata"] == ["source": "default", "plan": "growth", "subscription": "past_due"])
        // Every answer in the view is the one `eval` gives.
        for (key, answer) in features {
            let result = try #require(e.evaluate(key, tenant: "globex", now: december15))
            #expect(answer.object?["value"] == result.value)
            #expect(answer.object?["metadata"] == .object(result.metadata))
        }
        let unknown = e.entitlements(tenant: "nobody", now: december15)
        #expect(unknown["found"] == false && unknown["plan"] == nil)
        #expect(unknown["features"]?.object?["analytics"]?.object?["why"] == #"no plan; the feature's default applies (available on "starter")"#)
    }

    @Test func theTenantListingPagesWithACursor() throws {
        let e = try example()
        let first = try e.tenants(TenantQuery(limit: 3))
        #expect(first.tenants.map(\.id) == ["5", "acme", "globex"])
        #expect(first.total == 7 && first.next == "globex")
        #expect(first.tenants[0] == TenantSummary(id: "5", plan: "starter", status: .active, validUntil: 1_814_313_600, overrides: 1))
        let second = try e.tenants(TenantQuery(after: first.next, limit: 3))
        #expect(second.tenants.map(\.id) == ["initech", "umbrella", "hooli"])
        let last = try e.tenants(TenantQuery(after: second.next, limit: 3))
        #expect(last.tenants.map(\.id) == ["stark"] && last.next == nil)
        let growth = try e.tenants(TenantQuery(limit: 2, plan: "growth"))
        #expect(growth.tenants.map(\.id) == ["acme", "globex"] && growth.total == 3 && growth.next == "globex")
        #expect(try e.tenants(TenantQuery(after: "globex", plan: "growth")).tenants.map(\.id) == ["stark"])
        #expect(try e.tenants(TenantQuery(status: .trialing)).tenants.map(\.id) == ["initech", "stark"])
        #expect(try e.tenants(TenantQuery(after: "stark")).tenants.isEmpty)

        #expect(throws: EntitlementsQueryError.self) { try e.tenants(TenantQuery(after: "nobody")) }
        #expect(throws: EntitlementsQueryError.self) { try e.tenants(TenantQuery(limit: 0)) }
        #expect(throws: EntitlementsQueryError.self) { try e.tenants(TenantQuery(limit: 1001)) }
        do {
            _ = try e.tenants(TenantQuery(plan: "gold"))
        } catch {
            #expect(error.code == .unknownPlan)
            #expect(error.message == #"no plan named "gold""#)
        }

        var out: [UInt8] = [UInt8(ascii: "{")]
        try e.writeTenants(TenantQuery(limit: 2), into: &out)
        out.append(UInt8(ascii: "}"))
        #expect(String(decoding: out, as: UTF8.self)
            == #"{"tenants":[{"id":"5","plan":"starter","status":"active","validUntil":"2027-06-30T00:00:00Z","overrides":1},{"id":"acme","plan":"growth","status":"active","overrides":0}],"total":7,"next":"acme"}"#)
    }

    @Test func aTenantAsWritten() throws {
        let e = try example()
        let initech = try #require(e.tenant("initech"))
        #expect(initech.plan == "starter" && initech.status == .trialing && initech.validUntil == 1_798_675_200)
        #expect(initech.overrides.map(\.feature) == ["ai_assistant", "seats"])
        #expect(initech.overrides[1].config == ["max": 8])
        #expect(initech.overrides[1].by == "maria.lopez")
        #expect(initech.planApplies(at: december15))
        #expect(!initech.planApplies(at: 1_798_675_200))
        #expect(e.tenant("nobody") == nil)
    }

    @Test func aKeyThatIsBothAFlagAndAFeature() throws {
        let e = try example()
        let conflicts = e.conflicts(withFlagKeys: ["new-checkout", "voice_ai", "seats"])
        #expect(conflicts.map(\.path) == ["features.voice_ai", "features.seats"])
        #expect(conflicts.first?.message == #""voice_ai" is both a flag (in the flag file) and a feature; a key must be one or the other"#)
        #expect(conflicts.allSatisfy { $0.line != nil && $0.severity == .error })
    }
}
