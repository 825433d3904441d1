import Foundation
import GuidonJSON
import Testing

/// `guidon_entitlement_denials_total` through a real guidond: tenants are denied in every way the
/// entitlements engine tells apart, on every path (eval, several keys, evalAll, OFREP, a flag's
/// `{"entitled": …}`, consume), and `/metrics`, `stats` and `guidon stats` show the counts.
@Suite("guidond: entitlement denial counters", .serialized)
struct DenialMetricsIntegrationTests {
    static let entitlements = #"""
        {
          "timezone": "UTC",
          "features": {
            "voice_ai": {"default": false},
            "video": {"default": false, "limits": [{"per": "day", "max": 10}]},
            "chat": {"default": true},
            "seats": {"default": {"max": 3}}
          },
          "plans": {
            "free": {"displayName": "Free", "order": 1, "grants": {}},
            "pro": {"displayName": "Pro", "order": 2, "grants": {"voice_ai": true, "video": true, "seats": {"config": {"max": 10}}}}
          },
          "tenants": {
            "paying": {"plan": "pro", "status": "active"},
            "poor": {"plan": "free", "status": "active"},
            "late": {"plan": "pro", "status": "past_due"},
            "gone": {"plan": "pro", "status": "canceled"},
            "old": {"plan": "pro", "status": "expired"},
            "lapsed": {"plan": "pro", "status": "active", "validUntil": "2020-01-01T00:00:00Z"},
            "muted": {"plan": "pro", "status": "active",
                      "overrides": {"chat": {"enabled": false, "by": "ops"}, "voice_ai": {"enabled": false, "by": "ops"}}}
          }
        }
        """#

    /// `voice-beta` asks about a feature the document has; `gate` about whatever the context
    /// names (a client can make that anything).
    static let flags = #"""
        {"flags": {
          "voice-beta": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                         "targeting": {"if": [{"entitled": "voice_ai"}, "on", "off"]}},
          "gate": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                   "targeting": {"if": [{"entitled": {"var": "wanted"}}, "on", "off"]}}
        }}
        """#

    /// The `guidon_entitlement_denials_total` samples of a Prometheus text: "feature/reason/check" → count.
    func denials(_ text: String) throws -> [String: Int] {
        var found: [String: Int] = [:]
        let pattern = try NSRegularExpression(
            pattern: #"^guidon_entitlement_denials_total\{feature="([^"]*)",reason="([a-z_]+)",check="([a-z]+)"\} ([0-9]+)$"#,
            options: .anchorsMatchLines)
        for match in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
            let group = { (i: Int) in String(text[Range(match.range(at: i), in: text)!]) }
            found["\(group(1))/\(group(2))/\(group(3))"] = Int(group(4))
        }
        return found
    }

    @Test func everyWayOfSayingNoIsCountedByFeatureReasonAndCheck() throws {
        let dir = try ScratchDirectory()
        try dir.write("ent.json", Self.entitlements)
        try dir.write("flags.json", Self.flags)
        let ofrep = dir.file("ofrep.sock")
        let daemon = try RunningDaemon.withQuotas(dir: dir, extraArguments: ["--ofrep-listen", ofrep, "--metrics-listen", "127.0.0.1:0"])
        defer { try? daemon.finish() }
        let c = try daemon.client()
        func eval(_ key: String, _ tenant: String?, extra: String = "") throws -> JSONObject {
            let context = tenant.map { #","context":{"tenantId":"\#($0)"\#(extra)}"# } ?? ""
            return try c.request(#"{"op":"eval","flag":"\#(key)"\#(context)}"#)
        }

        // eval of one feature, each reason.
        #expect(try eval("voice_ai", "paying")["value"] == true)
        #expect(try eval("voice_ai", "poor")["value"] == false)
        for tenant in ["late", "gone", "old", "lapsed", "muted", "nobody"] {
            #expect(try eval("voice_ai", tenant)["value"] == false, "\(tenant)")
        }
        #expect(try eval("voice_ai", nil)["value"] == false)
        #expect(try eval("chat", "muted")["value"] == false)
        #expect(try eval("chat", "poor")["value"] == true)  // a core feature: no denial
        #expect(try eval("seats", "poor")["variant"] == "default")
        #expect(try eval("seats", "paying")["variant"] == "plan:pro")
        // A type mismatch is an error, not a denial.
        #expect(try c.request(#"{"op":"eval","flag":"voice_ai","type":"string","context":{"tenantId":"poor"}}"#)["errorCode"] == "TYPE_MISMATCH")
        // Several keys, and evalAll (every feature, and voice-beta's entitled).
        _ = try c.request(#"{"op":"eval","flags":["voice_ai","chat"],"context":{"tenantId":"poor"}}"#)
        _ = try c.request(#"{"op":"evalAll","context":{"tenantId":"poor"}}"#)
        // A flag's {"entitled": …}.
        #expect(try eval("voice-beta", "late")["value"] == false)
        #expect(try eval("voice-beta", "paying")["value"] == true)
        // Keys that are no feature: a flag asking for random ones, and an unknown key (no flag either).
        for i in 0..<5 {
            #expect(try eval("gate", "paying", extra: #","wanted":"random-\#(i)""#)["value"] == false)
        }
        #expect(try eval("gate", "paying", extra: #","wanted":"voice_ai""#)["value"] == true)
        #expect(try eval("random-key", "poor")["errorCode"] == "FLAG_NOT_FOUND")
        // consume refused as not entitled; allowed for an entitled tenant; usage is a read.
        #expect(try c.consume("video", tenant: "poor")["allowed"] == false)
        #expect(try c.consume("video", tenant: "paying")["allowed"] == true)
        _ = try c.usage("video", tenant: "poor")
        // OFREP: one feature, and the bulk evaluation (features, and voice-beta's entitled).
        try daemon.waitFor("the OFREP socket") { daemon.process.log.contains("serving OFREP on the Unix socket \(ofrep)") }
        let one = try http(.unix(ofrep), "POST", "/ofrep/v1/evaluate/flags/voice_ai", body: #"{"context":{"tenantId":"gone"}}"#)
        #expect(one.status == 200, "\(one)")
        let bulk = try http(.unix(ofrep), "POST", "/ofrep/v1/evaluate/flags", body: #"{"context":{"tenantId":"old"}}"#)
        #expect(bulk.status == 200, "\(bulk)")

        let expected: [String: Int] = [
            "voice_ai/not_granted/eval": 3,  // eval, several keys, evalAll
            "voice_ai/past_due/eval": 1,
            "voice_ai/canceled/eval": 2,  // the socket, OFREP
            "voice_ai/expired/eval": 2,  // the socket, OFREP's bulk
            "voice_ai/ended/eval": 1,
            "voice_ai/override/eval": 1,
            "voice_ai/unknown_tenant/eval": 1,
            "voice_ai/no_tenant/eval": 1,
            "chat/override/eval": 1,
            "seats/not_granted/eval": 2,  // eval, evalAll
            "video/not_granted/eval": 1,  // evalAll
            "video/expired/eval": 1,  // OFREP's bulk
            "seats/expired/eval": 1,  // OFREP's bulk
            "voice_ai/not_granted/targeting": 1,  // evalAll's voice-beta
            "voice_ai/past_due/targeting": 1,
            "voice_ai/expired/targeting": 1,  // OFREP's bulk voice-beta
            "/unknown_feature/targeting": 5,  // gate, five random keys: one series, no key
            "video/not_granted/consume": 1,
        ]
        let port = try daemon.metricsPort()
        let scraped = try httpRequest(port: port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(scraped.status == 200)
        #expect(try denials(scraped.body) == expected, "\(scraped.body)")
        #expect(!scraped.body.contains("random-"), "a key that is no feature is counted without it")
        #expect(scraped.body.contains("# TYPE guidon_entitlement_denials_total counter"))
        #expect(scraped.body.contains(#"guidon_quota_answers_total{result="denied"} 1"#))
        let (status, output) = try promtoolCheckMetrics(scraped.body)
        #expect(status == 0, "promtool: \(output)")
        // `guidon metrics` (the socket's `metrics`) is the same text.
        let cli = try runGuidon(["metrics", "--socket", daemon.socketPath])
        #expect(try denials(cli.output) == expected)

        // stats: the total, by reason, by check, per feature.
        let stats = try #require(try c.request(#"{"op":"stats"}"#)["entitlementDenials"]?.object)
        #expect(stats["total"] == .int(Int64(expected.values.reduce(0, +))))
        #expect(stats["reasons"]?.object?["not_granted"] == 8)
        #expect(stats["reasons"]?.object?["unknown_feature"] == 5)
        #expect(stats["checks"]?.object?["eval"] == 18)
        #expect(stats["checks"]?.object?["targeting"] == 8)
        #expect(stats["checks"]?.object?["consume"] == 1)
        let features = stats["features"]?.array?.compactMap(\.object) ?? []
        #expect(features.first?["feature"] == "voice_ai" && features.first?["total"] == 15, "\(features)")
        #expect(features.contains { $0["feature"] == .null && $0["total"] == 5 }, "\(features)")
        // guidon stats: a short section, the most denied feature first.
        let human = try runGuidon(["stats", "--socket", daemon.socketPath])
        #expect(human.status == 0)
        #expect(human.output.contains("entitlement denials  27 (not_granted 8, "), "\(human.output)")
        #expect(human.output.contains("by check: eval 18, targeting 8, consume 1"), "\(human.output)")
        #expect(human.output.contains(#/\n  voice_ai +15  /#), "\(human.output)")
        #expect(human.output.contains(#/\n  \(not a feature\) +5  unknown_feature 5/#), "\(human.output)")
    }

    /// A new entitlements document lays the counters out anew: counts of a removed feature are
    /// kept under its key, and a feature added since is counted.
    @Test func countsSurviveAReloadThatChangesTheFeatures() throws {
        let dir = try ScratchDirectory()
        try dir.write("ent.json", Self.entitlements)
        try dir.write("flags.json", #"{"flags": {"banner": {"state": "ENABLED", "variants": {"on": "hi"}, "defaultVariant": "on"}}}"#)
        let daemon = try RunningDaemon.withQuotas(dir: dir)
        defer { try? daemon.finish() }
        let c = try daemon.client()
        for _ in 0..<3 { _ = try c.request(#"{"op":"eval","flag":"seats","context":{"tenantId":"poor"}}"#) }
        let renamed = Self.entitlements.replacingOccurrences(of: #""seats""#, with: #""desks""#)
        try renameOver(dir.file("ent.json"), renamed)
        try daemon.waitFor("desks") {
            try c.request(#"{"op":"eval","flag":"desks","context":{"tenantId":"poor"}}"#)["variant"] == "default"
        }
        let text = try #require(try c.request(#"{"op":"metrics"}"#)["text"]?.string)
        let found = try denials(text)
        #expect(found["seats/not_granted/eval"] == 3, "\(text)")
        #expect(found["desks/not_granted/eval"] ?? 0 >= 1, "\(text)")
    }
}
