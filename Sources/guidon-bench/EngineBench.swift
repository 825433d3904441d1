import ArgumentParser
import CAllocCounter
import GuidonEngine
import GuidonJSON
import GuidonProtocol

/// In-process engine benchmark: nanoseconds and heap allocations per evaluation.
struct EngineBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engine",
        abstract: "Measure the evaluation engine in-process (build with -c release)."
    )

    @Option(help: "Evaluations per timed run.")
    var iterations = 1_000_000

    @Option(help: "Timed runs per scenario; the median is reported.")
    var runs = 7

    @Option(help: "Flags in the generated document whose compile time is measured.")
    var compileFlags = 10_000

    @Option(help: "Run only the scenarios whose name contains this text (for profiling).")
    var only: String?

    @Option(help: "Tenants in the generated entitlements document.")
    var tenants = 100_000

    func run() throws {
        let snapshot = try Snapshot.compile(json: Array(Self.benchDocument.utf8))
        let now: Int64 = 1_750_000_000
        let targeted = EvaluationContext(json: [
            "targetingKey": "user-4217", "tier": "gold", "email": "dana@example.com", "appVersion": "2.7.1",
        ])
        let anonymous = EvaluationContext(targetingKey: "user-4217")

        print("guidon-bench engine: \(iterations) evaluations × \(runs) runs (median)\n")
        print(pad("scenario", 36) + pad("ns/op", 10, right: true) + pad("allocs/op", 11, right: true) + "  result")
        print(String(repeating: "-", count: 80))

        report("static flag", measure { sink in
            let r = snapshot.evaluate("static-banner", context: anonymous, type: .boolean, now: now)
            sink &+= r.variant?.utf8.count ?? 0
        }, snapshot.evaluate("static-banner", context: anonymous, type: .boolean, now: now))

        report("3-condition targeting", measure { sink in
            let r = snapshot.evaluate("premium-dashboard", context: targeted, type: .boolean, now: now)
            sink &+= r.variant?.utf8.count ?? 0
        }, snapshot.evaluate("premium-dashboard", context: targeted, type: .boolean, now: now))

        report("fractional 3-way", measure { sink in
            let r = snapshot.evaluate("checkout-experiment", context: anonymous, type: .string, now: now)
            sink &+= r.variant?.utf8.count ?? 0
        }, snapshot.evaluate("checkout-experiment", context: anonymous, type: .string, now: now))

        // A whole request line as guidond answers it: decode, evaluate, encode the reply (into a
        // kept buffer). guidond decodes into a kept `Request`; a fresh one shows what that saves.
        let parser = RequestParser()
        var request = Request(op: .ping)
        var reply: [UInt8] = []
        reply.reserveCapacity(4096)
        for (label, key) in [("static", "static-banner"), ("targeted", "premium-dashboard")] {
            func requestLine(user: String) -> [UInt8] {
                Array(#"{"op":"eval","flag":"\#(key)","context":{"targetingKey":"\#(user)","tier":"gold","email":"ana@example.com","appVersion":"2.6.1","tenant":"acme"}}"#.utf8)
            }
            let line = requestLine(user: "user-4217")
            /// The reply's length (reading the request's context would decode it when the flag did not).
            func answer(_ request: inout Request) -> Int {
                let (id, defaultValue) = (request.id, request.defaultValue)
                snapshot.withResult(request.flag ?? "", context: request.context, type: request.type, now: now) {
                    ReplyEncoder.eval(id: id, result: $0, default: defaultValue, into: &reply)
                }
                defer { reply.removeAll(keepingCapacity: true) }
                return reply.count
            }
            report("request, \(label), kept Request", measure { sink in
                line.withUnsafeBytes { raw in
                    do throws(RequestError) { try parser.parse(raw, into: &request) } catch { return }
                    sink &+= answer(&request)
                }
            }, nil)
            // Every other line for another user: a new context each time (decoded if the flag reads it).
            let other = requestLine(user: "user-4218")
            var flip = false
            report("request, \(label), user alternates", measure { sink in
                flip.toggle()
                (flip ? other : line).withUnsafeBytes { raw in
                    do throws(RequestError) { try parser.parse(raw, into: &request) } catch { return }
                    sink &+= answer(&request)
                }
            }, nil)
            report("request, \(label), fresh Request", measure { sink in
                line.withUnsafeBytes { raw in
                    guard var fresh = try? parser.parse(raw) else { return }
                    sink &+= answer(&fresh)
                }
            }, nil)
        }

        let all = try Snapshot.compile(json: Array(Self.document(flags: 200).utf8))
        report("evaluateAll, 200 flags (per call)", measure(iterations: max(1, iterations / 200)) { sink in
            sink &+= all.evaluateAll(context: targeted, now: now).count
        }, nil)
        // The multi-flag requests as guidond answers them: decode into the kept `Request`,
        // evaluate, encode the reply into the kept buffer (per request, not per flag).
        let batchKeys = (0..<16).map { "\"flag-\($0)\"" }.joined(separator: ",")
        let context = #""context":{"targetingKey":"user-4217","tier":"gold","email":"ana@example.com","appVersion":"2.6.1","tenant":"acme"}"#
        for (label, line) in [
            ("request, 16-flag batch, kept Request", Array(#"{"op":"eval","flags":[\#(batchKeys)],\#(context)}"#.utf8)),
            ("request, evalAll 200 flags, kept", Array(#"{"op":"evalAll",\#(context)}"#.utf8)),
        ] {
            report(label, measure(iterations: max(1, iterations / 100)) { sink in
                line.withUnsafeBytes { raw in
                    do throws(RequestError) { try parser.parse(raw, into: &request) } catch { return }
                }
                if let keys = request.flags {
                    ReplyEncoder.evalMany(id: request.id, default: request.defaultValue, into: &reply) { each in
                        all.forEachResult(keys, context: request.context, type: request.type, now: now, each)
                    }
                } else {
                    ReplyEncoder.evalAll(id: request.id, into: &reply) { each in
                        all.forEachResult(context: request.context, now: now, each)
                    }
                }
                sink &+= reply.count
                reply.removeAll(keepingCapacity: true)
            }, nil)
        }
        try entitlementsScenarios()
        guard wanted("compile") else { return }

        let big = Array(Self.document(flags: compileFlags).utf8)
        var compileTimes: [Double] = []
        for _ in 0..<max(3, runs) {
            let start = ContinuousClock.now
            let compiled = try Snapshot.compile(json: big)
            compileTimes.append(Self.nanoseconds(ContinuousClock.now - start))
            precondition(compiled.count == compileFlags)
        }
        compileTimes.sort()
        let ms = compileTimes[compileTimes.count / 2] / 1e6
        print(pad("compile \(compileFlags) flags (\(big.count / 1024) KiB)", 36) + pad(format(ms, decimals: 1) + " ms", 10, right: true))

        // What a reload of the same file with one flag edited costs: the other flags are reused.
        let edited = [
            Array(Self.document(flags: compileFlags).replacing(#""defaultVariant": "on""#, with: #""defaultVariant": "off""#, maxReplacements: 1).utf8),
            big,
        ]
        // Each compile reuses the one before, alternating between two versions of the file.
        var previous = try Snapshot.compile(json: big)
        func medianRecompileMs(alternating versions: [[UInt8]]) throws -> Double {
            var times: [Double] = []
            for run in 0..<max(3, runs) * 2 {
                let start = ContinuousClock.now
                let compiled = try Snapshot.compile(json: versions[run % 2], reusing: previous)
                times.append(Self.nanoseconds(ContinuousClock.now - start))
                precondition(compiled.count == compileFlags)
                previous = compiled
            }
            times.sort()
            return times[times.count / 2] / 1e6
        }
        let recompileMs = try medianRecompileMs(alternating: edited)
        print(pad("recompile \(compileFlags) flags, 1 changed", 36) + pad(format(recompileMs, decimals: 1) + " ms", 10, right: true))

        // The worst case for a reload: new set metadata, merged into every flag.
        let newMetadata = [
            Array(Self.document(flags: compileFlags).replacing(#""version": 3"#, with: #""version": 4"#, maxReplacements: 1).utf8),
            big,
        ]
        let everyMs = try medianRecompileMs(alternating: newMetadata)
        print(pad("recompile \(compileFlags) flags, all changed", 36) + pad(format(everyMs, decimals: 1) + " ms", 10, right: true))
    }

    struct Measurement {
        var nanoseconds: Double
        var allocations: Double
    }

    func measure(iterations: Int? = nil, _ body: (inout Int) -> Void) -> Measurement {
        let n = iterations ?? self.iterations
        var sink = 0
        for _ in 0..<min(n, 10_000) { body(&sink) }  // warm-up
        var times: [Double] = []
        var allocations: [Double] = []
        for _ in 0..<runs {
            let allocsBefore = guidon_alloc_count()
            let start = ContinuousClock.now
            for _ in 0..<n { body(&sink) }
            let elapsed = ContinuousClock.now - start
            let allocs = guidon_alloc_count() - allocsBefore
            times.append(Self.nanoseconds(elapsed) / Double(n))
            allocations.append(Double(allocs) / Double(n))
        }
        if sink == 42 { print("") }  // keeps the work observable to the optimiser
        times.sort()
        allocations.sort()
        return Measurement(nanoseconds: times[times.count / 2], allocations: allocations[allocations.count / 2])
    }

    func wanted(_ name: String) -> Bool { only.map { name.contains($0) } ?? true }

    func report(_ name: String, _ m: @autoclosure () -> Measurement, _ result: EvaluationResult?) {
        guard wanted(name) else { return }
        let m = m()
        var line = pad(name, 36) + pad(format(m.nanoseconds, decimals: 1), 10, right: true)
            + pad(guidon_alloc_counting() != 0 ? format(m.allocations, decimals: 2) : "n/a", 11, right: true)
        if let result { line += "  \(result.reason.rawValue) \(result.variant ?? "-")" }
        print(line)
    }

    static func nanoseconds(_ d: Duration) -> Double {
        Double(d.components.seconds) * 1e9 + Double(d.components.attoseconds) / 1e9
    }

    // MARK: Documents

    static let benchDocument = """
        {
          "flags": {
            "static-banner": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
            "premium-dashboard": {
              "state": "ENABLED",
              "variants": {"on": true, "off": false},
              "defaultVariant": "off",
              "targeting": {"if": [{"and": [
                {"in": [{"var": "tier"}, ["gold", "platinum", "enterprise"]]},
                {"ends_with": [{"var": "email"}, "@example.com"]},
                {"sem_ver": [{"var": "appVersion"}, ">=", "2.4.0"]}
              ]}, "on", "off"]}
            },
            "checkout-experiment": {
              "state": "ENABLED",
              "variants": {"a": "control", "b": "one-page", "c": "express"},
              "defaultVariant": "a",
              "targeting": {"fractional": [["a", 34], ["b", 33], ["c", 33]]}
            }
          }
        }
        """

    /// A document of `count` flags cycling through the shapes product teams write.
    static func document(flags count: Int) -> String {
        var out = "{\"metadata\": {\"flagSetId\": \"bench\", \"version\": 3},\n\"flags\": {\n"
        for i in 0..<count {
            if i > 0 { out += ",\n" }
            out += "\"flag-\(i)\": "
            switch i % 5 {
            case 0:
                out += #"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}"#
            case 1:
                out += #"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {"if": [{"and": [{"in": [{"var": "tier"}, ["gold", "platinum"]]}, {"ends_with": [{"var": "email"}, "@example.com"]}, {"sem_ver": [{"var": "appVersion"}, ">=", "2.\#(i % 9).0"]}]}, "on", "off"]}, "metadata": {"owner": "team-\#(i % 17)"}}"#
            case 2:
                out += #"{"state": "ENABLED", "variants": {"a": "control", "b": "treatment", "c": "holdout"}, "defaultVariant": "a", "targeting": {"fractional": [["a", 34], ["b", 33], ["c", 33]]}}"#
            case 3:
                out += #"{"state": "ENABLED", "variants": {"small": 10, "large": 250}, "defaultVariant": "small", "targeting": {"if": [{"in": [{"var": "targetingKey"}, ["user-1", "user-2", "user-4217"]]}, "large", null]}}"#
            default:
                out += #"{"state": "DISABLED", "variants": {"on": {"color": "teal"}, "off": {}}, "defaultVariant": "off"}"#
            }
        }
        return out + "\n}}\n"
    }
}

func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - s.count))
    return right ? fill + s : s + fill
}

func format(_ d: Double, decimals: Int) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (d * scale).rounded()
    let whole = Int((scaled / scale).rounded(.towardZero))
    let fraction = Int(abs(scaled).truncatingRemainder(dividingBy: scale))
    let digits = String(fraction)
    return "\(whole)." + String(repeating: "0", count: decimals - digits.count) + digits
}
