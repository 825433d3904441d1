import GuidonJSON
import PropertyBased
import Testing

@testable import GuidonEngine

/// SplitMix64: a small deterministic generator to expand one random seed into many keys.
struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A random targeting key of 8–24 characters: long enough that repeats are negligible (with
    /// keys of one or two characters, a few dozen fixed strings would make up thousands of the
    /// draws, and a share would stray from its weight by a fixed, seed-independent amount).
    mutating func key() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789-_.@ü🚀")
        let length = Int(next() % 17) + 8
        return String((0..<length).map { _ in alphabet[Int(next() % UInt64(alphabet.count))] })
    }
}

/// Builds JSON values from a byte string, so that the property library's byte arrays
/// (which it knows how to shrink) become arbitrary nested JSON, including rule-shaped objects.
struct JSONFromBytes {
    static let keys = [
        "targetingKey", "$flagd", "flagKey", "timestamp", "tier", "email", "version", "plan", "country", "age",
        "user", "id", "roles", "v", "x", "a", "b", "score", "var", "if", "==", "in", "cat", "substr", "fractional",
        "sem_ver", "starts_with", "ends_with", "missing", "map", "reduce", "merge", "+", "-", "/", "%", "<", "!",
        "and", "or", "max", "all", "some", "none", "filter", "missing_some", "!!", "===", "<=", "*", "$ref",
    ]

    var bytes: [UInt8]
    var i = 0

    mutating func byte() -> UInt8 {
        defer { i += 1 }
        return i < bytes.count ? bytes[i] : 0
    }

    mutating func value(depth: Int = 0) -> JSONValue {
        let tag = byte()
        switch tag % (depth > 4 ? 6 : 8) {
        case 0: return .null
        case 1: return .bool(tag & 0x80 != 0)
        case 2: return .int(Int64(Int8(bitPattern: byte())) * Int64(byte()))
        case 3:
            let choices: [Double] = [0.5, -0.0, 1e21, 1e-7, 2.0, -273.15, 1.7976931348623157e308, .leastNonzeroMagnitude]
            return .double(choices[Int(byte()) % choices.count])
        case 4: return .string(Self.keys[Int(byte()) % Self.keys.count])
        case 5:
            let strings = ["", "0", "1.2.3", "v2.0.0-beta.1", "gold", "a@example.com", "Zü", "🚀", " 42 ", "0x1F", "NaN"]
            return .string(strings[Int(byte()) % strings.count])
        case 6:
            return .array((0..<Int(byte() % 5)).map { _ in value(depth: depth + 1) })
        default:
            var object = JSONObject()
            for _ in 0..<Int(byte() % 4) {
                object[Self.keys[Int(byte()) % Self.keys.count]] = value(depth: depth + 1)
            }
            return .object(object)
        }
    }
}

@Suite struct PropertyTests {
    static let bytes = Gen<UInt8>.value(in: 0...255).array(of: 0...160)

    @Test func fractionalIsDeterministicAndHonoursWeights() async throws {
        let weights: [Int64] = [50, 30, 15, 5]
        let names = ["a", "b", "c", "d"]
        let buckets = zip(names, weights).map { #"["\#($0)", \#($1)]"# }.joined(separator: ", ")
        let doc = #"{"flags": {"split": {"state": "ENABLED", "variants": {"a": 1, "b": 2, "c": 3, "d": 4}, "defaultVariant": "a", "targeting": {"fractional": [\#(buckets)]}}}}"#
        let snapshot = try compiled(doc)
        await propertyCheck(count: 3, input: Gen<UInt64>.value()) { seed in
            var rng = SplitMix(state: seed)
            var counts = [String: Int]()
            let n = 100_000
            for _ in 0..<n {
                let context = EvaluationContext(targetingKey: rng.key())
                let first = snapshot.evaluate("split", context: context)
                let again = snapshot.evaluate("split", context: context)
                #expect(first == again)
                counts[first.variant ?? "none", default: 0] += 1
            }
            for (name, weight) in zip(names, weights) {
                let share = Double(counts[name, default: 0]) / Double(n) * 100
                #expect(abs(share - Double(weight)) <= 1.0, "bucket \(name): \(share)% for weight \(weight)%")
            }
        }
    }

    @Test func evaluationNeverCrashesOnArbitraryContexts() async throws {
        var snapshots: [Snapshot] = []
        for config in StrictModeTests.configs {
            snapshots.append(try ConformanceTests.loadConfig("configs/" + config, mode: .lenient))
        }
        let all = snapshots
        await propertyCheck(count: 300, input: Self.bytes) { bytes in
            var source = JSONFromBytes(bytes: bytes)
            var attributes = source.value().object ?? JSONObject()
            attributes["targetingKey"] = bytes.first.map { .string("user-\($0)") }
            let context = EvaluationContext(json: attributes)
            for snapshot in all {
                let results = snapshot.evaluateAll(context: context, now: 1_750_000_000)
                #expect(results.count == snapshot.count)
                for (result, info) in zip(results, snapshot.flags) {
                    #expect(result.flagKey == info.key)
                    // A served value always belongs to a variant of the flag.
                    if let variant = result.variant { #expect(info.variants.contains(variant)) }
                    #expect((result.value == nil) == (result.variant == nil))
                }
            }
        }
    }

    @Test func arbitraryRulesCompileAndEvaluateWithoutCrashing() async {
        await propertyCheck(count: 500, input: Self.bytes, Self.bytes) { ruleBytes, dataBytes in
            var ruleSource = JSONFromBytes(bytes: ruleBytes)
            var dataSource = JSONFromBytes(bytes: dataBytes)
            let rule = Rule(ruleSource.value())
            let data = dataSource.value()
            let first = try? rule.evaluate(data: data)
            let second = try? rule.evaluate(data: data)
            #expect(first.map { JSONWriter.string($0) } == second.map { JSONWriter.string($0) })
        }
    }
}
