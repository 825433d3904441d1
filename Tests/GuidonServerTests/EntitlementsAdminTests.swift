import Foundation
import GuidonEditing
import GuidonJSON
import GuidonProtocol
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension RunningDaemon {
    /// A daemon serving the example flags and entitlements, with an admin socket and an audit log.
    static func withEntitlementsAdmin(entitlements: String = bundledExampleEntitlements, extraArguments: [String] = []) throws -> RunningDaemon {
        let dir = try ScratchDirectory()
        try dir.write("entitlements.json", entitlements)
        return try RunningDaemon.withAdmin(flags: bundledExampleFlags, extraArguments: ["--entitlements", dir.file("entitlements.json")] + extraArguments, dir: dir)
    }

    func entitlementsBytes() throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: dir.file("entitlements.json"))))
    }
}

extension LineClient {
    /// The entitlements file's revision as the admin socket reports it.
    func entitlementsRevision() throws -> String {
        let reply = try ask(["op": "entitlements.get"])
        guard let revision = reply["revision"]?.string else { throw TestFailure("no revision in \(reply)") }
        return revision
    }

    func evalFeature(_ feature: String, tenant: String) throws -> JSONObject {
        try ask(["op": "eval", "flag": .string(feature), "context": ["tenantId": .string(tenant)]])
    }
}

/// `entitlements.*` on the admin socket of a real guidond: revisions, dry runs, refusals, the
/// audit log, and answers that change once a write is answered.
@Suite("guidond: entitlements through the admin socket")
struct EntitlementsAdminTests {
    @Test func aWriteIsServedWhenAnsweredAndAudited() throws {
        let daemon = try RunningDaemon.withEntitlementsAdmin(extraArguments: ["--log-level", "debug"])
        defer { try? daemon.finish() }
        let admin = try daemon.adminClient()
        let query = try daemon.client()
        #expect(try query.evalFeature("sso_saml", tenant: "acme")["value"] == false)

        let before = try admin.entitlementsRevision()
        #expect(before == Revision.of(try daemon.entitlementsBytes()))
        #expect(try query.ask(["op": "ping"])["entitlementsVersion"] == .string(before))
        let reply = try admin.ask([
            "op": "entitlements.enable", "id": 7, "tenant": "acme", "feature": "sso_saml", "expiresAt": "2027-03-01",
            "ifRevision": .string(before), "by": "sam.okafor", "reason": "enabled for the premium trial",
        ])
        #expect(reply["ok"] == true && reply["id"] == 7, "\(reply)")
        #expect(reply["summary"] == "tenant acme: sso_saml on (override by sam.okafor, until 2027-03-01T00:00:00Z)")
        #expect(reply["subject"] == "tenant acme" && reply["changed"] == true && reply["previousRevision"] == .string(before))
        let after = Revision.of(try daemon.entitlementsBytes())
        #expect(reply["revision"] == .string(after) && after != before)
        #expect(reply["definition"]?.object?["overrides"]?.object?["sso_saml"]?.object?["by"] == "sam.okafor")

        // Read your writes, on the query socket.
        let answer = try query.evalFeature("sso_saml", tenant: "acme")
        #expect(answer["value"] == true && answer["variant"] == "override", "\(answer)")
        #expect(answer["metadata"]?.object?["notes"] == "enabled for the premium trial")
        #expect(try query.ask(["op": "ping"])["entitlementsVersion"] == .string(after))
        let view = try query.ask(["op": "entitlements", "tenant": "acme"])
        #expect(view["features"]?.object?["sso_saml"]?.object?["entitled"] == true)
        // The flag file and its revision are untouched.
        #expect(try daemon.fileBytes() == Array(bundledExampleFlags.utf8))

        // Only acme's text changed: the file is what the editor makes of the old one.
        let text = String(decoding: try daemon.entitlementsBytes(), as: UTF8.self)
        #expect(text.hasPrefix(String(bundledExampleEntitlements.prefix(upTo: bundledExampleEntitlements.range(of: #""acme": {"#)!.upperBound))))
        #expect(text.hasSuffix(String(bundledExampleEntitlements.suffix(from: bundledExampleEntitlements.range(of: #"    "globex": {"#)!.lowerBound))))

        let record = try #require(try daemon.auditRecords().last)
        #expect(record["action"] == "entitlements.enable" && record["document"] == "entitlements" && record["result"] == "applied")
        #expect(record["subject"] == "tenant acme" && record["flag"] == .null)
        #expect(record["by"] == "sam.okafor" && record["reason"] == "enabled for the premium trial")
        #expect(record["revisionBefore"] == .string(before) && record["revisionAfter"] == .string(after))
        #expect(record["before"]?.object?["overrides"] == nil && record["after"]?.object?["overrides"] != nil)
        #expect(record["actor"]?.object?["pid"] != nil)
        #expect(record["id"] == reply["auditId"])

        let history = try admin.ask(["op": "entitlements.history", "tenant": "acme"])
        #expect(history["records"]?.array?.count == 1)
        #expect(try admin.ask(["op": "entitlements.history", "tenant": "globex"])["records"]?.array?.isEmpty == true)
        #expect(try admin.ask(["op": "flags.history"])["records"]?.array?.isEmpty == true)

        // The watcher finds the bytes it serves: one publication, the write's.
        try daemon.waitFor("the watcher to see the written file") {
            daemon.process.log.components(separatedBy: "flag file unchanged").count - 1 >= 1
        }
        usleep(300_000)
        #expect(daemon.process.log.components(separatedBy: "entitlements reloaded").count - 1 == 1, "one publication per write, none from the watcher")
    }

