import Foundation
import GuidonJSON
import Synchronization
import Testing

@testable import GuidonEngine

@Suite struct SnapshotTests {
    static let document = #"""
        {
          "$evaluators": {
            "is-staff": {"ends_with": [{"var": "email"}, "@staff.example"]},
            "is-eu": {"in": [{"var": "country"}, ["DE", "FR"]]}
          },
          "metadata": {"flagSetId": "shop", "version": 7},
          "flags": {
            "static-on": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
            "limit": {"state": "ENABLED", "variants": {"low": 5, "high": 50}, "defaultVariant": "low",
                      "targeting": {"if": [{"$ref": "is-staff"}, "high", null]}, "metadata": {"version": 8, "owner": "core"}},
            "off": {"state": "DISABLED", "variants": {"a": "A"}, "defaultVariant": "a", "targeting": {"nope": []}},
            "eu-banner": {"state": "ENABLED", "variants": {"eu": "EU", "row": "World"}, "defaultVariant": "row",
                          "targeting": {"if": [{"$ref": "is-eu"}, "eu", "row"]}},
            "window": {"state": "ENABLED", "variants": {"open": true, "closed": false}, "defaultVariant": "closed",
                       "targeting": {"if": [{">=": [{"var": "$flagd.timestamp"}, 1000]}, "open", "closed"]}},
            "echo-key": {"state": "ENABLED", "variants": {"me": "yes", "other": "no"}, "defaultVariant": "other",
                         "targeting": {"if": [{"==": [{"var": "$flagd.flagKey"}, "echo-key"]}, "me", "other"]}},
            "tk": {"state": "ENABLED", "variants": {"u1": 1, "none": 0}, "defaultVariant": "none",
                   "targeting": {"if": [{"==": [{"var": "targetingKey"}, "u1"]}, "u1", null]}},
            "numbers": {"state": "ENABLED", "variants": {"2": "two", "2.5": "two and a half", "true": "yes"},
                        "targeting": {"var": "pick"}}
          }
        }
        """#

    let snapshot: Snapshot

    init() throws {
        snapshot = try compiled(Self.document, mode: .lenient, now: 2000)
    }

    @Test func staticFlag() {
        let r = snapshot.evaluate("static-on", context: EvaluationContext(), type: .boolean)
        #expect(r == EvaluationResult(flagKey: "static-on", value: true, variant: "on", reason: .static,
            metadata: ["flagSetId": "shop", "version": 7]))
    }

    @Test func flagNotFound() {
        let r = snapshot.evaluate("Static-on", context: EvaluationContext())
        #expect(r.reason == .error && r.errorCode == .flagNotFound && r.value == nil && r.metadata.isEmpty)
        #expect(r.errorMessage == "flag 'Static-on' is not defined")
    }

    @Test func disabledFlagNeverEvaluatesItsTargeting() {
        let r = snapshot.evaluate("off", context: EvaluationContext(), type: .integer)
        #expect(r.reason == .disabled && r.value == nil && r.variant == nil && r.errorCode == nil)
        #expect(r.metadata["flagSetId"] == "shop")
    }

    @Test func targetingWithReferenceAndMetadataOverride() {
        let staff = snapshot.evaluate("limit", context: EvaluationContext(json: ["email": "kim@staff.example"]), type: .integer)
        #expect(staff.reason == .targetingMatch && staff.value == 50 && staff.variant == "high")
        #expect(staff.metadata == ["flagSetId": "shop", "version": 8, "owner": "core"])
        let other = snapshot.evaluate("limit", context: EvaluationContext(json: ["email": "kim@example.com"]), type: .integer)
        #expect(other.reason == .default && other.value == 5 && other.variant == "low")
    }

    @Test func floatsAcceptIntegersAndIntegersRefuseFloats() {
        let asFloat = snapshot.evaluate("limit", context: EvaluationContext(), type: .float)
        #expect(asFloat.value == .double(5))
        let mismatch = snapshot.evaluate("limit", context: EvaluationContext(), type: .string)
        #expect(mismatch.reason == .error && mismatch.errorCode == .typeMismatch && mismatch.value == nil)
        #expect(mismatch.errorMessage == "flag 'limit': variant \"low\" is an integer, not a string")
    }

    @Test func timestampComesFromNowOrTheClock() throws {
        #expect(snapshot.evaluate("window", context: EvaluationContext()).variant == "open")  // clock: 2000
        #expect(snapshot.evaluate("window", context: EvaluationContext(), now: 999).variant == "closed")
        let early = try compiled(Self.document, mode: .lenient, now: 5)
        #expect(early.evaluate("window", context: EvaluationContext()).variant == "closed")
    }

    @Test func callersCannotOverrideFlagdOrTheTargetingKey() {
        let spoof = EvaluationContext(targetingKey: "u2", attributes: [
            "$flagd": ["flagKey": "other", "timestamp": 0], "targetingKey": "u1",
        ])
        #expect(snapshot.evaluate("echo-key", context: spoof).variant == "me")
        #expect(snapshot.evaluate("window", context: spoof).variant == "open")
        #expect(snapshot.evaluate("tk", context: spoof).variant == "none")
        #expect(snapshot.evaluate("tk", context: EvaluationContext(targetingKey: "u1")).variant == "u1")
    }

    @Test func numbersAndBooleansNameVariantsByTheirText() {
        func pick(_ v: JSONValue) -> EvaluationResult {
            snapshot.evaluate("numbers", context: EvaluationContext(attributes: ["pick": v]))
        }
        #expect(pick(2).variant == "2")
        #expect(pick(2.0).variant == "2")
        #expect(pick(2.5).variant == "2.5")
        #expect(pick(true).variant == "true")
        let bad = pick(3)
        #expect(bad.reason == .error && bad.errorCode == .general)
        #expect(bad.errorMessage == "flag 'numbers': targeting returned 3, which is not one of the variants (\"2\", \"2.5\", \"true\")")
        let none = pick(.null)
        #expect(none.reason == .default && none.value == nil && none.variant == nil)
    }

    @Test func bulkEvaluationUsesOneClockReading() throws {
        let readings = Atomic<Int>(0)
        let clock: @Sendable () -> Int64 = {
            readings.add(1, ordering: .relaxed)
            return 2000
        }
        let counted = try Snapshot.compile(json: Array(Self.document.utf8), options: CompileOptions(mode: .lenient, clock: clock))
        let all = counted.evaluateAll(context: EvaluationContext())
        #expect(readings.load(ordering: .relaxed) == 1)
        #expect(all.map(\.flagKey) == counted.flags.map(\.key))
        let some = counted.evaluate(["window", "missing", "static-on"], context: EvaluationContext(), type: .boolean)
        #expect(readings.load(ordering: .relaxed) == 2)
        #expect(some.map(\.reason) == [.targetingMatch, .error, .static])
        #expect(some[1].errorCode == .flagNotFound)
    }

    /// The context argument is evaluated only for a flag whose targeting reads it, and once
    /// for a batch or for every flag; the results are the same as with the context at hand.
    @Test func theContextIsAskedForOnlyWhenTargetingReadsIt() {
        let context = EvaluationContext(targetingKey: "u1", attributes: ["email": "kim@staff.example", "pick": 2])
        var asked = 0
        func ask() -> EvaluationContext {
            asked += 1
            return context
        }
        for key in ["static-on", "off", "missing"] {
            #expect(snapshot.evaluate(key, context: ask()) == snapshot.evaluate(key, context: context))
            #expect(asked == 0, "\(key)")
        }
        for key in ["limit", "tk", "numbers"] {
            asked = 0
            let result = snapshot.evaluate(key, context: ask())
            #expect(result == snapshot.evaluate(key, context: context) && result.reason == .targetingMatch)
            #expect(asked == 1, "\(key)")
        }
        asked = 0
        #expect(snapshot.evaluate(["static-on", "off"], context: ask()).map(\.reason) == [.static, .disabled])
        #expect(asked == 0)
        let keys = ["static-on", "limit", "tk", "missing", "numbers"]
        #expect(snapshot.evaluate(keys, context: ask()) == snapshot.evaluate(keys, context: context))
        #expect(asked == 1)
        asked = 0
        #expect(snapshot.evaluateAll(context: ask()) == snapshot.evaluateAll(context: context))
        #expect(asked == 1)
    }

    /// Flags are found by their key's bytes first (`KeyIndex`), and otherwise as a `String`
    /// dictionary finds them: every one of many flags, canonically equivalent spellings, and
    /// keys that are missing or differ in a byte.
    @Test func flagsAreFoundByTheirKeys() throws {
        var flags = (0..<300).map { #""flag-\#($0)": {"state": "ENABLED", "variants": {"v": \#($0)}, "defaultVariant": "v"}"# }
        flags.append(#""caf\u00e9": {"state": "ENABLED", "variants": {"v": -1}, "defaultVariant": "v"}"#)
        let many = try Snapshot.compile(json: Array(#"{"flags": {\#(flags.joined(separator: ","))}}"#.utf8))
        for i in 0..<300 {
            #expect(many.evaluate("flag-\(i)", context: EvaluationContext()).value == .int(Int64(i)))
            #expect(many.info("flag-\(i)")?.key == "flag-\(i)")
        }
        for spelling in ["caf\u{E9}", "cafe\u{301}"] {
            #expect(many.evaluate(spelling, context: EvaluationContext()).value == -1, "\(spelling.unicodeScalars.count) scalars")
        }
        for missing in ["flag-300", "flag-", "Flag-1", "flag-1 ", "", "caf"] {
            #expect(many.evaluate(missing, context: EvaluationContext()).errorCode == .flagNotFound)
            #expect(many.info(missing) == nil)
        }
        // The index by bytes alone: every key where it is, byte-identical keys once, nothing else.
        let keys = many.flags.map(\.key) + ["flag-7"]
        let index = KeyIndex(keys)
        for (position, key) in keys.enumerated() {
            #expect(index.position(of: key) == (position == keys.count - 1 ? 7 : position), "\(key)")
        }
        for other in ["cafe\u{301}", "flag-300", "", "flag-1 "] {
            #expect(index.position(of: other) == nil)
        }
    }

    @Test func flagInfo() throws {
        let info = try #require(snapshot.info("limit"))
        #expect(info.state == .enabled && info.variants == ["low", "high"] && info.defaultVariant == "low")
        #expect(info.hasTargeting)
        #expect(snapshot.info("static-on")?.hasTargeting == false)
        #expect(snapshot.info("off")?.state == .disabled)
        #expect(snapshot.metadata == ["flagSetId": "shop", "version": 7])
        #expect(snapshot.flags.map(\.key).first == "static-on")
    }

    @Test func fingerprintsIgnoreMemberOrder() {
        var rng = SplitMix(state: 7)
        for count in 0...20 {
            let members = (0..<count).map { ("k\(count - $0)", JSONValue.int(Int64($0))) }
            var digests: Set<UInt64> = []
            for _ in 0..<5 {
                var shuffled = members
                shuffled.shuffle(using: &rng)
                var hasher = FNV1a()
                hasher.combine(.object(JSONObject(shuffled)))
                digests.insert(hasher.value)
            }
            #expect(digests.count == 1, "\(count) members")
        }
    }

    @Test func fingerprintsAreStableAndDiffFindsChanges() throws {
        let again = try compiled(Self.document, mode: .lenient)
        #expect(snapshot.flags.map(\.fingerprint) == again.flags.map(\.fingerprint))
        #expect(again.diff(from: snapshot).isEmpty)

        // Member order inside a flag does not matter.
        let reordered = Self.document.replacingOccurrences(
            #""static-on": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}"#,
            #""static-on": {"defaultVariant": "on", "variants": {"on": true, "off": false}, "state": "ENABLED"}"#)
        #expect(try compiled(reordered, mode: .lenient).diff(from: snapshot).isEmpty)

        // An evaluator change changes exactly the flags that use it.
        let newEvaluator = Self.document.replacingOccurrences(#"["DE", "FR"]"#, #"["DE", "FR", "IT"]"#)
        #expect(try compiled(newEvaluator, mode: .lenient).diff(from: snapshot) == SnapshotDiff(added: [], changed: ["eu-banner"], removed: []))

        // Set metadata reaches every flag.
        let newMetadata = Self.document.replacingOccurrences(#""version": 7"#, #""version": 9"#)
        #expect(try compiled(newMetadata, mode: .lenient).diff(from: snapshot).changed.count == snapshot.count - 1)  // "limit" overrides version

        let renamed = Self.document.replacingOccurrences(#""tk": {"#, #""tk2": {"#)
        #expect(try compiled(renamed, mode: .lenient).diff(from: snapshot) == SnapshotDiff(added: ["tk2"], changed: [], removed: ["tk"]))
    }
}

extension String {
    fileprivate func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        replacingOccurrences(of: target, with: replacement)
    }
}

extension SplitMix: RandomNumberGenerator {}

@Suite("Byte comparison")
struct SameBytesTests {
    /// Equal runs of every length up to 24 are equal; a difference in any one byte (in a whole
    /// word or in the tail) or in the length is seen.
    @Test func everyDifferingByteIsSeen() {
        for length in 0...24 {
            let a = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            a.withUnsafeBufferPointer { x in
                let same = a
                same.withUnsafeBufferPointer { #expect(sameBytes(x, $0)) }
                for i in 0..<length {
                    var b = a
                    b[i] ^= 0x80
                    b.withUnsafeBufferPointer { #expect(!sameBytes(x, $0), "length \(length), byte \(i)") }
                }
                (a + [0]).withUnsafeBufferPointer { #expect(!sameBytes(x, $0)) }
            }
        }
    }
}
