import GuidonJSON
import GuidonQuota
import GuidonRESP
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Stage `consume` (issue 14): usage-limit `consume` through guidond, against the echo floor
/// answering a reply of the same bytes, and, with Redis, against a bare `EVALSHA` of the same
/// script to the same Redis from this benchmark's own client. All in one run, taking turns.
///
/// Two guidonds serve one entitlements document (one metered feature, limits too high to refuse:
/// every request is counted): one counting in its embedded store (under a state directory, the
/// flusher `fdatasync`ing every 200 ms), one in the private Redis.
extension BenchSession {
    static let consumeSection = "consume (usage limits), 1 connection × 1 in flight; and 16 × 16"

    /// One feature, two limits of one tenant (a day per user and a month per tenant), as a real plan.
    static let consumeEntitlements = """
        {"timezone": "UTC",
         "features": {"video_generation": {"default": false}},
         "plans": {"pro": {"displayName": "Pro", "order": 1, "grants": {"video_generation": {"limits": [
            {"per": "day", "max": 9007199254740991, "scope": "user"}, {"per": "month", "max": 9007199254740991}]}}}},
         "tenants": {"bench": {"plan": "pro", "status": "active"}, \((0..<16).map { "\"bench-\($0 < 10 ? "0" : "")\($0)\": {\"plan\": \"pro\", \"status\": \"active\"}" }.joined(separator: ", "))}}
        """

    func consumeRequest(tenant: String = "bench") -> JSONValue {
        ["op": "consume", "feature": "video_generation", "context": ["tenantId": .string(tenant), "targetingKey": "user-4217"]]
    }

    func measureConsume() throws {
        try checkGuidondExecutable()
        let directory = launcher.directory
        let config = directory.file("consume-flags.json")
        try writeFileAtomically(config, BenchFlags.file(count: 4, generation: 0))
        let entitlements = directory.file("consume-entitlements.json")
        try writeFileAtomically(entitlements, Array(Self.consumeEntitlements.utf8))

        var processes: [ChildProcess] = []
        defer { for process in processes { process.stop() } }
        let embeddedSocket = directory.file("consume-embedded.sock")
        progress("consume stage: starting guidond (embedded store)")
        let (embedded, _) = try launcher.startGuidond(
            config: config, socket: embeddedSocket,
            extraArguments: ["--entitlements", entitlements, "--state-dir", directory.file("consume-state")])
        processes.append(embedded)
        let line = Self.text(consumeRequest())
        let sample = try exchange(socket: embeddedSocket, line: line)
        guard sample.contains(#""allowed":true"#) else {
            throw BenchError.unexpectedReply("guidond answered \(line) with \(sample.prefix(300))")
        }
        // The floor answers a reply of the same length (the numbers change, not the size much).
        let floorSocket = directory.file("consume-floor.sock")
        processes.append(try launcher.startFloor(socket: floorSocket, reply: sample))

        var redisSocketPath: String?
        var redisGuidondSocket: String?
        var evalsha: RequestSpec?
        if settings.redis {
            let socket = directory.file("consume-redis.sock")
            if let redisProcess = try launcher.startRedis(socket: socket) {
                processes.append(redisProcess)
                redisSocketPath = socket
                let guidondSocket = directory.file("consume-redis-guidond.sock")
                progress("consume stage: starting guidond (Redis store)")
                let (process, _) = try launcher.startGuidond(
                    config: config, socket: guidondSocket,
                    extraArguments: ["--entitlements", entitlements, "--quota-store", "redis+unix://\(socket)"])
                processes.append(process)
                let answer = try exchange(socket: guidondSocket, line: line)
                guard answer.contains(#""degraded":false"#) else {
                    throw BenchError.unexpectedReply("guidond with Redis answered \(line) with \(answer.prefix(300))")
                }
                redisGuidondSocket = guidondSocket
                // The very command the Redis store sends for this request (after guidond's
                // SCRIPT LOAD), from this benchmark's client: the round trip the store cannot beat.
                let store = try RedisQuotaStore(
                    configuration: .init(address: .unix(path: socket)), logger: Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() })
                let request = QuotaRequest(
                    subject: QuotaSubject(feature: "video_generation", tenant: "bench-evalsha", user: "user-4217"),
                    limits: [QuotaLimit(per: .day, max: QuotaLimit.maximumValue, scope: .user), QuotaLimit(per: .month, max: QuotaLimit.maximumValue)],
                    now: EmbeddedQuotaStore.wallClock())
                evalsha = RequestSpec(name: "evalsha", line: store.scriptCommand(for: request), framing: .resp)
                store.shutdown()
            } else {
                report.notes.append("consume stage: redis-server is not installed: no Redis figures")
            }
        }
        _ = redisSocketPath

