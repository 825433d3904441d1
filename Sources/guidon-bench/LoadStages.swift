/// Stages 1 and 2: round-trip latency and throughput, guidond against the floor and Redis.
extension BenchSession {
    private static let latencySection = "latency, 1 connection, 1 request in flight"

    func measureLatency() {
        let timing = LoadTiming(warmup: settings.warmup, duration: settings.latencySeconds)
        var targets: [(socket: String, spec: RequestSpec)] = [(floorSocket, floorSpec)]
        if redis != nil { targets.append((redisSocket, redisSpec)) }
        let kinds = [
            guidondSpec("static flag", evalRequest(BenchFlags.staticKey)),
            guidondSpec("targeted flag", evalRequest(BenchFlags.targetedKey)),
            guidondSpec("fractional flag", evalRequest(BenchFlags.fractionalKey)),
            guidondSpec("evalAll (\(Self.servedFlagCount) flags)", evalAllRequest, evaluations: Self.servedFlagCount),
        ]
        targets += kinds.map { (guidondSocket, $0) }

        // One connection per target, taking turns in short slices: every target sees the same
        // mix of machine conditions, which on a shared machine change from second to second.
        var clients: [(name: String, client: RoundTripClient?)] = []
        for (socket, spec) in targets {
            let client = try? RoundTripClient(socket: socket, request: spec, timeout: timing.drainTimeout)
            client?.run(for: timing.warmup, recording: false)
            clients.append((spec.name, client))
        }
        let slice = 0.02
        let slices = max(1, Int((Double(settings.rounds) * timing.duration / slice).rounded()))
        progress("latency: \(slices) slices of \(Int(slice * 1000)) ms per target, \(clients.count) targets in turn")
        for _ in 0..<slices {
            for (_, client) in clients { client?.run(for: slice) }
        }
        var results = [String: LoadResult]()
        for (name, client) in clients {
            if let client {
                results[name] = client.result
            } else {
                var failed = LoadResult()
                failed.connectFailures = 1
                results[name] = failed
            }
        }

        let floorResult = results["floor"]!
        let redisResult = results["redis"]
        let quantiles: [(Double, String)] = [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99.9")]
        for (index, kind) in kinds.enumerated() {
            let result = results[kind.name]!
            let isSingleFlag = index < 3
            for (q, label) in quantiles {
                let goal: Goal? =
                    !isSingleFlag ? nil : label == "p50" ? .floorRatioAtMost(1.3) : label == "p99" ? .floorRatioAtMost(2) : nil
                report.add(Figure(
                    section: Self.latencySection, name: "\(kind.name) \(label)", unit: .microseconds,
                    guidond: micros(result.latency.quantile(q)),
                    floor: micros(floorResult.latency.quantile(q)),
                    redis: redisResult.map { micros($0.latency.quantile(q)) },
                    goal: goal))
            }
        }
        let guidondFailures = kinds.reduce(UInt64(0)) { $0 + results[$1.name]!.failures }
        report.add(Figure(
            section: Self.latencySection, name: "failed requests", unit: .count,
            guidond: Double(guidondFailures), floor: Double(floorResult.failures),
            redis: redisResult.map { Double($0.failures) }, goal: .atMost(0)))
    }

    func measureThroughput() {
        let section = "throughput, connections × requests in flight"
        let timing = LoadTiming(warmup: settings.warmup, duration: settings.throughputSeconds)
        let single = guidondSpec("guidond", evalRequest(BenchFlags.targetedKey))
        let batch = guidondSpec("batch", batchRequest, evaluations: BenchFlags.batchKeys.count)
        var targets: [(socket: String, spec: RequestSpec)] = [(floorSocket, floorSpec), (guidondSocket, single), (guidondSocket, batch)]
        if redis != nil { targets.append((redisSocket, redisSpec)) }

        var failures = [String: UInt64]()
        for connections in settings.connections {
            for inFlight in settings.inFlight {
                var results = [String: LoadResult]()
                for round in 1...settings.rounds {
                    progress("throughput \(connections) × \(inFlight), round \(round)/\(settings.rounds)")
                    for (socket, spec) in targets {
                        let result = LoadClient.load(
                            socket: socket, request: spec, connections: connections, inFlight: inFlight,
                            threads: settings.clientThreads, timing: timing)
                        results[spec.name, default: LoadResult()].merge(result)
                    }
                }
                for (name, result) in results { failures[name, default: 0] += result.failures }

                let cell = "\(connections) × \(inFlight)"
                let goal: Goal? =
                    (connections == 16 || connections == 64) && inFlight == 1 ? .redisRatioAtLeast(1.2)
                    : connections == 16 && inFlight == 16 ? .floorRatioAtLeast(0.7) : nil
                report.add(Figure(
                    section: section, name: "\(cell), 1 flag, requests", unit: .perSecond,
                    guidond: results["guidond"]!.repliesPerSecond,
                    floor: results["floor"]!.repliesPerSecond,
                    redis: results["redis"]?.repliesPerSecond,
                    goal: goal))
                report.add(Figure(
                    section: section, name: "\(cell), 16-flag batch, evaluations", unit: .perSecond,
                    guidond: results["batch"]!.repliesPerSecond * Double(batch.evaluationsPerReply),
                    goal: connections == 16 && inFlight == 16 ? .atLeast(1_000_000) : nil))
            }
        }
        report.add(Figure(
            section: section, name: "failed requests", unit: .count,
            guidond: Double(failures["guidond", default: 0] + failures["batch", default: 0]),
            floor: Double(failures["floor", default: 0]),
            redis: redis == nil ? nil : Double(failures["redis", default: 0]),
            goal: .atMost(0)))
    }
}

func micros(_ nanos: UInt64) -> Double { Double(nanos) / 1000 }
