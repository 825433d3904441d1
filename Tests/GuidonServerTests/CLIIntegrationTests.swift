import Foundation
import GuidonJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runs the `guidon` built next to guidond; returns its exit status and output.
func runGuidon(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
    let binary = URL(fileURLWithPath: try guidondPath()).deletingLastPathComponent().appendingPathComponent("guidon").path
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env["GUIDON_SOCKET"] = nil
    env.merge(environment) { _, new in new }
    process.environment = env
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

@Suite("guidon (the CLI) and --lenient", .serialized)
struct CLIIntegrationTests {
    static let lenientOnly = #"""
        {"flags": {
          "odd": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                  "targeting": {"frobnicate": [{"var": "x"}]}},
          "fine": {"state": "ENABLED", "variants": {"a": "A"}, "defaultVariant": "a"}
        }}
        """#

    @Test func talksToTheDaemon() throws {
        let daemon = try RunningDaemon(flags: bundledExampleFlags)
        defer { try? daemon.finish() }
        let socket = ["--socket", daemon.socketPath]

        let ping = try runGuidon(["ping"], environment: ["GUIDON_SOCKET": daemon.socketPath])
        #expect(ping.status == 0)
        #expect(ping.output.hasPrefix("ok: 10 flags"))

        let eval = try runGuidon(["eval", "new-checkout", "--context", #"{"targetingKey":"user-42","tier":"gold"}"#] + socket)
        #expect(eval.status == 0)
        #expect(eval.output == "new-checkout = true  (TARGETING_MATCH, variant on)\n")

        let json = try runGuidon(["eval", "max-cart-items", "theme", "--json", "--context", #"{"plan":"business"}"#] + socket)
        let reply = try #require(try JSONParser().parse(json.output.trimmingCharacters(in: .newlines)).object)
        #expect(reply["results"]?.array?.first?.object?["value"] == 200)

        let status = try runGuidon(["status"] + socket)
        #expect(status.output.contains("10 flags"))
        let list = try runGuidon(["list"] + socket)
        #expect(list.output.contains("recommendations  DISABLED"))
        #expect(list.output.contains("updatedBy: oncall"))

        let refused = try runGuidon(["eval", "x", "--context", "{nope"] + socket)
        #expect(refused.status != 0)
        #expect(refused.output.contains("--context is not valid JSON"))
    }

    @Test func clientOptionsMayComeBeforeTheSubcommand() throws {
        let daemon = try RunningDaemon(flags: bundledExampleFlags)
        defer { try? daemon.finish() }
        let before = try runGuidon(["--socket", daemon.socketPath, "--json", "eval", "new-checkout", "--context", #"{"tier":"gold"}"#])
        #expect(before.status == 0, "\(before.output)")
        #expect(before.output.hasPrefix(#"{"flag":"new-checkout","value":true"#), "\(before.output)")
        let joined = try runGuidon(["--socket=\(daemon.socketPath)", "ping"])
        #expect(joined.status == 0 && joined.output.hasPrefix("ok: 10 flags"), "\(joined.output)")
        // Without a subcommand it is still a usage error, not a silent default.
        let alone = try runGuidon(["--socket", daemon.socketPath])
        #expect(alone.status != 0)
    }

    @Test func pingFailsWhenNothingAnswers() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let ping = try runGuidon(["ping", "--socket", dir.file("nobody.sock")])
        #expect(ping.status != 0)
        #expect(ping.output.contains("cannot connect"))
    }

    @Test func validateExitStatus() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("odd.json", Self.lenientOnly)
        try dir.write("broken.json", #"{"flags": {"x": {"state": "ENABLED", "variants": {}, "defaultVariant": "y"}}}"#)
        try dir.write("good.json", bundledExampleFlags)
        #expect(try runGuidon(["validate", dir.file("good.json")]).status == 0)
        let strict = try runGuidon(["validate", dir.file("odd.json")])
        #expect(strict.status == 1)
        #expect(strict.output.contains("flags.odd.targeting"))
        #expect(try runGuidon(["validate", "--lenient", dir.file("odd.json")]).status == 2)
        let broken = try runGuidon(["validate", "--json", dir.file("broken.json")])
        #expect(broken.status == 1)
        let report = try #require(try JSONParser().parse(broken.output.trimmingCharacters(in: .newlines)).object)
        #expect(report["ok"] == false)
        #expect((report["errors"]?.array?.count ?? 0) >= 1)
    }

    @Test func lenientModeLoadsWhatStrictModeRefuses() throws {
        let dir = try ScratchDirectory()
        try dir.write("flags.json", Self.lenientOnly)
        let strict = try DaemonProcess(
            arguments: ["--config", dir.file("flags.json"), "--socket", dir.file("strict.sock")], logPath: dir.file("strict.log"))
        #expect(try strict.waitForExit() != 0)
        #expect(strict.log.contains("unknown operator"))

        let daemon = try RunningDaemon(flags: nil, extraArguments: ["--lenient"], dir: dir)
        defer { try? daemon.finish() }
        let c = try daemon.client()
        let status = try c.request(#"{"op":"status"}"#)
        #expect(status["mode"] == "lenient")
        #expect(status["warnings"] == 1)
        #expect(daemon.process.log.contains("WARNING"))
        #expect(daemon.process.log.contains("frobnicate"))
        #expect(try c.request(#"{"op":"eval","flag":"fine"}"#)["value"] == "A")
    }

    /// Issue 11: an existing flagd file with sloppy flags (flag-level problems the reference
    /// evaluator loads) starts in lenient mode, serves every flag, and answers for the sloppy
    /// ones as flagd does; strict mode and `guidon validate` name each problem.
    static let sloppy = #"""
        {"flags": {
          "fine": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
          "no-rule": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": null},
          "mixed": {"state": "ENABLED", "variants": {"s": "text", "n": 3}, "defaultVariant": "n"},
          "ghost-default": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "of",
                            "targeting": {"if": [{"==": [{"var": "tier"}, "gold"]}, "on", null]}},
          "yes": {"state": "ENABLED", "variants": {"true": 1, "false": 0}, "defaultVariant": true}
        }}
        """#

    @Test func aSloppyFlagdFileLoadsLenientlyAndEveryProblemIsNamed() throws {
        let dir = try ScratchDirectory()
        try dir.write("flags.json", Self.sloppy)
        let paths = ["flags.no-rule.targeting", "flags.mixed.variants.n", "flags.ghost-default.defaultVariant",
            "flags.yes.defaultVariant"]
        let strict = try runGuidon(["validate", dir.file("flags.json")])
        #expect(strict.status == 1)
        let lenient = try runGuidon(["validate", "--lenient", dir.file("flags.json")])
        #expect(lenient.status == 2)
        for path in paths {
            #expect(strict.output.contains("error: \(path)"), "\(strict.output)")
            #expect(lenient.output.contains("warning: \(path)"), "\(lenient.output)")
        }

        let daemon = try RunningDaemon(flags: nil, extraArguments: ["--lenient"], dir: dir)
        defer { try? daemon.finish() }
        let c = try daemon.client()
        #expect(try c.request(#"{"op":"status"}"#)["warnings"] == 4)
        func eval(_ flag: String, _ type: String, _ context: String = "{}") throws -> JSONObject {
            try c.request(#"{"op":"eval","flag":"\#(flag)","type":"\#(type)","context":\#(context)}"#)
        }
        #expect(try eval("fine", "boolean")["value"] == true)
        let noRule = try eval("no-rule", "boolean")
        #expect(noRule["value"] == false && noRule["reason"] == "STATIC")
        #expect(try eval("mixed", "integer")["value"] == 3)
        #expect(try eval("mixed", "string")["errorCode"] == "TYPE_MISMATCH")
        #expect(try eval("ghost-default", "boolean", #"{"tier":"gold"}"#)["value"] == true)
        #expect(try eval("ghost-default", "boolean", #"{"tier":"silver"}"#)["errorCode"] == "GENERAL")
        let yes = try eval("yes", "integer")
        #expect(yes["value"] == 1 && yes["variant"] == "true")
    }
}
