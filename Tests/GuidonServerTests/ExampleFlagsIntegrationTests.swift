import Foundation
import GuidonJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// protocol/examples/flags.json, the file the README's quick start serves.
let bundledExampleFlags: String = {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    return (try? String(contentsOf: root.appendingPathComponent("protocol/examples/flags.json"), encoding: .utf8)) ?? ""
}()

@Suite("guidond: the bundled example flags, with real targeting", .serialized)
struct ExampleFlagsIntegrationTests {
    func value(_ c: LineClient, _ flag: String, _ context: String) throws -> JSONValue? {
        try c.request(#"{"op":"eval","flag":"\#(flag)","context":\#(context)}"#)["value"]
    }

    @Test func everyRecipeServesWhatItSays() throws {
        #expect(!bundledExampleFlags.isEmpty)
        let daemon = try RunningDaemon(flags: bundledExampleFlags)
        defer { try? daemon.finish() }
        let c = try daemon.client()

        // The quick start.
        let quick = try c.request(#"{"op":"eval","flag":"new-checkout","context":{"targetingKey":"user-42","tier":"gold"}}"#)
        #expect(quick["value"] == true)
        #expect(quick["reason"] == "TARGETING_MATCH")
        #expect(quick["metadata"]?.object?["ticket"] == "SHOP-1432")
        #expect(try value(c, "new-checkout", #"{"targetingKey":"user-42","tier":"silver"}"#) == false)

        // Per-tenant overrides beat the plan grant.
        #expect(try value(c, "bulk-export", #"{"tenantId":"tenant-0042","plan":"free"}"#) == true)
        #expect(try value(c, "bulk-export", #"{"tenantId":"tenant-0666","plan":"enterprise"}"#) == false)
        #expect(try value(c, "bulk-export", #"{"tenantId":"tenant-0001","plan":"business"}"#) == true)
        #expect(try value(c, "bulk-export", #"{"tenantId":"tenant-0001","plan":"free"}"#) == false)
        #expect(try value(c, "max-cart-items", #"{"plan":"enterprise"}"#) == 200)

        // E-mail domain and allow-list.
        #expect(try value(c, "internal-tools", #"{"email":"ana@acme-labs.example"}"#) == true)
        #expect(try value(c, "internal-tools", #"{"email":"ana@acme.example.org"}"#) == false)
        #expect(try value(c, "beta-dashboard", #"{"targetingKey":"user-2002"}"#) == true)
        #expect(try value(c, "beta-dashboard", #"{"targetingKey":"user-2003"}"#) == false)

        // Kill switch: the caller's default.
        let killed = try c.request(#"{"op":"eval","flag":"recommendations","default":false}"#)
        #expect(killed["reason"] == "DISABLED")
        #expect(killed["value"] == false)

        // Time window, against the daemon's clock.
        let now = time(nil)
        let inWindow = now >= 1_795_737_600 && now < 1_796_083_200
        #expect(try value(c, "black-friday-banner", "{}") == .bool(inWindow))

        // 10 % rollout and a three-way split, over 2,000 users in one pipelined burst.
        var batch = ""
        for i in 0..<2000 { batch += #"{"op":"eval","flags":["search-v2","checkout-button-copy"],"context":{"targetingKey":"user-\#(i)"}}"# + "\n" }
        try c.send(batch)
        var rolledOut = 0
        var arms: [String: Int] = [:]
        for _ in 0..<2000 {
            let results = try #require(try c.readReply()["results"]?.array).compactMap(\.object)
            if results[0]["value"] == true { rolledOut += 1 }
            arms[results[1]["variant"]?.string ?? "?", default: 0] += 1
        }
        #expect((120...280).contains(rolledOut), "10 % of 2,000 is 200; got \(rolledOut)")
        #expect(Set(arms.keys) == ["control", "urgent", "friendly"])
        for (arm, count) in arms { #expect((520...820).contains(count), "\(arm): \(count) of 2,000") }
        // The same user always gets the same answer.
        #expect(try value(c, "search-v2", #"{"targetingKey":"user-7"}"#) == value(c, "search-v2", #"{"targetingKey":"user-7"}"#))

        // Type checks.
        let mismatch = try c.request(#"{"op":"eval","flag":"theme","type":"boolean","default":true}"#)
        #expect(mismatch["errorCode"] == "TYPE_MISMATCH")
        #expect(mismatch["value"] == true)
        #expect(try c.request(#"{"op":"eval","flag":"theme","type":"object"}"#)["value"]?.object?["primary"] == "#1f4e79")
    }

    @Test func aFileTheEngineRejectsKeepsTheLastGoodOne() throws {
        let daemon = try RunningDaemon(flags: bundledExampleFlags)
        defer { try? daemon.finish() }
        let c = try daemon.client()
        let broken = bundledExampleFlags.replacingOccurrences(of: #""defaultVariant": "standard""#, with: #""defaultVariant": "huge""#)
        try renameOver(daemon.configPath, broken)
        try daemon.waitFor("the failed reload") { try daemon.lastReload(c)?["ok"] == false }
        let error = try #require(try daemon.lastReload(c)?["error"]?.string)
        #expect(error.contains("flags.max-cart-items"), "\(error)")
        #expect(try value(c, "max-cart-items", #"{"plan":"enterprise"}"#) == 200)
    }
}
