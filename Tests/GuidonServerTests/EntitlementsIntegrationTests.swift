import Foundation
import GuidonJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// An entitlements document for the tests: a boolean feature, a configuration feature, a core
/// feature, three plans, and tenants that exercise each step of the order of precedence.
let testEntitlements = #"""
    {
      "timezone": "UTC",
      "features": {
        "voice_ai": {"description": "AI phone calls", "default": false},
        "telegram_bot": {"description": "Telegram bot", "default": true},
        "payment_providers": {"description": "Providers", "default": {"providers": ["card"], "payouts": {"schedule": "monthly"}}}
      },
      "plans": {
        "starter": {"displayName": "Starter", "order": 1, "grants": {"payment_providers": {"config": {"providers": ["card", "zarinpal"]}}}},
        "growth": {"displayName": "Growth", "order": 2, "inherits": "starter",
                   "grants": {"voice_ai": true, "payment_providers": {"config": {"payouts": {"schedule": "weekly"}}}}},
        "enterprise": {"displayName": "Enterprise", "order": 3, "inherits": "growth", "grants": {"*": true}}
      },
      "tenants": {
        "5": {"plan": "starter", "status": "active", "validUntil": "2099-06-30T00:00:00Z",
              "overrides": {"voice_ai": {"enabled": true, "notes": "premium trial", "by": "sam.okafor", "at": "2026-12-01T10:00:00Z",
                                         "expiresAt": "2099-01-01T00:00:00Z"}}},
        "acme": {"plan": "growth", "status": "active"},
        "expired-override": {"plan": "growth", "status": "active",
              "overrides": {"voice_ai": {"enabled": false, "by": "ops", "at": "2019-01-01T00:00:00Z", "expiresAt": "2020-01-01T00:00:00Z"}}},
        "lapsed": {"plan": "growth", "status": "active", "validUntil": "2020-01-01T00:00:00Z"},
        "canceled": {"plan": "enterprise", "status": "canceled",
              "overrides": {"telegram_bot": {"enabled": false, "notes": "abuse", "by": "li.wei", "at": "2026-11-20T08:30:00Z"}}}
      }
    }
    """#

/// Flags that go with `testEntitlements` (no key in common).
let testEntitlementFlags = #"{"flags": {"banner": {"state": "ENABLED", "variants": {"on": "hello"}, "defaultVariant": "on"}}}"#

extension RunningDaemon {
    /// A daemon serving `flags` and `entitlements` from its directory.
    convenience init(flags: String, entitlements: String, extraArguments: [String] = []) throws {
        let dir = try ScratchDirectory()
        try dir.write("entitlements.json", entitlements)
        try self.init(flags: flags, extraArguments: ["--entitlements", dir.file("entitlements.json")] + extraArguments, dir: dir)
    }

    var entitlementsPath: String { dir.file("entitlements.json") }
}

@Suite("guidond: entitlements")
struct EntitlementsIntegrationTests {
    func eval(_ c: LineClient, _ feature: String, tenant: String?, type: String? = nil) throws -> JSONObject {
        var request: JSONObject = ["op": "eval", "flag": .string(feature)]
        if let tenant { request["context"] = .object(["tenantId": .string(tenant)]) }
        if let type { request["type"] = .string(type) }
        return try c.request(JSONWriter.string(.object(request)))
    }

    @Test func precedenceThroughTheDaemon() throws {
        let daemon = try RunningDaemon(flags: testEntitlementFlags, entitlements: testEntitlements)
        defer { try? daemon.finish() }
        let c = try daemon.client()

        // The override, over a plan that does not grant it.
        let five = try eval(c, "voice_ai", tenant: "5")
        #expect(five["value"] == true)
        #expect(five["variant"] == "override")
        #expect(five["reason"] == "TARGETING_MATCH")
        #expect(five["metadata"]?.object?["by"] == "sam.okafor")
        #expect(five["metadata"]?.object?["notes"] == "premium trial")
        // The plan's grant (inherited configuration merged member by member).
        let acme = try eval(c, "voice_ai", tenant: "acme")
        #expect(acme["value"] == true)
        #expect(acme["variant"] == "plan:growth")
        let providers = try eval(c, "payment_providers", tenant: "acme", type: "object")
        #expect(providers["value"] == .object(["providers": ["card", "zarinpal"], "payouts": .object(["schedule": "weekly"])]))
        // An expired override falls through to the plan.
        #expect(try eval(c, "voice_ai", tenant: "expired-override")["variant"] == "plan:growth")
        // A subscription past validUntil, or canceled, falls through to the default; overrides still apply.
        let lapsed = try eval(c, "voice_ai", tenant: "lapsed")
        #expect(lapsed["value"] == false)
        #expect(lapsed["reason"] == "DEFAULT")
        #expect(try eval(c, "voice_ai", tenant: "canceled")["value"] == false)
        #expect(try eval(c, "telegram_bot", tenant: "canceled")["value"] == false)
        // The default, with what would grant it; an unknown tenant and no tenant get the default, not an error.
        for tenant in ["nobody", nil] as [String?] {
            let denied = try eval(c, "voice_ai", tenant: tenant)
            #expect(denied["value"] == false)
            #expect(denied["variant"] == "default")
            #expect(denied["reason"] == "DEFAULT")
            #expect(denied["metadata"]?.object?["upgradeTo"] == "growth")
            #expect(try eval(c, "telegram_bot", tenant: tenant)["value"] == true)
        }
        // A numeric tenantId is the tenant whose id is its digits.
        #expect(try c.request(#"{"op":"eval","flag":"voice_ai","context":{"tenantId":5}}"#)["variant"] == "override")
        // A tenantId of another type: the default.
        #expect(try c.request(#"{"op":"eval","flag":"voice_ai","context":{"tenantId":[5]}}"#)["variant"] == "default")
        // A type that does not match: an error for that key, as for a flag.
        let mismatch = try eval(c, "voice_ai", tenant: "5", type: "string")
        #expect(mismatch["errorCode"] == "TYPE_MISMATCH")
        // Flags still answer; several keys mix flags and features; evalAll lends both.
        #expect(try c.request(#"{"op":"eval","flag":"banner"}"#)["value"] == "hello")
        let many = try c.request(#"{"op":"eval","flags":["banner","voice_ai","nope"],"context":{"tenantId":"acme"}}"#)
        let results = many["results"]?.array ?? []
        #expect(results.count == 3)
        #expect(results.first?.object?["value"] == "hello")
        #expect(results.dropFirst().first?.object?["variant"] == "plan:growth")
        #expect(results.last?.object?["errorCode"] == "FLAG_NOT_FOUND")
        let all = try c.request(#"{"op":"evalAll","context":{"tenantId":"5"}}"#)
        let keys = (all["results"]?.object ?? JSONObject()).map(\.0)
        #expect(keys == ["banner", "voice_ai", "telegram_bot", "payment_providers"])
        #expect(all["results"]?.object?["voice_ai"]?.object?["variant"] == "override")

        // ping and status name both versions and count what is served.
        let ping = try c.request(#"{"op":"ping"}"#)
        #expect(ping["entitlementsVersion"]?.string?.count == 16)
        #expect(ping["features"] == 3)
        #expect(ping["plans"] == 3)
        #expect(ping["tenants"] == 5)
        let status = try c.request(#"{"op":"status"}"#)
        #expect(status["entitlementsVersion"] == ping["entitlementsVersion"])
        #expect(status["entitlementsPath"] == .string(daemon.entitlementsPath))
        #expect(status["entitlements"]?.object?["tenants"] == 5)
    }

    /// `guidon entitlements TENANT` asks the query socket and prints the lines `guidon tenants
    /// show` prints: the tenant's plan, then each feature, its value and why.
    @Test func cliShowsATenantsEntitlements() throws {
        let daemon = try RunningDaemon(flags: testEntitlementFlags, entitlements: testEntitlements)
        defer { try? daemon.finish() }
        let (status, output) = try runGuidon(["entitlements", "5", "--socket", daemon.socketPath])
        #expect(status == 0, "\(output)")
        let lines = output.split(separator: "\n").map(String.init)
        #expect(lines.first == "tenant 5: plan starter (Starter), active until 2099-06-30T00:00:00Z")
        let voice = lines.first { $0.hasPrefix("voice_ai ") } ?? ""
        #expect(voice.contains(" on "), "\(voice)")
        #expect(voice.contains(#"override by sam.okafor 2026-12-01 until 2099-01-01: "premium trial""#), "\(voice)")
        let telegram = lines.first { $0.hasPrefix("telegram_bot ") } ?? ""
        #expect(telegram.contains(" on "), "\(telegram)")
        let (unknownStatus, unknown) = try runGuidon(["entitlements", "nobody", "--socket", daemon.socketPath])
        #expect(unknownStatus == 0)
        #expect(unknown.hasPrefix("tenant nobody: not in the entitlements file"), "\(unknown)")
    }

    @Test func customTenantAttribute() throws {
        let daemon = try RunningDaemon(
            flags: testEntitlementFlags, entitlements: testEntitlements, extraArguments: ["--tenant-attribute", "org"])
        defer { try? daemon.finish() }
        let c = try daemon.client()
        #expect(try c.request(#"{"op":"eval","flag":"voice_ai","context":{"org":"acme"}}"#)["variant"] == "plan:growth")
        #expect(try c.request(#"{"op":"eval","flag":"voice_ai","context":{"tenantId":"acme"}}"#)["variant"] == "default")
    }

    @Test func conflictingKeysAreRefused() throws {
        // At startup: guidond does not start, and says which key and where.
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("flags.json", #"{"flags": {"voice_ai": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}}"#)
        try dir.write("entitlements.json", testEntitlements)
        let process = try DaemonProcess(
            arguments: ["--config", dir.file("flags.json"), "--entitlements", dir.file("entitlements.json"), "--socket", dir.file("s.sock")],
            logPath: dir.file("log"))
        #expect(try process.waitForExit() == 1)
        #expect(process.log.contains("both a flag and a feature"))
        #expect(process.log.contains("(line 4, column"), "\(process.log)")

        // On reload: the previous configuration keeps serving, and status says why.
        let daemon = try RunningDaemon(flags: testEntitlementFlags, entitlements: testEntitlements)
        defer { try? daemon.finish() }
        let c = try daemon.client()
        try renameOver(daemon.configPath, #"{"flags": {"telegram_bot": {"state": "ENABLED", "variants": {"on": "x"}, "defaultVariant": "on"}}}"#)
        try daemon.waitFor("the refused reload") { try daemon.lastReload(c)?["ok"] == false }
        let error = try daemon.lastReload(c)?["error"]?.string ?? ""
        #expect(error.contains("\"telegram_bot\" is both a flag"))
        #expect(try c.request(#"{"op":"eval","flag":"banner"}"#)["value"] == "hello")
        #expect(try eval(c, "telegram_bot", tenant: "canceled")["value"] == false)
    }

    @Test func entitlementsFileReloads() throws {
        let daemon = try RunningDaemon(flags: testEntitlementFlags, entitlements: testEntitlements)
        defer { try? daemon.finish() }
        let c = try daemon.client()
        #expect(try eval(c, "voice_ai", tenant: "acme")["value"] == true)
        let before = try c.request(#"{"op":"ping"}"#)
        try renameOver(daemon.entitlementsPath, testEntitlements.replacingOccurrences(of: #""acme": {"plan": "growth""#, with: #""acme": {"plan": "starter""#))
        try daemon.waitFor("acme on starter") { try eval(c, "voice_ai", tenant: "acme")["value"] == false }
        let after = try c.request(#"{"op":"ping"}"#)
        #expect(after["configVersion"] == before["configVersion"])
        #expect(after["entitlementsVersion"] != before["entitlementsVersion"])
        // A bad edit keeps the last good entitlements serving, with the file's line in the report.
        try renameOver(daemon.entitlementsPath, testEntitlements.replacingOccurrences(of: #""acme": {"plan": "growth""#, with: #""acme": {"plan": "gold""#))
        try daemon.waitFor("the refused reload") { try daemon.lastReload(c)?["ok"] == false }
        let error = try daemon.lastReload(c)?["error"]?.string ?? ""
        #expect(error.contains("not a valid entitlements file"))
        #expect(error.contains("gold"))
        #expect(try eval(c, "voice_ai", tenant: "acme")["value"] == false)
    }

    /// Both files change at once (a ConfigMap-style `..data` swap) several times, while a client
    /// keeps asking: every answer holds the flag and the feature of one generation.
    @Test func bothFilesReloadAsOneVersion() throws {
        func flags(_ n: Int) -> String {
            #"{"flags": {"generation": {"state": "ENABLED", "variants": {"g": \#(n)}, "defaultVariant": "g"}}}"#
        }
        func entitlements(_ n: Int) -> String {
            #"{"features": {"generation_feature": {"description": "x", "default": {"generation": \#(n)}}}, "plans": {}, "tenants": {}}"#
        }
        let dir = try ScratchDirectory()
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir.file("cfg/..v1"), withIntermediateDirectories: true)
        try flags(1).write(toFile: dir.file("cfg/..v1/flags.json"), atomically: false, encoding: .utf8)
        try entitlements(1).write(toFile: dir.file("cfg/..v1/entitlements.json"), atomically: false, encoding: .utf8)
        try fm.createSymbolicLink(atPath: dir.file("cfg/..data"), withDestinationPath: "..v1")
        try fm.createSymbolicLink(atPath: dir.file("cfg/flags.json"), withDestinationPath: "..data/flags.json")
        try fm.createSymbolicLink(atPath: dir.file("cfg/entitlements.json"), withDestinationPath: "..data/entitlements.json")
        let daemon = try RunningDaemon(
            flags: nil, extraArguments: ["--entitlements", dir.file("cfg/entitlements.json")], dir: dir, configPath: dir.file("cfg/flags.json"))
        defer { try? daemon.finish() }
        let c = try daemon.client()

        func generations() throws -> (Int64?, Int64?) {
            let reply = try c.request(#"{"op":"evalAll"}"#)
            var flag: Int64?
            var feature: Int64?
            let results = reply["results"]?.object ?? JSONObject()
            if case .int(let n)? = results["generation"]?.object?["value"] { flag = n }
            if case .int(let n)? = results["generation_feature"]?.object?["value"]?.object?["generation"] { feature = n }
            return (flag, feature)
        }
        var answers = 0
        for n in 2...6 {
            try fm.createDirectory(atPath: dir.file("cfg/..v\(n)"), withIntermediateDirectories: false)
            try flags(n).write(toFile: dir.file("cfg/..v\(n)/flags.json"), atomically: false, encoding: .utf8)
            try entitlements(n).write(toFile: dir.file("cfg/..v\(n)/entitlements.json"), atomically: false, encoding: .utf8)
            try fm.createSymbolicLink(atPath: dir.file("cfg/..data_tmp"), withDestinationPath: "..v\(n)")
            guard rename(dir.file("cfg/..data_tmp"), dir.file("cfg/..data")) == 0 else { throw TestFailure("rename ..data") }
            try daemon.waitFor("generation \(n)") {
                let (flag, feature) = try generations()
                answers += 1
                #expect(flag == feature, "an answer mixed generations: flag \(String(describing: flag)), feature \(String(describing: feature))")
                return flag == Int64(n) && feature == Int64(n)
            }
        }
        #expect(answers >= 5)
        let status = try c.request(#"{"op":"status"}"#)
        #expect(status["lastReload"]?.object?["entitlementsVersion"] == status["entitlementsVersion"])
    }

    @Test func entitlementsAndTenantsOps() throws {
        let daemon = try RunningDaemon(flags: testEntitlementFlags, entitlements: testEntitlements)
        defer { try? daemon.finish() }
        let c = try daemon.client()

        let five = try c.request(#"{"op":"entitlements","tenant":"5","id":1}"#)
        #expect(five["id"] == 1)
        #expect(five["found"] == true)
        #expect(five["plan"] == "starter")
        #expect(five["planApplies"] == true)
        let voice = five["features"]?.object?["voice_ai"]?.object
        #expect(voice?["value"] == true)
        #expect(voice?["entitled"] == true)
        #expect(voice?["why"]?.string?.contains("sam.okafor") == true)
        #expect(five["features"]?.object?.count == 3)
        // A numeric id is the tenant of those digits; an unknown tenant is every default, not an error.
        #expect(try c.request(#"{"op":"entitlements","tenant":5}"#)["found"] == true)
        let unknown = try c.request(#"{"op":"entitlements","tenant":"nobody"}"#)
        #expect(unknown["found"] == false)
        #expect(unknown["features"]?.object?["voice_ai"]?.object?["value"] == false)

        // Paging by cursor, with filters.
        let first = try c.request(#"{"op":"tenants","limit":2}"#)
        #expect((first["tenants"]?.array ?? []).compactMap { $0.object?["id"]?.string } == ["5", "acme"])
        #expect(first["total"] == 5)
        #expect(first["next"] == "acme")
        let second = try c.request(#"{"op":"tenants","limit":2,"after":"acme"}"#)
        #expect((second["tenants"]?.array ?? []).compactMap { $0.object?["id"]?.string } == ["expired-override", "lapsed"])
        let last = try c.request(#"{"op":"tenants","limit":2,"after":"lapsed"}"#)
        #expect(last["next"] == nil)
        let growth = try c.request(#"{"op":"tenants","plan":"growth","status":"active"}"#)
        #expect(growth["total"] == 3)
        #expect(try c.request(#"{"op":"tenants"}"#)["total"] == 5)

        // Bad input: a clear INVALID_REQUEST naming what is wrong, and the connection goes on.
        let refusals: [(String, String)] = [
            (#"{"op":"entitlements"}"#, "needs \"tenant\""),
            (#"{"op":"entitlements","tenant":true}"#, "\"tenant\" must be a string or an integer, not a boolean"),
            (#"{"op":"entitlements","tenant":{"id":5}}"#, "not an object"),
            (#"{"op":"entitlements","tenant":"5","tenantId":"5"}"#, "unknown member \"tenantId\""),
            (#"{"op":"tenants","limit":0}"#, "between 1 and 1000"),
            (#"{"op":"tenants","limit":"ten"}"#, "\"limit\" must be an integer"),
            (#"{"op":"tenants","status":"paused"}"#, "\"paused\" is not a status"),
            (#"{"op":"tenants","status":1}"#, "\"status\" must be a subscription status"),
            (#"{"op":"tenants","plan":"gold"}"#, "no plan named \"gold\""),
            (#"{"op":"tenants","plan":false}"#, "\"plan\" must be a plan's name"),
            (#"{"op":"tenants","after":"removed-tenant"}"#, "start again without \"after\""),
            (#"{"op":"tenants","after":[1]}"#, "\"after\" must be a tenant id"),
        ]
        for (line, message) in refusals {
            let reply = try c.request(line)
            let error = reply["error"]?.object
            #expect(error?["code"] == "INVALID_REQUEST", "\(line)")
            #expect(error?["message"]?.string?.contains(message) == true, "\(line): \(String(describing: error?["message"]))")
        }
        #expect(try c.request(#"{"op":"ping"}"#)["ok"] == true)
    }

    @Test func opsWithoutAnEntitlementsFile() throws {
        let daemon = try RunningDaemon(flags: testEntitlementFlags)
        defer { try? daemon.finish() }
        let c = try daemon.client()
        for line in [#"{"op":"entitlements","tenant":"5"}"#, #"{"op":"tenants"}"#] {
            let error = try c.request(line)["error"]?.object
            #expect(error?["code"] == "NOT_FOUND")
            #expect(error?["message"]?.string?.contains("--entitlements") == true)
        }
        // Without one, ping says nothing of entitlements, and a feature's key is an unknown flag.
        #expect(try c.request(#"{"op":"ping"}"#)["entitlementsVersion"] == nil)
        #expect(try c.request(#"{"op":"eval","flag":"voice_ai"}"#)["errorCode"] == "FLAG_NOT_FOUND")
    }

    /// Flags whose targeting asks about the tenant, served with the entitlements through the daemon.
    @Test func entitledOperatorAndTenantVariables() throws {
        let flags = #"""
            {"flags": {
              "voice-beta": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                             "targeting": {"if": [{"entitled": "voice_ai"}, "on", "off"]}},
              "plan-banner": {"state": "ENABLED", "variants": {"growth": "Growth", "other": "-"}, "defaultVariant": "other",
                              "targeting": {"if": [{"==": [{"var": "$tenant.plan"}, "growth"]}, "growth", "other"]}}
            }}
            """#
        let daemon = try RunningDaemon(flags: flags, entitlements: testEntitlements)
        defer { try? daemon.finish() }
        let c = try daemon.client()
        func value(_ flag: String, _ tenant: String) throws -> JSONValue? {
            try c.request(#"{"op":"eval","flag":"\#(flag)","context":{"tenantId":"\#(tenant)"}}"#)["value"]
        }
        #expect(try value("voice-beta", "5") == true)  // an override
        #expect(try value("voice-beta", "acme") == true)  // the plan
        #expect(try value("voice-beta", "lapsed") == false)  // the subscription ended
        #expect(try value("voice-beta", "nobody") == false)
        #expect(try value("plan-banner", "acme") == "Growth")
        #expect(try value("plan-banner", "5") == "-")
        // evalAll and several keys read the tenant once for flags and features alike.
        let all = try c.request(#"{"op":"evalAll","context":{"tenantId":"acme"}}"#)["results"]?.object
        #expect(all?["voice-beta"]?.object?["value"] == true)
        #expect(all?["voice_ai"]?.object?["value"] == true)
        // A reload of the entitlements answers the flags from the new ones at once.
        try renameOver(daemon.entitlementsPath, testEntitlements.replacingOccurrences(of: #""acme": {"plan": "growth""#, with: #""acme": {"plan": "starter""#))
        try daemon.waitFor("acme on starter") { try value("voice-beta", "acme") == false }
        #expect(try value("plan-banner", "acme") == "-")

        // Removing a feature a flag's targeting names is refused (the flags are checked again).
        // (voice_ai renamed: the document stays valid, its features change.)
        let withoutVoice = testEntitlements.replacingOccurrences(of: #""voice_ai""#, with: #""voice_calls""#)
        try renameOver(daemon.entitlementsPath, withoutVoice)
        try daemon.waitFor("the refused reload") { try daemon.lastReload(c)?["ok"] == false }
        let error = try daemon.lastReload(c)?["error"]?.string ?? ""
        #expect(error.contains("\"voice_ai\" is not a feature of the entitlements file"), "\(error)")
        #expect(try value("voice-beta", "5") == true)
    }

    @Test func strictStartupRefusesAnUnknownFeatureInTargeting() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("flags.json", #"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a", "targeting": {"if": [{"entitled": "voice_aii"}, "b", "a"]}}}}"#)
        try dir.write("entitlements.json", testEntitlements)
        let process = try DaemonProcess(
            arguments: ["--config", dir.file("flags.json"), "--entitlements", dir.file("entitlements.json"), "--socket", dir.file("s.sock")],
            logPath: dir.file("log"))
        #expect(try process.waitForExit() == 1)
        #expect(process.log.contains("did you mean \"voice_ai\"?"), "\(process.log)")
    }

    /// OFREP answers features through the same evaluation path as the socket.
    @Test func featuresThroughOFREP() throws {
        let dir = try ScratchDirectory()
        try dir.write("entitlements.json", testEntitlements)
        let ofrep = dir.file("ofrep.sock")
        let daemon = try RunningDaemon(
            flags: testEntitlementFlags, extraArguments: ["--entitlements", dir.file("entitlements.json"), "--ofrep-listen", ofrep], dir: dir)
        defer { try? daemon.finish() }
        try daemon.waitFor("the OFREP socket") { daemon.process.log.contains("serving OFREP on the Unix socket \(ofrep)") }
        let one = try http(.unix(ofrep), "POST", "/ofrep/v1/evaluate/flags/voice_ai", body: #"{"context":{"tenantId":"5"}}"#)
        #expect(one.status == 200, "\(one)")
        let body = try jsonObject(one.body)
        #expect(body["value"] as? Bool == true)
        #expect(body["variant"] as? String == "override")
        let bulk = try http(.unix(ofrep), "POST", "/ofrep/v1/evaluate/flags", body: #"{"context":{"tenantId":"acme"}}"#)
        #expect(bulk.status == 200)
        let keys = ((try jsonObject(bulk.body)["flags"] as? [[String: Any]]) ?? []).compactMap { $0["key"] as? String }
        #expect(keys.contains("banner") && keys.contains("voice_ai") && keys.contains("payment_providers"), "\(keys)")
    }

    /// An admin edit that changes the features checks the flags again: removing a feature that a
    /// flag's `entitled` names is refused; adding one re-checks and serves.
    @Test func adminFeatureEditsRecheckTheFlags() throws {
        let flags = #"{"flags": {"voice-beta": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {"if": [{"entitled": "voice_ai"}, "on", "off"]}}}}"#
        let dir = try ScratchDirectory()
        try dir.write("entitlements.json", testEntitlements)
        let daemon = try RunningDaemon.withAdmin(flags: flags, extraArguments: ["--entitlements", dir.file("entitlements.json")], dir: dir)
        defer { try? daemon.finish() }
        let admin = try daemon.adminClient()
        let query = try daemon.client()
        let removal = try admin.ask(["op": "entitlements.removeFeature", "feature": "voice_ai", "cascade": true, "force": true, "by": "test"])
        let error = removal["error"]?.object
        #expect(error?["code"] == "INVALID_DOCUMENT", "\(removal)")
        #expect(error?["message"]?.string?.contains("\"voice_ai\" is not a feature") == true, "\(removal)")
        #expect(try query.request(#"{"op":"eval","flag":"voice-beta","context":{"tenantId":"acme"}}"#)["value"] == true)
        let added = try admin.ask([
            "op": "entitlements.addFeature", "feature": "sms", "definition": ["description": "SMS", "default": false], "force": true, "by": "test",
        ])
        #expect(added["error"] == nil, "\(added)")
        #expect(try query.request(#"{"op":"ping"}"#)["features"] == 4)
        #expect(try query.request(#"{"op":"eval","flag":"voice-beta","context":{"tenantId":"acme"}}"#)["value"] == true)
    }
}
