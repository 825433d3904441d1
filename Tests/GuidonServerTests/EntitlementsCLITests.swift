import Foundation
import GuidonJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The bundled example entitlements file, as text.
let bundledExampleEntitlements: String = {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    return (try? String(contentsOf: root.appendingPathComponent("protocol/examples/entitlements.json"), encoding: .utf8)) ?? ""
}()

/// `guidon tenants|plans|features` on a file (`--file`: the same edits, validation and atomic
/// write as the daemon's, and `tenants show` computed from the file).
@Suite("guidon tenants, plans and features on a file", .serialized)
struct EntitlementsFileCLITests {
    @Test func tenantsShowPrintsEachFeatureItsValueAndWhy() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("entitlements.json", bundledExampleEntitlements)
        let file = ["--file", dir.file("entitlements.json")]
        // Nothing in tenant 5 depends on today's date after these two changes.
        let status = try runGuidon(["tenants", "set-status", "5", "active", "--no-valid-until"] + file)
        #expect(status.status == 0 && status.output.hasPrefix("tenant 5: validUntil 2027-06-30T00:00:00Z → none (revision "), "\(status.output)")
        let enable = try runGuidon(
            ["tenants", "enable", "5", "voice_ai", "--by", "sam.okafor", "--notes", "enabled for the premium trial", "--at", "2026-12-01T10:00:00Z"] + file)
        #expect(enable.status == 0, "\(enable.output)")
        #expect(enable.output.hasPrefix("tenant 5: voice_ai on (override by sam.okafor), was on (revision "), "\(enable.output)")

        let show = try runGuidon(["tenants", "show", "5"] + file)
        #expect(show.status == 0, "\(show.output)")
        // Columns: the key, the value, why (runs of spaces squeezed to two here).
        let lines = show.output.split(separator: "\n").map { line in
            var text = String(line)
            while text.contains("   ") { text = text.replacingOccurrences(of: "   ", with: "  ") }
            return text
        }
        #expect(lines.first == "tenant 5: plan starter (Starter), active")
        #expect(lines.contains(#"voice_ai  on  override by sam.okafor 2026-12-01: "enabled for the premium trial""#), "\(show.output)")
        #expect(lines.contains { $0.hasPrefix("telegram_bot  on  ") && $0.hasSuffix("on for every tenant (a core feature: its default is true)") }, "\(show.output)")
        #expect(lines.contains { $0.hasPrefix("analytics  on  ") && $0.hasSuffix(#"granted by plan "starter""#) }, "\(show.output)")
        #expect(lines.contains { $0 == #"seats  {"max":5}  granted by plan "starter""# }, "\(show.output)")
        #expect(lines.contains(#"sso_saml  off  not granted by plan "starter"; the feature's default applies (available on "enterprise")"#), "\(show.output)")
        #expect(show.output.split(separator: "\n").last.map(String.init) == "(computed from \(dir.file("entitlements.json")), not asked of the daemon)")

        let json = try runGuidon(["tenants", "show", "5", "--json"] + file)
        let view = try #require(try JSONParser().parse(json.output.trimmingCharacters(in: .newlines)).object)
        #expect(view["features"]?.object?["voice_ai"]?.object?["variant"] == "override")