        let consume = RequestSpec(name: "consume", line: Array((line + "\n").utf8), framing: Self.guidondFraming)
        let floorSpec = RequestSpec(name: "floor", line: Array((line + "\n").utf8), framing: Self.guidondFraming)
        var targets: [(socket: String, spec: RequestSpec)] = [(floorSocket, floorSpec), (embeddedSocket, consume)]
        if let redisGuidondSocket, let evalsha, let redisSocketPath {
            targets.append((redisGuidondSocket, RequestSpec(name: "consume-redis", line: consume.lines[0], framing: Self.guidondFraming)))
            targets.append((redisSocketPath, evalsha))
        }

        // Latency: one connection per target, taking turns in 20 ms slices.
        let timing = LoadTiming(warmup: settings.warmup, duration: settings.latencySeconds)
        var clients: [(name: String, client: RoundTripClient?)] = []
        for (socket, spec) in targets {
            let client = try? RoundTripClient(socket: socket, request: spec, timeout: timing.drainTimeout)
            client?.run(for: timing.warmup, recording: false)
            clients.append((spec.name, client))
        }
        let slices = max(1, Int((Double(settings.rounds) * timing.duration / 0.02).rounded()))
        progress("consume stage: latency, \(slices) slices of 20 ms per target, \(clients.count) targets in turn")
        for _ in 0..<slices {
            for (_, client) in clients { client?.run(for: 0.02) }
        }
        var results = [String: LoadResult]()
        for (name, client) in clients { results[name] = client?.result ?? LoadResult() }
        let floor = results["floor"]!
        for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
            report.add(Figure(
                section: Self.consumeSection, name: "embedded consume \(label)", unit: .microseconds,
                guidond: micros(results["consume"]!.latency.quantile(q)), floor: micros(floor.latency.quantile(q)),
                goal: label == "p50" ? .floorRatioAtMost(1.3) : nil))
        }
        if let redisResult = results["consume-redis"], let bare = results["evalsha"] {
            for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
                report.add(Figure(
                    section: Self.consumeSection, name: "Redis-backed consume \(label) (redis: bare EVALSHA)", unit: .microseconds,
                    guidond: micros(redisResult.latency.quantile(q)), floor: micros(floor.latency.quantile(q)),
                    redis: micros(bare.latency.quantile(q)), reference: micros(bare.latency.quantile(q)),
                    goal: label == "p50" ? .referenceRatioAtMost(1.3, reference: "EVALSHA") : nil))
            }
        }

        // Throughput: 16 connections × 16 in flight, floor and embedded consume in turn.
        let loadTiming = LoadTiming(warmup: settings.warmup, duration: settings.throughputSeconds)
        // The same request for 16 tenants in turn (a sidecar serves many; one tenant's counts share one lock).
        let spread = RequestSpec(
            name: "consume-16-tenants",
            lines: (0..<16).map { Array((Self.text(consumeRequest(tenant: "bench-\($0 < 10 ? "0" : "")\($0)")) + "\n").utf8) },
            framing: Self.guidondFraming)
        var floorLoad = LoadResult()
        var consumeLoad = LoadResult()
        var spreadLoad = LoadResult()
        for round in 1...settings.rounds {
            progress("consume stage: 16 × 16, round \(round)/\(settings.rounds)")
            floorLoad.merge(LoadClient.load(
                socket: floorSocket, request: floorSpec, connections: 16, inFlight: 16, threads: settings.clientThreads, timing: loadTiming))
            consumeLoad.merge(LoadClient.load(
                socket: embeddedSocket, request: consume, connections: 16, inFlight: 16, threads: settings.clientThreads, timing: loadTiming))
            spreadLoad.merge(LoadClient.load(
                socket: embeddedSocket, request: spread, connections: 16, inFlight: 16, threads: settings.clientThreads, timing: loadTiming))
        }
        report.add(Figure(
            section: Self.consumeSection, name: "embedded consume 16 × 16, 1 tenant, replies", unit: .perSecond,
            guidond: consumeLoad.repliesPerSecond, floor: floorLoad.repliesPerSecond, goal: .floorRatioAtLeast(0.5)))
        report.add(Figure(
            section: Self.consumeSection, name: "embedded consume 16 × 16, 16 tenants, replies", unit: .perSecond,
            guidond: spreadLoad.repliesPerSecond, floor: floorLoad.repliesPerSecond, goal: .floorRatioAtLeast(0.5)))
        let failures = results.values.reduce(UInt64(0)) { $0 + $1.failures } + consumeLoad.failures + spreadLoad.failures
        report.add(Figure(section: Self.consumeSection, name: "failed requests", unit: .count, guidond: Double(failures), goal: .atMost(0)))
    }
}
