import ArgumentParser
import GuidonJSON

/// The flag files the bench serves: three named flags the latency figures are about, a
/// generation flag the reload stage bumps, and filler flags in the shapes product teams
/// write (static switches, tier gates, e-mail domains, rollouts, tenant overrides,
/// version gates) up to the requested count.
enum BenchFlags {
    static let staticKey = "static-banner"
    /// Three conditions: tier in a list, e-mail ends with a domain, app version `>=`.
    static let targetedKey = "targeted-checkout"
    static let fractionalKey = "ab-pricing"
    static let generationKey = "bench-generation"

    /// The evaluation context every request carries.
    static let context: JSONValue = [
        "targetingKey": "user-4217",
        "tier": "gold",
        "email": "ana@example.com",
        "appVersion": "2.6.1",
        "tenant": "acme",
    ]

    /// How many users the load requests rotate through.
    static let users = 256

    /// `request` with its context's `targetingKey` set to user number `user` (always 9 characters,
    /// so that every user's request line has the same length).
    static func onBehalf(of user: Int, _ request: JSONValue) -> JSONValue {
        guard case .object(var object) = request, case .object(var context)? = object["context"] else { return request }
        let digits = String(user % 10_000)
        context["targetingKey"] = .string("user-" + String(repeating: "0", count: 4 - digits.count) + digits)
        object["context"] = .object(context)
        return .object(object)
    }

    /// The 16 keys of a batch request: the three named flags and 13 fillers.
    static var batchKeys: [String] {
        [staticKey, targetedKey, fractionalKey] + (0..<13).map(fillerKey)
    }

    static func fillerKey(_ i: Int) -> String {
        let digits = String(i)
        return "flag-" + String(repeating: "0", count: max(0, 5 - digits.count)) + digits
    }

    /// The whole file with `count` flags (at least 4) and the generation flag set to `generation`.
    static func file(count: Int, generation: Int, trackEvents: Set<String> = []) -> [UInt8] {
        FileTemplate(count: count, trackEvents: trackEvents).bytes(generation: generation)
    }

    /// The file up to the generation flag, which goes last so that a new generation costs
    /// one append rather than a new serialisation of 10,000 flags.
    struct FileTemplate {
        private let prefix: [UInt8]

        /// `trackEvents`: the flags that ask for exposure events (`metadata.trackEvents`).
        init(count: Int, trackEvents: Set<String> = []) {
            var flags = JSONObject()
            flags[staticKey] = BenchFlags.flag(["on": true, "off": false], default: "on")
            flags[targetedKey] = BenchFlags.flag(
                ["on": true, "off": false], default: "off",
                targeting: [
                    "if": [
                        [
                            "and": [
                                ["in": [["var": "tier"], ["gold", "platinum"]]],
                                ["ends_with": [["var": "email"], "@example.com"]],
                                ["sem_ver": [["var": "appVersion"], ">=", "2.4.0"]],
                            ]
                        ],
                        "on", "off",
                    ]
                ])
            flags[fractionalKey] = BenchFlags.flag(
                ["control": "control", "variant-a": "a", "variant-b": "b"], default: "control",
                targeting: ["fractional": [["control", 34], ["variant-a", 33], ["variant-b", 33]]])
            for i in 0..<max(0, count - 4) {
                flags[fillerKey(i)] = filler(i)
            }
            for key in trackEvents {
                if case .object(var flag)? = flags[key] {
                    flag["metadata"] = ["trackEvents": true]
                    flags[key] = .object(flag)
                }
            }
            var out: [UInt8] = []
            JSONWriter.write(["$schema": "https://flagd.dev/schema/v0/flags.json", "flags": .object(flags)], into: &out)
            out.removeLast(2)  // "}}": reopened by `bytes(generation:)`
            prefix = out
        }

        /// With `everyFlag`, the file also gets set-level metadata naming the generation, which
        /// is merged into every flag: a reload then has to compile, and reports, every flag.
        func bytes(generation: Int, everyFlag: Bool = false) -> [UInt8] {
            var out = prefix
            if everyFlag {
                out.replaceSubrange(0..<1, with: Array(#"{"metadata":{"generation":\#(generation)},"#.utf8))
            }
            out += Array(#","\#(generationKey)":{"state":"ENABLED","variants":{"g":\#(generation)},"defaultVariant":"g"}}}"#.utf8)
            out.append(UInt8(ascii: "\n"))
            return out
        }
    }

    private static func flag(_ variants: JSONObject, default defaultVariant: String, targeting: JSONValue? = nil) -> JSONValue {
        var flag: JSONObject = ["state": "ENABLED", "variants": .object(variants), "defaultVariant": .string(defaultVariant)]
        if let targeting { flag["targeting"] = targeting }
        return .object(flag)
    }

    private static func filler(_ i: Int) -> JSONValue {
        switch i % 6 {
        case 0:
            return flag(["on": true, "off": false], default: i % 12 == 0 ? "on" : "off")
        case 1:
            return flag(
                ["basic": "basic", "premium": "premium"], default: "basic",
                targeting: ["if": [["in": [["var": "tier"], ["gold", "platinum"]]], "premium", "basic"]])
        case 2:
            return flag(
                ["on": true, "off": false], default: "off",
                targeting: ["if": [["ends_with": [["var": "email"], "@example.com"]], "on", "off"]])
        case 3:
            return flag(
                ["on": true, "off": false], default: "off",
                targeting: ["fractional": [["on", .int(Int64(i % 100))], ["off", .int(Int64(100 - i % 100))]]])
        case 4:
            return flag(
                ["on": true, "off": false], default: "off",
                targeting: ["if": [["in": [["var": "tenant"], ["acme", "globex", .string("tenant-\(i)")]]], "on", "off"]])
        default:
            return flag(
                ["new": ["limit": 100, "mode": "fast"], "old": ["limit": 10, "mode": "safe"]], default: "old",
                targeting: ["if": [["sem_ver": [["var": "appVersion"], ">=", .string("2.\(i % 10).0")]], "new", "old"]])
        }
    }
}

/// `guidon-bench write-flags`: the bench's flag file, to start a daemon for `--socket`.
struct WriteFlags: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "write-flags",
        abstract: "Write the benchmark's flag file (for a daemon you start yourself and attach to with --socket)."
    )

    @Option(help: "How many flags.")
    var count: Int = 200

    @Option(name: .customLong("track-events"), help: "A flag that asks for exposure events (metadata.trackEvents; repeatable).")
    var trackEvents: [String] = []

    @Argument(help: "Where to write it.")
    var path: String

    func run() throws {
        try writeFileAtomically(path, BenchFlags.file(count: count, generation: 0, trackEvents: Set(trackEvents)))
    }
}