        let definition = try runGuidon(["tenants", "show", "5", "--definition"] + file)
        #expect(definition.output.contains(#""by": "sam.okafor""#) && definition.output.contains("revision "), "\(definition.output)")
    }

    @Test func everyVerbOnAFile() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("entitlements.json", bundledExampleEntitlements)
        let path = dir.file("entitlements.json")
        let file = ["--file", path]
        func run(_ arguments: [String]) throws -> String {
            let result = try runGuidon(arguments + file)
            #expect(result.status == 0, "\(arguments): \(result.output)")
            return result.output
        }
        #expect(try run(["tenants", "set-plan", "acme", "enterprise"]).hasPrefix("tenant acme: plan growth → enterprise (revision"))
        #expect(try run(["tenants", "set-plan", "wayne", "starter", "--status", "trialing"]).hasPrefix("tenant wayne: created on plan starter (trialing)"))
        #expect(try run(["tenants", "disable", "hooli", "voice_ai", "--reason", "abuse report 4711", "--by", "li.wei", "--expires", "2027-01-01"])
            .hasPrefix("tenant hooli: voice_ai off (override by li.wei, until 2027-01-01T00:00:00Z) (revision"))
        #expect(try run(["tenants", "clear", "hooli", "voice_ai"]).hasPrefix("tenant hooli: voice_ai override cleared (was off)"))
        #expect(try run(["tenants", "bulk", "acme", "globex", "stark", "--enable", "priority_support", "--by", "li.wei"])
            .hasPrefix("feature priority_support: on for 3 tenants (acme, globex, stark) (revision"))
        #expect(try run(["tenants", "bulk", "initech", "--enable", "analytics", "--disable", "voice_ai", "--clear", "seats"])
            .hasPrefix("tenant initech: analytics on (override); voice_ai off (override); seats override cleared (was on)"))
        #expect(try run(["plans", "create", "scale", "--display-name", "Scale", "--order", "4", "--inherits", "growth", "--grant", "sso_saml"])
            .hasPrefix("plan scale: created (order 4; inherits growth; grants sso_saml)"))
        #expect(try run(["plans", "update", "scale", "--display-name", "Scale+", "--order", "5", "--no-inherits", "--description", "For chains"])
            .hasPrefix(#"plan scale: displayName "Scale" → "Scale+", description none → "For chains", order 4 → 5, inherits "growth" → none (revision"#))
        #expect(try run(["plans", "timezone", "Europe/Paris"]).hasPrefix("timezone: Europe/Berlin → Europe/Paris (revision"))
        #expect(try String(contentsOfFile: path, encoding: .utf8).contains(#""timezone": "Europe/Paris","#))
        #expect(try run(["plans", "grant", "starter", "seats", "--config", #"{"max": 10}"#]).hasPrefix(#"plan starter: grants seats {"config":{"max":10}}"#))
        #expect(try run(["plans", "revoke", "growth", "analytics"]).hasPrefix("plan growth: revokes analytics (false over the grant inherited from starter)"))
        #expect(try run(["features", "add", "beta_inbox", "--description", "The new inbox", "--category", "channels"]).hasPrefix("feature beta_inbox: added (default false)"))
        #expect(try run(["features", "remove", "custom_domain", "--cascade"]).hasPrefix("feature custom_domain: removed and its grants in growth"))
        #expect(try run(["plans", "show", "scale"]).contains(#""description": "For chains""#))
        let contents = try run(["plans", "show"])
        #expect(contents.hasPrefix("plans: starter, growth, enterprise, scale\nfeatures: telegram_bot,"), "\(contents)")
        #expect(try run(["features", "show", "beta_inbox"]).contains(#""description": "The new inbox""#))
        #expect(try run(["tenants", "delete", "wayne"]).hasPrefix("tenant wayne: deleted"))

        // Still a valid file: the daemon loads it (validated here as guidond would).
        let before = try String(contentsOfFile: path, encoding: .utf8)
        let dry = try run(["tenants", "set-status", "acme", "past_due", "--dry-run"])
        // acme is on lines of its own since the bulk change: one line changes.
        #expect(dry.contains("\n-      \"status\": \"active\",\n+      \"status\": \"past_due\",\n"), "\(dry)")
        #expect(dry.contains("dry run: nothing written"))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == before)
    }

    @Test func badInputIsRefusedAndChangesNothing() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("entitlements.json", bundledExampleEntitlements)
        let file = ["--file", dir.file("entitlements.json")]
        for (arguments, message) in [
            (["tenants", "enable", "acm", "voice_ai"], #"NOT_FOUND: no tenant "acm" in the entitlements document; did you mean "acme"?"#),
            (["tenants", "enable", "acme", "voice"], #"NOT_FOUND: no feature "voice" in the entitlements document"#),
            (["tenants", "set-status", "acme", "paused"], #"INVALID_ARGUMENT: "paused" is not a subscription status"#),
            (["tenants", "enable", "5", "voice_ai", "--expires", "soon"], "--expires is not a date-time"),
            (["tenants", "set-plan", "5", "premium"], #"NOT_FOUND: no plan "premium""#),
            (["plans", "grant", "starter", "voice_ai", "--config", #"{"x": 1}"#], "INVALID_DOCUMENT: plan starter: the change"),
            (["features", "remove", "seats"], #"INVALID_ARGUMENT: feature "seats" is still granted by plans starter, growth, enterprise"#),
            (["features", "add", "voice_ai"], #"ALREADY_EXISTS: feature "voice_ai" already exists"#),
            (["tenants", "clear", "acme", "voice_ai"], #"NOT_FOUND: tenant "acme" has no override of "voice_ai" to clear"#),
            (["tenants", "set-plan", "5", "growth", "--if-revision", "0123456789abcdef"], "CONFLICT: "),
            (["plans", "update", "starter", "--inherits", "enterprise"], #"INVALID_ARGUMENT: plan "starter" cannot inherit from "enterprise", which inherits from it"#),
            (["plans", "update", "growth", "--inherits", "startr"], #"NOT_FOUND: plan "growth" cannot inherit from "startr": no plan "startr" in the entitlements document; did you mean "starter"?"#),
            (["plans", "update", "growth"], "nothing to change: give --display-name"),
            (["plans", "update", "growth", "--order", "3", "--no-order"], "give --order or --no-order, not both"),
            (["plans", "timezone", "Europe/Atlantis"], "INVALID_DOCUMENT: timezone: the change (Europe/Berlin → Europe/Atlantis)"),
        ] {
            let result = try runGuidon(arguments + file)
            #expect(result.status != 0 && result.output.contains(message), "\(arguments): \(result.output)")
        }
        #expect(try String(contentsOfFile: dir.file("entitlements.json"), encoding: .utf8) == bundledExampleEntitlements)
        let invalid = try runGuidon(["plans", "grant", "starter", "voice_ai", "--config", #"{"x": 1}"#] + file)
        #expect(invalid.output.contains("error: plans.starter.grants.voice_ai.config (line "), "\(invalid.output)")
    }
}
