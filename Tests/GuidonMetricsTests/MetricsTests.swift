import GuidonEngine
import GuidonJSON
@testable import GuidonMetrics
import GuidonProtocol
import Testing

func snapshot(_ json: String) throws -> Snapshot {
    try Snapshot.compile(json: Array(json.utf8))
}

/// Two flags with two variants each, one that asks for exposure events.
let twoFlags = #"""
    {"flags":{
      "a":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off",
           "targeting":{"if":[{"==":[{"var":"tier"},"gold"]},"on","off"]}},
      "b":{"state":"ENABLED","variants":{"x":"X","y":"Y"},"defaultVariant":"x","metadata":{"trackEvents":true}},
      "c":{"state":"DISABLED","variants":{"on":true},"defaultVariant":"on"}
    }}
    """#

@Suite("The metric table")
struct MetricTableTests {
    @Test func namesFollowPrometheusConventions() {
        var seen = Set<String>()
        for family in MetricTable.all {
            #expect(family.name.hasPrefix("guidon_"), "\(family.name)")
            #expect(seen.insert(family.name).inserted, "\(family.name) twice")
            #expect(family.name.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "_" }, "\(family.name)")
            switch family.kind {
            case .counter: #expect(family.name.hasSuffix("_total"), "\(family.name)")
            case .histogram: #expect(family.name.hasSuffix("_seconds"), "\(family.name)")
            case .gauge: #expect(!family.name.hasSuffix("_total"), "\(family.name)")
            }
            #expect(!family.help.isEmpty)
            for label in family.labels { #expect(label.allSatisfy { $0.isLowercase || $0 == "_" }, "\(label)") }
        }
    }

    @Test func labelValuesFollowTheEnumsTheyCount() {
        #expect(MetricTable.requests.values == Request.Operation.allCases.map(\.rawValue) + ["invalid"])
        for op in Request.Operation.allCases {
            #expect(MetricTable.requests.values[MetricTable.operationIndex(op)] == op.rawValue)
        }
        #expect(MetricTable.requestErrors.values == ProtocolErrorCode.allCases.map { $0.rawValue.lowercased() })
        #expect(Array(MetricTable.requestErrors.values.prefix(5)) == ["invalid_request", "unknown_op", "too_large", "overloaded", "forbidden"])
        #expect(MetricTable.evaluationErrors.values == ["flag_not_found", "type_mismatch", "parse_error", "general"])
        #expect(MetricTable.reasons.count == EvaluationLayout.rowWidth)
        for (i, reason) in MetricTable.reasons.enumerated() { #expect(MetricTable.reasonIndex(reason) == i) }
        #expect(MetricTable.reasons.map(MetricTable.label) == ["static", "targeting_match", "default", "disabled", "error"])
    }
}

@Suite("The latency histogram")
struct LatencyBucketTests {
    @Test func bucketsRunFromOneMicrosecondToOneSecond() {
        #expect(LatencyBuckets.boundsNanoseconds == [
            1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
            1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000, 50_000_000, 100_000_000, 200_000_000, 500_000_000,
            1_000_000_000,
        ])
        #expect(LatencyBuckets.count == 20)
        #expect((0..<LatencyBuckets.count).map(LatencyBuckets.label) == [
            "1e-06", "2e-06", "5e-06", "1e-05", "2e-05", "5e-05", "0.0001", "0.0002", "0.0005", "0.001", "0.002",
            "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "+Inf",
        ])
    }

    @Test func aDurationGoesToTheFirstBucketWhoseBoundHoldsIt() {
        let bounds = LatencyBuckets.boundsNanoseconds
        func index(_ ns: UInt64) -> Int {
            bounds.withUnsafeBufferPointer { LatencyBuckets.index(ns, bounds: $0.baseAddress!, finite: bounds.count) }
        }
        #expect(index(0) == 0)
        #expect(index(1_000) == 0)
        #expect(index(1_001) == 1)
        #expect(index(4_999) == 2)
        #expect(index(5_000) == 2)
        #expect(index(999_999_999) == 18)
        #expect(index(1_000_000_000) == 18)
        #expect(index(1_000_000_001) == 19)
        #expect(index(.max) == 19)
    }

    @Test func quantilesInterpolateWithinABucket() {
        var counts = [UInt64](repeating: 0, count: LatencyBuckets.count)
        counts[2] = 100  // 2–5 µs
        #expect(LatencyBuckets.quantile(0.5, counts: counts) == 3_500)
        #expect(LatencyBuckets.quantile(1, counts: counts) == 5_000)
        counts[19] = 100  // beyond 1 s: reported as 1 s
        #expect(LatencyBuckets.quantile(0.99, counts: counts) == 1_000_000_000)
        #expect(LatencyBuckets.quantile(0.5, counts: [UInt64](repeating: 0, count: 20)) == nil)
    }
}

@Suite("Per-loop counters, merged on read")
struct LoopCounterTests {
    @Test func requestsAndProtocolErrorsAreCountedByOperationAndType() throws {
        let registry = MetricsRegistry()
        let counters = registry.addLoop(serving: try snapshot(twoFlags))
        counters.request(.eval)
        counters.request(.eval)
        counters.request(.stats)
        counters.refused(.invalidRequest)
        counters.refused(.unknownOp)
        counters.refused(.tooLarge)
        counters.refused(.overloaded)
        let sample = registry.collect()
        let requests = Dictionary(uniqueKeysWithValues: zip(MetricTable.requests.values, sample.counts(MetricTable.requests)))
        #expect(requests["eval"] == 2)
        #expect(requests["stats"] == 1)
        #expect(requests["invalid"] == 2, "lines refused before an op was known")
        #expect(requests["ping"] == 0)
        let errors = sample.counts(MetricTable.requestErrors)
        #expect(Array(errors.prefix(4)) == [1, 1, 1, 1] && errors.dropFirst(4).allSatisfy { $0 == 0 })
    }

    @Test func evaluationsAreCountedByFlagVariantAndReason() throws {
        let registry = MetricsRegistry()
        let snap = try snapshot(twoFlags)
        let counters = registry.addLoop(serving: snap)
        let gold = EvaluationContext(targetingKey: "u", attributes: ["tier": "gold"])
        for (key, context) in [("a", gold), ("a", gold), ("a", EvaluationContext()), ("b", gold), ("c", gold), ("zzz", gold)] {
            snap.withResult(key, context: context) { r in
                counters.evaluation(position: r.flagPosition, variant: r.variantIndex, reason: r.reason, error: r.errorCode)
            }
        }
        snap.withResult("b", context: gold, type: .boolean) { r in
            counters.evaluation(position: r.flagPosition, variant: r.variantIndex, reason: r.reason, error: r.errorCode)
        }
        let sample = registry.collect()
        func count(_ flag: String, _ variant: String, _ reason: Reason) -> UInt64? {
            sample.evaluations[EvaluationKey(flag: flag, variant: variant, reason: MetricTable.reasonIndex(reason))]
        }
        #expect(count("a", "on", .targetingMatch) == 2)
        #expect(count("a", "off", .targetingMatch) == 1)
        #expect(count("b", "x", .static) == 1)
        #expect(count("c", "", .disabled) == 1)
        #expect(count("b", "", .error) == 1, "a type mismatch serves no variant")
        #expect(sample.evaluations.count == 5, "\(sample.evaluations)")
        #expect(sample.counts(MetricTable.evaluationErrors) == [1, 1, 0, 0], "one unknown key, one type mismatch")
    }

    /// A client asking for random keys must not grow the daemon's memory: unknown keys are one
    /// counter, not one per key.
    @Test func unknownKeysAreCountedWithoutTheirKey() throws {
        let registry = MetricsRegistry()
        let snap = try snapshot(twoFlags)
        let counters = registry.addLoop(serving: snap)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let key = "random-\(generator.next())"
            snap.withResult(key, context: EvaluationContext()) { r in
                #expect(r.flagPosition == nil)
                counters.evaluation(position: r.flagPosition, variant: r.variantIndex, reason: r.reason, error: r.errorCode)
            }
        }
        counters.adopt(try snapshot(#"{"flags":{}}"#))  // folds: nothing to keep for unknown keys
        let sample = registry.collect()
        #expect(sample.evaluations.isEmpty)
        #expect(sample.counts(MetricTable.evaluationErrors)[0] == 20_000)
        #expect(counters.layout.slotCount == 0)
    }

    @Test func totalsSurviveReloadsAndRemovedFlagsAreKept() throws {
        let registry = MetricsRegistry()
        let first = try snapshot(twoFlags)
        let counters = registry.addLoop(serving: first)
        for _ in 0..<3 {
            first.withResult("b", context: EvaluationContext()) { r in
                counters.evaluation(position: r.flagPosition, variant: r.variantIndex, reason: r.reason, error: nil)
            }
        }
        // "b" moves to another position, "a" is removed, "d" is new.
        let second = try snapshot(#"""
            {"flags":{"d":{"state":"ENABLED","variants":{"v":1},"defaultVariant":"v"},
                      "b":{"state":"ENABLED","variants":{"y":"Y","x":"X"},"defaultVariant":"x"}}}
            """#)
        counters.adopt(second)
        second.withResult("b", context: EvaluationContext()) { r in
            #expect(r.flagPosition == 1 && r.variantIndex == 1)
            counters.evaluation(position: r.flagPosition, variant: r.variantIndex, reason: r.reason, error: nil)
        }
        let sample = registry.collect()
        #expect(sample.evaluations[EvaluationKey(flag: "b", variant: "x", reason: 0)] == 4)
        #expect(sample.evaluations.count == 1)
    }

    @Test func loopsAreAddedUpAndLayoutsShared() throws {
        let registry = MetricsRegistry()
        let snap = try snapshot(twoFlags)
        let one = registry.addLoop(serving: snap)
        let two = registry.addLoop(serving: snap)
        #expect(one.layout === two.layout, "one layout per snapshot")
        one.request(.ping)
        two.request(.ping)
        one.answered(3, nanoseconds: 4_000)
        two.answered(1, nanoseconds: 2_000_000_000)
        let sample = registry.collect()
        #expect(sample.counts(MetricTable.requests)[MetricTable.operationIndex(.ping)] == 2)
        var expected = [UInt64](repeating: 0, count: LatencyBuckets.count)
        expected[2] = 3
        expected[19] = 1
        #expect(sample.latencyBuckets == expected)
        #expect(sample.latencySumNanoseconds == 3 * 4_000 + 2_000_000_000)
    }

    @Test func aFeatureCountsThroughAHandle() throws {
        let registry = MetricsRegistry()
        let counters = registry.addLoop(serving: try snapshot(twoFlags))
        let handle = counters.handle(MetricTable.requestErrors)
        counters.count(handle, 2, by: 5)
        let counts = registry.collect().counts(MetricTable.requestErrors)
        #expect(counts[2] == 5 && counts.reduce(0, +) == 5)
    }

    @Test func tracksOnlyFlagsThatAskForEvents() throws {
        let registry = MetricsRegistry()
        let snap = try snapshot(twoFlags)
        let queue = ExposureQueue(capacity: 8, deduplicator: ExposureDeduplicator(windowSeconds: 60))
        let counters = registry.addLoop(serving: snap, exposures: queue)
        #expect(counters.tracks(1))
        #expect(!counters.tracks(0))
        #expect(!registry.addLoop(serving: snap).tracks(1), "not without an events queue")
    }
}
