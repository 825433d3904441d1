import GuidonEngine
import GuidonJSON
@testable import GuidonMetrics
import GuidonProtocol
import Testing

@Suite("Exposure events: de-duplication and the queue")
struct ExposureQueueTests {
    func record(_ queue: ExposureQueue, user: String?, flag: String = "b", variant: String? = "x", at seconds: UInt32) {
        queue.record(
            flag: flag, variant: variant, reason: .targetingMatch, error: nil, targetingKey: user, tenant: "t1",
            configVersion: "v1", monotonicSeconds: seconds, unixNanoseconds: { 1_796_620_105_123_000_000 })
    }

    @Test func theSameUserFlagAndVariantAreRecordedOnceWithinTheWindow() {
        let queue = ExposureQueue(capacity: 64, deduplicator: ExposureDeduplicator(windowSeconds: 60))
        record(queue, user: "u1", at: 100)
        record(queue, user: "u1", at: 130)  // repeat
        record(queue, user: "u1", variant: "y", at: 130)  // another variant
        record(queue, user: "u2", at: 130)  // another user
        record(queue, user: "u1", flag: "a", at: 130)  // another flag
        record(queue, user: "u1", at: 161)  // the window has passed since the first
        record(queue, user: nil, at: 161)  // no targeting key
        record(queue, user: nil, at: 162)
        var events: [ExposureEvent] = []
        queue.drain { events.append($0) }
        #expect(events.map { "\($0.targetingKey ?? "-")/\($0.flag)/\($0.variant ?? "-")" } == [
            "u1/b/x", "u1/b/y", "u2/b/x", "u1/a/x", "u1/b/x", "-/b/x",
        ])
        #expect(queue.counts.deduplicated == 2)
    }

    @Test func windowZeroRecordsEveryEvaluation() {
        let queue = ExposureQueue(capacity: 64, deduplicator: ExposureDeduplicator(windowSeconds: 0))
        for _ in 0..<5 { record(queue, user: "u1", at: 1) }
        #expect(queue.drain { _ in } == 5)
    }

    @Test func aFullQueueDropsAndCountsNewEvents() {
        let queue = ExposureQueue(capacity: 4, deduplicator: ExposureDeduplicator(windowSeconds: 0))
        for i in 0..<10 { record(queue, user: "u\(i)", at: 1) }
        #expect(queue.counts.droppedQueueFull == 6)
        var users: [String] = []
        queue.drain { users.append($0.targetingKey!) }
        #expect(users == ["u0", "u1", "u2", "u3"], "the oldest are kept")
        record(queue, user: "u10", at: 1)
        #expect(queue.drain { _ in } == 1, "room again once drained")
        #expect(queue.counts.droppedQueueFull == 6)
    }

    @Test func anEventTooLargeForASlotIsDroppedAndCounted() {
        let queue = ExposureQueue(capacity: 4, deduplicator: ExposureDeduplicator(windowSeconds: 0))
        record(queue, user: String(repeating: "k", count: 600), at: 1)
        #expect(queue.counts.droppedTooLarge == 1)
        #expect(queue.drain { _ in } == 0)
    }

    @Test func anEventIsAJSONLineWithOpenTelemetryNames() throws {
        let queue = ExposureQueue(capacity: 4, deduplicator: ExposureDeduplicator(windowSeconds: 0))
        queue.record(
            flag: "b\"q", variant: nil, reason: .error, error: .typeMismatch, targetingKey: "ü", tenant: nil,
            configVersion: "abc", monotonicSeconds: 1, unixNanoseconds: { 1_796_620_105_023_000_000 })
        var line: [UInt8] = []
        queue.drain { $0.writeJSONLine(into: &line) }
        #expect(line.last == UInt8(ascii: "\n"))
        let object = try #require(try JSONParser().parse(Array(line.dropLast())).object)
        #expect(object == [
            "time": "2026-12-07T05:08:25.023Z", "event.name": "feature_flag.evaluation", "feature_flag.key": "b\"q",
            "feature_flag.result.reason": "error", "error.type": "type_mismatch", "feature_flag.context.id": "ü",
            "feature_flag.version": "abc", "feature_flag.provider.name": "guidon",
        ])
    }
}

