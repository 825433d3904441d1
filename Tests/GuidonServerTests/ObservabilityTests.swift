import Foundation
import GuidonEngine
import GuidonHTTP
import GuidonJSON
import GuidonMetrics
import GuidonProtocol
@testable import GuidonServer
import Logging
import NIOConcurrencyHelpers
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Flags for the counting tests: a targeted flag, a static one that asks for exposure events,
/// a disabled one.
let countedFlags = #"""
    {"flags":{
      "gate":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off",
              "targeting":{"if":[{"==":[{"var":"tier"},"gold"]},"on","off"]}},
      "exp":{"state":"ENABLED","variants":{"a":"A","b":"B"},"defaultVariant":"a","metadata":{"trackEvents":true},
             "targeting":{"if":[{"==":[{"var":"tier"},"gold"]},"b",null]}},
      "killed":{"state":"DISABLED","variants":{"on":true},"defaultVariant":"on"}
    }}
    """#

/// Connections served by a live event loop whose counters are those of an `Observability`.
final class CountingHarness {
    let store: ConfigStore
    let connections: Connections
    let observability: Observability
    let service: ServiceContext
    let loop: EventLoop
    let config: LoopConfig

    init(flags: String = countedFlags, connectionLimit: Int = 10, maxLineBytes: Int = 1024, events: ExposureEventsConfiguration? = nil) throws {
        store = ConfigStore(ServedConfig(snapshot: try Snapshot.compile(json: Array(flags.utf8)), version: "v1", loadedAt: 1_000))
        connections = Connections(limit: connectionLimit)
        observability = try Observability(ObservabilityConfiguration(events: events), daemonVersion: "test", logger: Logger(label: "test"))
        let store = store
        service = ServiceContext(store: store, connections: connections, maxLineBytes: maxLineBytes, observability: observability) {
            DaemonStatus(
                daemonVersion: "test", configPath: "/flags.json", configVersion: store.current.version, flagCount: store.current.snapshot.count,
                loadedAt: 0, uptimeSeconds: 1, lenient: false, warnings: 0, connections: 1, lastReload: nil)
        }
        loop = try EventLoop(name: "counting-loop")
        loop.start()
        config = LoopConfig(store: store, counters: observability.makeCounters(serving: store.current.snapshot))
    }

    deinit {
        loop.stop()
        observability.shutdown()
    }

    /// A new connection on the loop; the test holds the client end.
    func connect() throws -> LineClient {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw TestFailure("socketpair: \(String(cString: strerror(errno)))")
        }
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        let (served, loop, config, service) = (fds[1], loop, config, service)
        loop.execute { Connection.open(served, on: loop, config: config, service: service) }
        return LineClient(connected: fds[0])
    }

    var report: MetricsReport { observability.report(store: store, connections: connections) }

    /// The counts of a closed-label family, by label value.
    func counts(_ family: CounterFamily) -> [String: UInt64] {
        Dictionary(uniqueKeysWithValues: zip(family.values, report.counters.counts(family)))
    }

    func evaluations(_ flag: String, _ variant: String, _ reason: Reason) -> UInt64 {
        report.counters.evaluations[EvaluationKey(flag: flag, variant: variant, reason: MetricTable.reasonIndex(reason))] ?? 0
    }
}

@Suite("Counting on a live event loop")
struct CountingTests {
    @Test func requestsAreCountedByOperation() throws {
        let h = try CountingHarness()
        let client = try h.connect()
        for line in [#"{"op":"ping"}"#, #"{"op":"ping"}"#, #"{"op":"list"}"#, #"{"op":"eval","flag":"gate"}"#, #"{"op":"evalAll"}"#] {
            _ = try client.request(line)
        }
        let requests = h.counts(MetricTable.requests)
        #expect(requests["ping"] == 2)
        #expect(requests["list"] == 1)
        #expect(requests["eval"] == 1)
        #expect(requests["evalAll"] == 1)
        #expect(requests["status"] == 0)
    }

    @Test func evaluationsAreCountedByFlagVariantAndReasonInEveryKindOfRequest() throws {
        let h = try CountingHarness()
        let client = try h.connect()
        _ = try client.request(#"{"op":"eval","flag":"gate","context":{"tier":"gold"}}"#)
        _ = try client.request(#"{"op":"eval","flags":["gate","gate","killed"],"context":{"tier":"silver"}}"#)
        _ = try client.request(#"{"op":"evalAll","context":{"tier":"gold"}}"#)
        _ = try client.request(#"{"op":"eval","flag":"exp","type":"boolean"}"#)
        #expect(h.evaluations("gate", "on", .targetingMatch) == 2)
        #expect(h.evaluations("gate", "off", .targetingMatch) == 2)
        #expect(h.evaluations("killed", "", .disabled) == 2)
        #expect(h.evaluations("exp", "b", .targetingMatch) == 1)
        #expect(h.evaluations("exp", "", .error) == 1, "a type mismatch")
        #expect(h.report.counters.evaluations.values.reduce(0, +) == 8)
        #expect(h.counts(MetricTable.evaluationErrors)["type_mismatch"] == 1)
    }

    @Test func unknownFlagsAreOneCounterWhateverTheKeys() throws {
        let h = try CountingHarness()
        let client = try h.connect()
        for i in 0..<500 {
            _ = try client.request(#"{"op":"eval","flag":"no-such-flag-\#(i)-\#(UInt64.random(in: 0...UInt64.max))"}"#)
        }
        #expect(h.counts(MetricTable.evaluationErrors)["flag_not_found"] == 500)
        #expect(h.report.counters.evaluations.isEmpty)
        let stats = h.report.statsJSON
        #expect(stats["evaluations"]?.object?["flags"]?.array?.isEmpty == true)
    }

    @Test func protocolErrorsAreCountedByType() throws {
        let h = try CountingHarness(maxLineBytes: 64)
        let client = try h.connect()
        _ = try client.request("not json")
        _ = try client.request(#"{"op":"frobnicate"}"#)
        _ = try client.request(#"{"op":"eval"}"#)
        try client.send(String(repeating: "x", count: 100) + "\n")
        #expect(try client.readReply()["error"]?.object?["code"] == "TOO_LARGE")
        #expect(try client.isClosedByPeer())
        let errors = h.counts(MetricTable.requestErrors)
        #expect(errors["invalid_request"] == 2)
        #expect(errors["unknown_op"] == 1)
        #expect(errors["too_large"] == 1)
        #expect(h.counts(MetricTable.requests)["invalid"] == 3)
    }

    @Test func refusedConnectionsAreCountedAsOverloaded() throws {
        let h = try CountingHarness(connectionLimit: 0)
        let client = try h.connect()
        #expect(try client.readReply()["error"]?.object?["code"] == "OVERLOADED")
        #expect(h.counts(MetricTable.requestErrors)["overloaded"] == 1)
    }

    @Test func everyAnsweredLineIsInTheLatencyHistogram() throws {
        let h = try CountingHarness()
        let client = try h.connect()
        var burst = ""
        for i in 0..<50 { burst += #"{"op":"eval","id":\#(i),"flag":"gate"}"# + "\n" }
        try client.send(burst + "\n\n")  // blank lines are not answered, nor counted
        for _ in 0..<50 { _ = try client.readReply() }
        _ = try client.request(#"{"op":"ping"}"#)
        // The histogram is counted after the replies are sent: wait for the last one.
        var count: UInt64 = 0
        for _ in 0..<200 {
            count = h.report.counters.latencyBuckets.reduce(0, +)
            if count == 51 { break }
            usleep(5_000)
        }
        #expect(count == 51)
        #expect(h.report.counters.latencySumNanoseconds > 0)
        #expect(h.report.counters.latencyBuckets.last == 0, "nothing took more than a second")
    }

    @Test func countsSurviveAReload() throws {
        let h = try CountingHarness()
        let client = try h.connect()
        _ = try client.request(#"{"op":"eval","flag":"gate"}"#)
        let next = #"{"flags":{"gate":{"state":"ENABLED","variants":{"off":false,"on":true},"defaultVariant":"off"}}}"#
        h.store.publish(ServedConfig(snapshot: try Snapshot.compile(json: Array(next.utf8)), version: "v2", loadedAt: 2_000))
        _ = try client.request(#"{"op":"eval","flag":"gate"}"#)
        #expect(h.evaluations("gate", "off", .targetingMatch) == 1)
        #expect(h.evaluations("gate", "off", .static) == 1)
        let stats = try client.request(#"{"op":"stats"}"#)
        #expect(stats["evaluations"]?.object?["total"] == 2)
        #expect(stats["configVersion"] == "v2")
    }

    @Test func statsAndMetricsAreAnsweredOnTheSocket() throws {
        let h = try CountingHarness()
        let client = try h.connect()
        _ = try client.request(#"{"op":"eval","flag":"gate"}"#)
        let stats = try client.request(#"{"op":"stats","id":7}"#)
        #expect(stats["id"] == 7)
        #expect(stats["counting"] == true)
        #expect(stats["requests"]?.object?["eval"] == 1)
        #expect(stats["connections"] == 1)
        let metrics = try client.request(#"{"op":"metrics"}"#)
        let text = try #require(metrics["text"]?.string)
        #expect(text.contains(#"guidon_requests_total{op="stats"} 1"#))
        #expect(metrics["contentType"] == "text/plain; version=0.0.4; charset=utf-8")
    }

    @Test func exposureEventsCarryTheContextAndAreDeduplicated() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let h = try CountingHarness(events: ExposureEventsConfiguration(path: dir.file("events.jsonl"), flushInterval: .milliseconds(20)))
        let client = try h.connect()
        let gold = #"{"op":"eval","flag":"exp","context":{"targetingKey":"u1","tenantId":"acme","tier":"gold"}}"#
        _ = try client.request(gold)
        _ = try client.request(gold)  // a repeat within the window
        _ = try client.request(#"{"op":"eval","flags":["exp","gate"],"context":{"targetingKey":"u1"}}"#)  // another variant
        _ = try client.request(#"{"op":"eval","flag":"gate","context":{"targetingKey":"u1"}}"#)  // not tracked
        _ = try client.request(#"{"op":"evalAll","context":{"targetingKey":"u2"}}"#)
        var lines: [JSONObject] = []
        for _ in 0..<200 {
            let text = (try? String(contentsOfFile: dir.file("events.jsonl"), encoding: .utf8)) ?? ""
            lines = try text.split(separator: "\n").map { try #require(try JSONParser().parse(Array($0.utf8)).object) }
            if lines.count >= 3 { break }
            usleep(10_000)
        }
        #expect(lines.count == 3)
        #expect(lines.map { $0["feature_flag.context.id"] } == ["u1", "u1", "u2"])
        #expect(lines.map { $0["feature_flag.result.variant"] } == ["b", "a", "a"])
        #expect(lines.map { $0["feature_flag.result.reason"] } == ["targeting_match", "default", "default"])
        #expect(lines[0]["guidon.tenant.id"] == "acme")
        #expect(lines[1]["guidon.tenant.id"] == nil)
        #expect(lines.allSatisfy { $0["feature_flag.key"] == "exp" && $0["feature_flag.version"] == "v1" })
        #expect(lines[0]["time"]?.string?.hasSuffix("Z") == true)
        let counts = try #require(h.report.exposures)
        #expect(counts.written == 3)
        #expect(counts.deduplicated == 1)
        #expect(counts.dropped == 0)
    }
}

/// A sink slower than the loops: each write takes `delay`.
final class SlowSink: ExposureSink, @unchecked Sendable {
    let delay: UInt32
    let lines = NIOLockedValueBox(0)

    init(delayMicroseconds: UInt32) { delay = delayMicroseconds }

    func write(_ bytes: [UInt8]) throws(ExposureWriter.Failure) {
        usleep(delay)
        lines.withLockedValue { $0 += bytes.count(where: { $0 == UInt8(ascii: "\n") }) }
    }

    func close() {}
}

final class FailingSink: ExposureSink, @unchecked Sendable {
    func write(_ bytes: [UInt8]) throws(ExposureWriter.Failure) { throw ExposureWriter.Failure(description: "disk full") }
    func close() {}
}

@Suite("The exposure-event writer", .serialized)
struct ExposureWriterTests {
    func record(_ queue: ExposureQueue, _ user: Int) {
        queue.record(
            flag: "exp", variant: "a", reason: .static, error: nil, targetingKey: "user-\(user)", tenant: nil, configVersion: "v",
            monotonicSeconds: 1, unixNanoseconds: { 0 })
    }

    /// A writer that cannot keep up costs events, never memory or a wait: what does not fit the
    /// queue is dropped and counted, and every event is either written or counted as dropped.
    @Test func aWriterThatCannotKeepUpDropsAndCounts() throws {
        let sink = SlowSink(delayMicroseconds: 300_000)
        let writer = ExposureWriter(
            ExposureEventsConfiguration(path: "/unused", windowSeconds: 0, queueSlots: 16, flushInterval: .milliseconds(10)),
            sink: sink, logger: Logger(label: "test"))
        let queue = writer.makeQueue()
        writer.start()
        let started = ContinuousClock.now
        for i in 0..<1_000 { record(queue, i) }
        #expect(ContinuousClock.now - started < .milliseconds(250), "recording never waits for the writer")
        writer.shutdown()
        let dropped = queue.counts.droppedQueueFull
        #expect(dropped >= 1_000 - 32, "at most two queues' worth got through: \(dropped)")
        #expect(writer.counts.written + dropped == 1_000)
        #expect(sink.lines.withLockedValue { $0 } == Int(writer.counts.written))
    }

    @Test func failedWritesAreCountedAsDropped() throws {
        let writer = ExposureWriter(
            ExposureEventsConfiguration(path: "/unused", windowSeconds: 0, flushInterval: .milliseconds(10)),
            sink: FailingSink(), logger: Logger(label: "test"))
        let queue = writer.makeQueue()
        writer.start()
        for i in 0..<10 { record(queue, i) }
        writer.shutdown()
        #expect(writer.counts.droppedWriteFailed == 10)
        #expect(writer.counts.written == 0)
    }

    @Test func theFileIsRotatedBySizeKeepingNFiles() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let path = dir.file("events.jsonl")
        let file = try RotatingFile(path: path, maxBytes: 100, keep: 2)
        for i in 0..<10 { try file.write(Array("line \(i) \(String(repeating: "x", count: 30))\n".utf8)) }
        file.close()
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(names == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"])
        let newest = try String(contentsOfFile: path, encoding: .utf8)
        let previous = try String(contentsOfFile: path + ".1", encoding: .utf8)
        #expect(newest.hasPrefix("line 8 ") && newest.contains("line 9 "))
        #expect(previous.hasPrefix("line 6 ") && previous.contains("line 7 "))
        for name in names { #expect(try Data(contentsOf: URL(fileURLWithPath: dir.file(name))).count <= 100) }
    }

    @Test func aBatchLargerThanTheFileIsSplitAtLineEnds() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let path = dir.file("events.jsonl")
        let file = try RotatingFile(path: path, maxBytes: 100, keep: 3)
        var batch = ""
        for i in 0..<6 { batch += "line \(i) \(String(repeating: "x", count: 30))\n" }
        try file.write(Array(batch.utf8))
        try file.write(Array((String(repeating: "y", count: 150) + "\n").utf8))  // longer than a file
        file.close()
        #expect(try String(contentsOfFile: path + ".3", encoding: .utf8).hasPrefix("line 0 "))
        #expect(try String(contentsOfFile: path + ".1", encoding: .utf8).hasPrefix("line 4 "))
        #expect(try String(contentsOfFile: path, encoding: .utf8).hasPrefix("yyy"))
    }

    @Test func shutdownIsSafeTwiceAndWithoutStart() throws {
        let writer = ExposureWriter(ExposureEventsConfiguration(path: "/unused"), sink: SlowSink(delayMicroseconds: 0), logger: Logger(label: "t"))
        writer.shutdown()
        writer.shutdown()
    }
}

/// A loop that runs tasks at once, or never (a wedged loop).
struct FakeLoop: TaskRunner {
    var runs: Bool
    func execute(_ task: @escaping @Sendable () -> Void) { if runs { task() } }
}

@Suite("/healthz")
struct HealthTests {
    func health(loops: [FakeLoop]) throws -> (status: Int, body: String) {
        let h = try CountingHarness()
        let listener = HTTPListener(
            configuration: HTTPListenerConfiguration(port: 0), router: h.observability.routes(service: h.service, loops: loops))
        try listener.start()
        defer { listener.shutdown() }
        let reply = try httpRequest(port: try #require(listener.port), "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return (reply.status, reply.body)
    }

    @Test func healthyWhenEveryLoopRunsATask() throws {
        let reply = try health(loops: [FakeLoop(runs: true), FakeLoop(runs: true)])
        #expect(reply.status == 200)
        #expect(reply.body == "ok: serving 3 flags (config v1); 2 event loop(s) answering\n")
    }

    @Test func unavailableWhenALoopIsWedged() throws {
        let started = ContinuousClock.now
        let reply = try health(loops: [FakeLoop(runs: true), FakeLoop(runs: false)])
        #expect(reply.status == 503)
        #expect(reply.body == "unavailable: 1 of 2 event loop(s) did not answer within 1 s\n")
        #expect(ContinuousClock.now - started >= .seconds(1))
    }
}