    @Test func conflictDryRunAndRefusalsWriteNothing() throws {
        let daemon = try RunningDaemon.withEntitlementsAdmin()
        defer { try? daemon.finish() }
        let admin = try daemon.adminClient()
        let original = try daemon.entitlementsBytes()
        let revision = try admin.entitlementsRevision()

        // A hand edit after the revision was read: CONFLICT, with the file's revision now.
        var edited = original
        edited.append(0x0A)
        try Data(edited).write(to: URL(fileURLWithPath: daemon.dir.file("entitlements.json")))
        let conflict = try admin.ask([
            "op": "entitlements.setPlan", "tenant": "5", "plan": "growth", "ifRevision": .string(revision), "by": "ana", "reason": "upgrade",
        ])
        #expect(conflict["error"]?.object?["code"] == "CONFLICT", "\(conflict)")
        #expect(conflict["error"]?.object?["revision"] == .string(Revision.of(edited)))
        #expect(try daemon.entitlementsBytes() == edited)
        #expect(try daemon.auditRecords().last?["result"] == "conflict")
        #expect(try daemon.auditRecords().last?["by"] == "ana")

        // A dry run: the diff, nothing written, nothing served, nothing audited.
        let records = try daemon.auditRecords().count
        let dry = try admin.ask(["op": "entitlements.setPlan", "tenant": "5", "plan": "growth", "dryRun": true])
        #expect(dry["dryRun"] == true && dry["summary"] == "tenant 5: plan starter → growth", "\(dry)")
        let diff = try #require(dry["diff"]?.string)
        #expect(diff.contains(#"-      "plan": "starter", "status": "active", "validUntil": "2027-06-30T00:00:00Z","#), "\(diff)")
        #expect(diff.contains(#"+      "plan": "growth", "status": "active", "validUntil": "2027-06-30T00:00:00Z","#), "\(diff)")
        #expect(diff.components(separatedBy: "\n+").count == 3, "the header and one line")
        #expect(try daemon.entitlementsBytes() == edited)
        #expect(try daemon.auditRecords().count == records)
        #expect(try daemon.client().evalFeature("whatsapp_channel", tenant: "5")["value"] == false)

        // A change that would not validate: the report, nothing written.
        let invalid = try admin.ask([
            "op": "entitlements.grant", "plan": "starter", "feature": "voice_ai", "grant": ["config": ["x": 1]], "force": true,
        ])
        let error = try #require(invalid["error"]?.object)
        #expect(error["code"] == "INVALID_DOCUMENT", "\(invalid)")
        let problem = try #require(error["report"]?.object?["errors"]?.array?.first?.object)
        #expect(problem["path"]?.string?.hasPrefix("plans.starter.grants.voice_ai.config") == true, "\(problem)")
        #expect(problem["line"] != nil && problem["column"] != nil)
        #expect(try daemon.auditRecords().last?["result"] == "invalid")
        // A feature whose key is a flag's.
        let clash = try admin.ask([
            "op": "entitlements.addFeature", "feature": "theme", "definition": ["default": false, "description": "x"], "force": true,
        ])
        #expect(clash["error"]?.object?["code"] == "INVALID_DOCUMENT", "\(clash)")
        #expect(try daemon.entitlementsBytes() == edited)

        // Bad requests: what and where.
        let cases: [(JSONObject, String, String)] = [
            (["op": "entitlements.enable", "feature": "voice_ai", "force": true], "INVALID_REQUEST", #"entitlements.enable needs "tenant""#),
            (["op": "entitlements.enable", "tenant": ["x"], "feature": "voice_ai", "force": true], "INVALID_REQUEST", #""tenant" must be a string"#),
            (["op": "entitlements.enable", "tenant": "acme", "feature": "voice_ai", "expiresAt": "soon", "force": true], "INVALID_REQUEST", "is not a date-time"),
            (["op": "entitlements.bulk", "changes": [["tenant": "acme", "feature": "voice_ai"]], "force": true], "INVALID_REQUEST", "changes[0] needs either"),
            (["op": "entitlements.setStatus", "tenant": "acme", "status": "paused", "force": true], "INVALID_ARGUMENT", "not a subscription status"),
            (["op": "entitlements.clear", "tenant": "nobody", "feature": "voice_ai", "force": true], "NOT_FOUND", #"no tenant "nobody""#),
            (["op": "entitlements.frobnicate", "force": true], "UNKNOWN_OP", "entitlements.setPlan"),
            (["op": "entitlements.setPlan", "tenant": "5", "plan": "growth"], "INVALID_REQUEST", "needs \"ifRevision\""),
        ]
        for (request, code, message) in cases {
            let reply = try admin.ask(request)
            #expect(reply["error"]?.object?["code"] == .string(code), "\(request): \(reply)")
            #expect(reply["error"]?.object?["message"]?.string?.contains(message) == true, "\(request): \(reply)")
        }
        #expect(try daemon.entitlementsBytes() == edited)
        // The connection stayed usable.
        #expect(try admin.ask(["op": "entitlements.get", "tenant": "5"])["definition"]?.object?["plan"] == "starter")
    }

    @Test func aBulkChangeIsOneRevision() throws {
        let daemon = try RunningDaemon.withEntitlementsAdmin()
        defer { try? daemon.finish() }
        let admin = try daemon.adminClient()
        let before = try admin.entitlementsRevision()
        let reply = try admin.write(entitlementsRequest: [
            "op": "entitlements.bulk", "by": "li.wei", "reason": "incident 4711",
            "changes": .array(["acme", "globex", "stark", 5].map { tenant in
                ["tenant": tenant is Int ? .int(5) : .string("\(tenant)"), "feature": "priority_support", "enabled": true]
            }),
        ])
        #expect(reply["summary"] == "feature priority_support: on for 4 tenants (acme, globex, stark, 5)", "\(reply)")
        #expect(reply["previousRevision"] == .string(before))
        let query = try daemon.client()
        for tenant in ["acme", "globex", "stark", "5"] {
            #expect(try query.evalFeature("priority_support", tenant: tenant)["value"] == true)
        }
        #expect(try query.evalFeature("priority_support", tenant: "initech")["value"] == false)
        let records = try daemon.auditRecords()
        #expect(records.count == 1)
        #expect(records.first?["subject"] == "feature priority_support")
        #expect(records.first?["after"]?.object?.keys == ["acme", "globex", "stark", "5"])
    }

    @Test func planDetailsAndTheTimezoneChangeThroughTheAdminSocket() throws {
        let daemon = try RunningDaemon.withEntitlementsAdmin()
        defer { try? daemon.finish() }
        let admin = try daemon.adminClient()
        let query = try daemon.client()
        #expect(try query.ask(["op": "entitlements", "tenant": "acme"])["planName"] == "Growth")

        // A plan's display name and order: that line changes, the plan is served so, audited.
        let before = try admin.entitlementsRevision()
        let reply = try admin.ask([
            "op": "entitlements.updatePlan", "plan": "growth", "changes": ["displayName": "Growth Plus", "order": 5, "description": "For teams"],
            "ifRevision": .string(before), "by": "ana", "reason": "repricing",
        ])
        #expect(reply["ok"] == true && reply["subject"] == "plan growth", "\(reply)")
        #expect(reply["summary"] == #"plan growth: displayName "Growth" → "Growth Plus", description none → "For teams", order 2 → 5"#)
        #expect(reply["definition"]?.object?["displayName"] == "Growth Plus" && reply["definition"]?.object?["grants"] != nil)
        let after = Revision.of(try daemon.entitlementsBytes())
        #expect(reply["revision"] == .string(after))
        let expected = bundledExampleEntitlements.replacingOccurrences(
            of: #""displayName": "Growth", "order": 2, "inherits": "starter","#,
            with: #""displayName": "Growth Plus", "description": "For teams", "order": 5, "inherits": "starter","#)
        #expect(String(decoding: try daemon.entitlementsBytes(), as: UTF8.self) == expected)
        #expect(try query.ask(["op": "entitlements", "tenant": "acme"])["planName"] == "Growth Plus")
        let record = try #require(try daemon.auditRecords().last)
        #expect(record["action"] == "entitlements.updatePlan" && record["result"] == "applied" && record["subject"] == "plan growth")
        #expect(record["by"] == "ana" && record["reason"] == "repricing" && record["actor"]?.object?["pid"] != nil)
        #expect(record["before"]?.object?["order"] == 2 && record["after"]?.object?["order"] == 5)
        #expect(try admin.ask(["op": "entitlements.history", "plan": "growth"])["records"]?.array?.count == 1)

        // Refused, nothing written: a cycle, an unknown parent, grants, nothing to change.
        let cases: [(JSONObject, String, String)] = [
            (["plan": "starter", "changes": ["inherits": "enterprise"]], "INVALID_ARGUMENT",
             #"plan "starter" cannot inherit from "enterprise", which inherits from it: "starter" → "enterprise" → "growth" → "starter" would be a cycle"#),
            (["plan": "enterprise", "changes": ["inherits": "grwth"]], "NOT_FOUND", #"no plan "grwth" in the entitlements document; did you mean "growth"?"#),
            (["plan": "starter", "changes": ["grants": ["voice_ai": true]]], "INVALID_REQUEST", "entitlements.grant and entitlements.revoke"),
            (["plan": "starter", "changes": ["order": "first"]], "INVALID_REQUEST", #""changes.order" must be an integer"#),
            (["plan": "starter", "changes": [:]], "INVALID_ARGUMENT", #"nothing to change in plan "starter""#),
            (["plan": "starter"], "INVALID_REQUEST", #"needs "changes""#),
        ]
        for (members, code, message) in cases {
            var request = members
            request["op"] = "entitlements.updatePlan"
            request["force"] = true
            let refused = try admin.ask(request)
            #expect(refused["error"]?.object?["code"] == .string(code), "\(request): \(refused)")
            #expect(refused["error"]?.object?["message"]?.string?.contains(message) == true, "\(request): \(refused)")
        }
        #expect(Revision.of(try daemon.entitlementsBytes()) == after)

        // The time zone: one line, served, audited; a zone the host does not know is the
        // compiler's refusal, with where.
        let zone = try admin.write(entitlementsRequest: ["op": "entitlements.setTimezone", "timezone": "America/New_York", "by": "ana", "reason": "US billing"])
        #expect(zone["ok"] == true && zone["subject"] == "timezone" && zone["summary"] == "timezone: Europe/Berlin → America/New_York", "\(zone)")
        #expect(zone["definition"] == .object(["timezone": "America/New_York"]))
        #expect(String(decoding: try daemon.entitlementsBytes(), as: UTF8.self)
            == expected.replacingOccurrences(of: #""timezone": "Europe/Berlin","#, with: #""timezone": "America/New_York","#))
        let zoneRecord = try #require(try daemon.auditRecords().last)
        #expect(zoneRecord["action"] == "entitlements.setTimezone" && zoneRecord["subject"] == "timezone" && zoneRecord["by"] == "ana")
        #expect(zoneRecord["before"] == .object(["timezone": "Europe/Berlin"]) && zoneRecord["after"] == .object(["timezone": "America/New_York"]))
        let unknown = try admin.write(entitlementsRequest: ["op": "entitlements.setTimezone", "timezone": "Europe/Atlantis"])
        let error = try #require(unknown["error"]?.object, "\(unknown)")
        #expect(error["code"] == "INVALID_DOCUMENT")
        let problem = try #require(error["report"]?.object?["errors"]?.array?.first?.object)
        #expect(problem["path"] == "timezone" && problem["line"] == 3, "\(problem)")
        #expect(problem["message"]?.string?.contains(#"unknown time zone "Europe/Atlantis""#) == true)
        #expect(try daemon.entitlementsBytes() == Array(expected.replacingOccurrences(of: "Europe/Berlin", with: "America/New_York").utf8))

        // The CLI, through the daemon.
        let env = ["GUIDON_ADMIN_SOCKET": daemon.adminSocketPath]
        let update = try runGuidon(["plans", "update", "growth", "--no-description", "--by", "ana"], environment: env)
        #expect(update.status == 0 && update.output.hasPrefix(#"plan growth: description "For teams" → none (revision "#), "\(update.output)")
        let timezone = try runGuidon(["plans", "timezone", "Europe/Berlin", "--reason", "back"], environment: env)
        #expect(timezone.status == 0 && timezone.output.hasPrefix("timezone: America/New_York → Europe/Berlin (revision "), "\(timezone.output)")
        #expect(String(decoding: try daemon.entitlementsBytes(), as: UTF8.self)
            == bundledExampleEntitlements.replacingOccurrences(of: #""displayName": "Growth", "order": 2,"#, with: #""displayName": "Growth Plus", "order": 5,"#))
        #expect(try daemon.auditRecords().last?["reason"] == "back")
    }

    @Test func withoutAnEntitlementsFileThereAreNoEntitlementsOps() throws {
        let daemon = try RunningDaemon.withAdmin(flags: bundledExampleFlags)
        defer { try? daemon.finish() }
        let reply = try daemon.adminClient().ask(["op": "entitlements.get"])
        #expect(reply["error"]?.object?["code"] == "UNKNOWN_OP", "\(reply)")
        #expect(reply["error"]?.object?["message"]?.string?.contains("flags.…") == true)
    }

    @Test func theCLIThroughTheAdminSocket() throws {
        let daemon = try RunningDaemon.withEntitlementsAdmin()
        defer { try? daemon.finish() }
        let env = ["GUIDON_ADMIN_SOCKET": daemon.adminSocketPath]
        let enable = try runGuidon(
            ["tenants", "enable", "acme", "voice_ai", "--by", "sam.okafor", "--reason", "enabled for the premium trial", "--at", "2026-12-01T10:00:00Z"],
            environment: env)
        #expect(enable.status == 0 && enable.output.hasPrefix("tenant acme: voice_ai on (override by sam.okafor) (revision "), "\(enable.output)")
        let show = try runGuidon(["tenants", "show", "acme"], environment: env)
        #expect(show.status == 0, "\(show.output)")
        let lines = show.output.split(separator: "\n").map { line in
            var text = String(line)
            while text.contains("   ") { text = text.replacingOccurrences(of: "   ", with: "  ") }
            return text
        }
        #expect(lines.first == "tenant acme: plan growth (Growth), active")
        #expect(lines.contains(#"voice_ai  on  override by sam.okafor 2026-12-01: "enabled for the premium trial""#), "\(show.output)")
        #expect(!show.output.contains("computed from"))
        let disable = try runGuidon(["tenants", "disable", "globex", "telegram_bot", "--reason", "invoice unpaid"], environment: env)
        #expect(disable.status == 0, "\(disable.output)")
        let off = try daemon.client().evalFeature("telegram_bot", tenant: "globex")
        #expect(off["value"] == false && off["metadata"]?.object?["notes"] == "invoice unpaid")
        let history = try runGuidon(["tenants", "history", "acme"], environment: env)
        #expect(history.output.contains("applied  tenant acme: voice_ai on (override by sam.okafor)  [sam.okafor / "), "\(history.output)")
        #expect(history.output.contains("— enabled for the premium trial"))
        let conflict = try runGuidon(["plans", "grant", "starter", "voice_ai", "--if-revision", "0123456789abcdef"], environment: env)
        #expect(conflict.status != 0 && conflict.output.contains("CONFLICT"), "\(conflict.output)")
    }
}

extension LineClient {
    /// An entitlements write based on the current revision.
    func write(entitlementsRequest request: JSONObject) throws -> JSONObject {
        var request = request
        request["ifRevision"] = .string(try entitlementsRevision())
        return try ask(request)
    }
}