@Suite("The Prometheus text and the stats reply")
struct ReportTests {
    func report(_ sample: CounterSample) -> MetricsReport {
        MetricsReport(
            counters: sample, counting: true, daemonVersion: "1.2.3", startedAt: 1_796_620_000, uptimeSeconds: 105,
            connections: 3, configVersion: "v\"1", configLoadedAt: 1_796_620_050, servedFlags: ["a", "b"], enabledFlags: 2,
            disabledFlags: 1, reloads: ReloadCounts(ok: 1, unchanged: 2, failed: 3, lastSuccessAt: 1_796_620_050),
            exposures: nil)
    }

    func sample() throws -> CounterSample {
        let registry = MetricsRegistry()
        let counters = registry.addLoop(serving: try snapshot(twoFlags))
        counters.evaluation(position: 1, variant: 0, reason: .static, error: nil)
        counters.evaluation(position: 1, variant: 0, reason: .static, error: nil)
        counters.evaluation(position: 0, variant: 1, reason: .targetingMatch, error: nil)
        counters.evaluation(position: nil, variant: nil, reason: .error, error: .flagNotFound)
        counters.request(.eval)
        counters.answered(4, nanoseconds: 3_000)
        counters.adopt(try snapshot(#"{"flags":{"b":{"state":"ENABLED","variants":{"x":1},"defaultVariant":"x"}}}"#))
        return registry.collect()
    }

    @Test func theTextHasEveryFamilyOnceWithHelpTypeAndSamples() throws {
        let text = String(decoding: report(try sample()).prometheusText(), as: UTF8.self)
        let lines = text.split(separator: "\n").map(String.init)
        for family in MetricTable.all where family != MetricTable.exposureEvents && family != MetricTable.exposureEventsDropped {
            #expect(lines.filter { $0 == "# TYPE \(family.name) \(family.kind.rawValue)" }.count == 1, "\(family.name)")
            #expect(lines.contains { $0.hasPrefix("# HELP \(family.name) ") })
        }
        for expected in [
            #"guidon_evaluations_total{flag="a",variant="off",reason="targeting_match"} 1"#,
            #"guidon_evaluations_total{flag="b",variant="x",reason="static"} 2"#,
            #"guidon_evaluation_errors_total{error_type="flag_not_found"} 1"#,
            #"guidon_requests_total{op="eval"} 1"#,
            #"guidon_request_duration_seconds_bucket{le="2e-06"} 0"#,
            #"guidon_request_duration_seconds_bucket{le="5e-06"} 4"#,
            #"guidon_request_duration_seconds_bucket{le="+Inf"} 4"#,
            "guidon_request_duration_seconds_sum 1.2e-05",
            "guidon_request_duration_seconds_count 4",
            "guidon_connections 3",
            #"guidon_config_reloads_total{result="failed"} 3"#,
            "guidon_config_last_reload_success_timestamp_seconds 1796620050",
            #"guidon_config_info{config_version="v\"1"} 1"#,
            #"guidon_flags{state="disabled"} 1"#,
            #"guidon_build_info{version="1.2.3"} 1"#,
            "guidon_start_time_seconds 1796620000",
        ] {
            #expect(lines.contains(expected), "missing: \(expected)")
        }
        #expect(!text.contains("exposure"), "exposure families only when events are written")
    }

    @Test func labelValuesAreEscaped() {
        var writer = PrometheusWriter()
        writer.sample("m", [("flag", "a\\b\"c\nd")], UInt64(1))
        #expect(String(decoding: writer.bytes, as: UTF8.self) == #"m{flag="a\\b\"c\nd"} 1"# + "\n")
    }

    @Test func statsHasTheBusiestFlagsFirstAndMarksRemovedOnes() throws {
        var report = report(try sample())
        report.servedFlags = ["b"]
        let stats = report.statsJSON
        let flags = try #require(stats["evaluations"]?.object?["flags"]?.array)
        #expect(flags.first?.object?["flag"] == "b")
        #expect(flags.first?.object?["total"] == 2)
        #expect(flags.first?.object?["variants"] == [["variant": "x", "count": 2]])
        #expect(flags.last?.object?["removed"] == true)
        #expect(stats["evaluations"]?.object?["total"] == 3)
        #expect(stats["latency"]?.object?["count"] == 4)
        #expect(stats["reloads"]?.object?["failed"] == 3)
        #expect(stats["exposureEvents"] == .null)
    }
}
