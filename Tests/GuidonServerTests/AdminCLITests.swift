import Foundation
import GuidonJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `guidon flags` and `guidon import env`, through a real guidond's admin socket and on a file.
@Suite("guidon flags and guidon import env", .serialized)
struct AdminCLITests {
    @Test func flagsThroughTheAdminSocket() throws {
        let daemon = try RunningDaemon.withAdmin(flags: bundledExampleFlags)
        defer { try? daemon.finish() }
        let env = ["GUIDON_ADMIN_SOCKET": daemon.adminSocketPath]
        let before = try daemon.adminClient().revision()

        let rollout = try runGuidon(["flags", "rollout", "search-v2", "50%", "--by", "ana", "--reason", "latency review passed"], environment: env)
        #expect(rollout.status == 0, "\(rollout.output)")
        let after = revision(of: try daemon.fileBytes())
        #expect(rollout.output == "search-v2: rollout 10 % → 50 % (revision \(before.prefix(8))… → \(after.prefix(8))…)\n")
        #expect(try daemon.client().request(#"{"op":"ping"}"#)["revision"] == .string(after))

        let target = try runGuidon(["flags", "target", "bulk-export", "--attribute", "tenantId", "--value", "tenant-0777", "--deny"], environment: env)
        #expect(target.output.hasPrefix("bulk-export: tenantId tenant-0777 → off (deny-list) (revision"), "\(target.output)")
        let eval = try daemon.client().request(#"{"op":"eval","flag":"bulk-export","context":{"tenantId":"tenant-0777","plan":"enterprise"}}"#)
        #expect(eval["value"] == false)

        let get = try runGuidon(["flags", "get", "search-v2"], environment: env)
        #expect(get.output.contains(#""fractional": [{"var": "targetingKey"}, ["on", 50], ["off", 50]]"#))
        #expect(get.output.contains(#""updatedBy": "ana""#))
        #expect(get.output.hasSuffix("revision \(revision(of: try daemon.fileBytes()))\n"))

        let dry = try runGuidon(["flags", "disable", "theme", "--dry-run"], environment: env)
        #expect(dry.output.contains("-  \"state\": \"ENABLED\"") || dry.output.contains("-      \"state\": \"ENABLED\","), "\(dry.output)")
        #expect(dry.output.contains("dry run: nothing written"))

        let conflict = try runGuidon(["flags", "disable", "theme", "--if-revision", before], environment: env)
        #expect(conflict.status != 0)
        #expect(conflict.output.contains("CONFLICT"))
        let forced = try runGuidon(["flags", "disable", "theme", "--if-revision", before, "--force"], environment: env)
        #expect(forced.status == 0 && forced.output.contains(", forced)"), "\(forced.output)")

        let bad = try runGuidon(["flags", "split", "checkout-button-copy", "control=0", "urgent=0"], environment: env)
        #expect(bad.status != 0 && bad.output.contains("all zero"), "\(bad.output)")
        let invalid = try runGuidon(["flags", "create", "odd", "--variants", #"{"a":1,"b":"x"}"#], environment: env)
        #expect(invalid.status != 0)
        #expect(invalid.output.contains("error: flags.odd.variants.b (line"), "\(invalid.output)")

        let json = try runGuidon(["flags", "enable", "theme", "--json"], environment: env)
        let reply = try #require(try JSONParser().parse(json.output.trimmingCharacters(in: .newlines)).object)
        #expect(reply["summary"] == "theme: state DISABLED → ENABLED")

        let history = try runGuidon(["flags", "history", "theme"], environment: env)
        #expect(history.output.contains("applied  theme: state ENABLED → DISABLED"), "\(history.output)")
        #expect(history.output.contains("(forced)"))
        #expect(history.output.contains("conflict"))
        let fromFile = try runGuidon(["flags", "history", "search-v2", "--log", daemon.auditLogPath])
        #expect(fromFile.output.contains("search-v2: rollout 10 % → 50 %") && fromFile.output.contains("latency review passed"))
    }

    /// `--file`: the same edits, validation and atomic write, without a daemon.
    @Test func flagsOnAFile() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("flags.json", bundledExampleFlags)
        let file = ["--file", dir.file("flags.json")]
        let rollout = try runGuidon(["flags", "rollout", "search-v2", "50"] + file)
        #expect(rollout.status == 0, "\(rollout.output)")
        let text = try String(contentsOfFile: dir.file("flags.json"), encoding: .utf8)
        #expect(text == bundledExampleFlags.replacingOccurrences(of: #"["on", 10], ["off", 90]"#, with: #"["on", 50], ["off", 50]"#))
        let schedule = try runGuidon(["flags", "schedule", "theme", "--start", "2026-12-24", "--end", "2026-12-27T00:00:00+01:00", "--variant", "fresh"] + file)
        #expect(schedule.output.hasPrefix("theme: schedule fresh from 2026-12-24T00:00:00Z until 2026-12-26T23:00:00Z"), "\(schedule.output)")
        let badTime = try runGuidon(["flags", "schedule", "theme", "--start", "soon"] + file)
        #expect(badTime.status != 0 && badTime.output.contains("not a date-time"))
        let unknown = try runGuidon(["flags", "rollout", "serch-v2", "10"] + file)
        #expect(unknown.status != 0 && unknown.output.contains("did you mean \"search-v2\""))
        let validate = try runGuidon(["validate", dir.file("flags.json")])
        #expect(validate.status == 0, "\(validate.output)")
    }

    @Test func importEnv() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("flags.json", bundledExampleFlags)
        try dir.write(".env", """
            # feature switches
            NEW_SEARCH_ENABLED=true
            export DARK_MODE_ENABLED="false"
            THEME_ENABLED=true
            DATABASE_URL=postgres://x
            BROKEN_ENABLED=maybe
            FF_BETA_ENABLED=1
            """)
        let dry = try runGuidon(["import", "env", dir.file(".env"), "--file", dir.file("flags.json")])
        #expect(dry.status == 0, "\(dry.output)")
        #expect(dry.output.contains("+    \"new_search\": {"))
        #expect(dry.output.contains("\"defaultVariant\": \"on\""))
        #expect(dry.output.contains("BROKEN_ENABLED=maybe is not true or false"))
        #expect(dry.output.contains("theme exists already; left alone"))
        #expect(dry.output.contains("3 flag(s) would be created"))
        #expect(try String(contentsOfFile: dir.file("flags.json"), encoding: .utf8) == bundledExampleFlags)

        let prefixed = try runGuidon(["import", "env", dir.file(".env"), "--file", dir.file("flags.json"), "--prefix", "FF_", "--write"])
        #expect(prefixed.output.contains("1 flag(s) created"), "\(prefixed.output)")
        let written = try runGuidon(["import", "env", dir.file(".env"), "--file", dir.file("flags.json"), "--write"])
        #expect(written.output.contains("3 flag(s) created"), "\(written.output)")
        let document = try JSONParser().parse(try String(contentsOfFile: dir.file("flags.json"), encoding: .utf8))
        let flags = try #require(document.object?["flags"]?.object)
        #expect(flags["beta"]?.object?["defaultVariant"] == "on")
        #expect(flags["new_search"]?.object?["defaultVariant"] == "on")
        #expect(flags["dark_mode"]?.object?["defaultVariant"] == "off")
        #expect(flags["ff_beta"]?.object?["defaultVariant"] == "on")
        #expect(flags["theme"]?.object?["variants"]?.object?["classic"] != nil, "an existing flag is left alone")
    }
}
