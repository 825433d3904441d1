import GuidonJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The `ofrep` stage: the same flags asked through OFREP (HTTP/1.1, one keep-alive connection over
/// TCP loopback, as an OpenFeature SDK's OFREP provider asks them) and through the Unix socket,
/// against one guidond, taking turns in 20 ms slices: the OFREP p50 next to the socket's p50 in
/// the same run. (What HTTP costs; the floor and Redis comparisons are the latency stage's.)
extension BenchSession {
    private static let ofrepSection = "OFREP (HTTP/1.1 keep-alive, TCP loopback) vs the Unix socket, 1 connection, 1 request in flight"

    func measureOFREP() throws {
        try checkGuidondExecutable()
        let config = launcher.directory.file("ofrep-flags.json")
        try writeFileAtomically(config, BenchFlags.file(count: Self.servedFlagCount, generation: 0))
        let socket = launcher.directory.file("ofrep-guidond.sock")
        progress("starting guidond with --ofrep-listen 127.0.0.1:0")
        let (process, _) = try launcher.startGuidond(config: config, socket: socket, extraArguments: ["--ofrep-listen", "127.0.0.1:0"])
        defer { process.stop() }
        let port = try ofrepPort()

        let kinds: [(name: String, key: String?, evaluations: Int)] = [
            ("static flag", BenchFlags.staticKey, 1),
            ("targeted flag", BenchFlags.targetedKey, 1),
            ("every flag (\(Self.servedFlagCount); socket evalAll, OFREP bulk)", nil, Self.servedFlagCount),
        ]
        var clients: [(name: String, client: RoundTripClient)] = []
        let timing = LoadTiming(warmup: settings.warmup, duration: settings.latencySeconds)
        for kind in kinds {
            let request = kind.key.map { evalRequest($0) } ?? evalAllRequest
            let socketSpec = guidondSpec("\(kind.name), socket", request, evaluations: kind.evaluations)
            let ofrepSpec = Self.ofrepSpec("\(kind.name), OFREP", key: kind.key, evaluations: kind.evaluations)
            try checkOFREP(port: port, ofrepSpec)
            clients.append((socketSpec.name, try RoundTripClient(socket: socket, request: socketSpec, timeout: timing.drainTimeout)))
            clients.append((ofrepSpec.name, RoundTripClient(connected: try connectLoopback(port: port), request: ofrepSpec, timeout: timing.drainTimeout)))
        }
        for (_, client) in clients { client.run(for: timing.warmup, recording: false) }
        let slice = 0.02
        let slices = max(1, Int((Double(settings.rounds) * timing.duration / slice).rounded()))
        progress("ofrep: \(slices) slices of \(Int(slice * 1000)) ms per target, \(clients.count) targets in turn")
        for _ in 0..<slices {
            for (_, client) in clients { client.run(for: slice) }
        }
        let results = Dictionary(uniqueKeysWithValues: clients.map { ($0.name, $0.client.result) })
        var failures: UInt64 = 0
        for kind in kinds {
            let socketResult = results["\(kind.name), socket"]!
            let ofrepResult = results["\(kind.name), OFREP"]!
            failures += socketResult.failures + ofrepResult.failures
            for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
                let viaSocket = micros(socketResult.latency.quantile(q))
                let viaOFREP = micros(ofrepResult.latency.quantile(q))
                report.add(Figure(section: Self.ofrepSection, name: "\(kind.name), Unix socket \(label)", unit: .microseconds, guidond: viaSocket))
                report.add(Figure(section: Self.ofrepSection, name: "\(kind.name), OFREP \(label)", unit: .microseconds, guidond: viaOFREP))
                report.add(Figure(
                    section: Self.ofrepSection, name: "\(kind.name), OFREP ÷ socket \(label)", unit: .ratio,
                    guidond: viaSocket > 0 ? viaOFREP / viaSocket : nil))
            }
        }
        report.add(Figure(section: Self.ofrepSection, name: "failed requests", unit: .count, guidond: Double(failures), goal: .atMost(0)))
    }

    /// The port of `--ofrep-listen 127.0.0.1:0`, from guidond's log.
    private func ofrepPort() throws -> Int {
        let marker = "serving OFREP on http://127.0.0.1:"
        let deadline = monotonicNanos() + 10_000_000_000
        while monotonicNanos() < deadline {
            for line in (readTextFile(launcher.directory.file("guidond.log")) ?? "").split(separator: "\n") {
                guard let start = line.firstRange(of: marker) else { continue }
                if let port = Int(line[start.upperBound...].prefix { $0.isNumber }) { return port }
            }
            sleepNanos(10_000_000)
        }
        throw BenchError.serverFailed("guidond did not log its OFREP port: \(readTextFile(launcher.directory.file("guidond.log")) ?? "")")
    }

    /// `POST /ofrep/v1/evaluate/flags[/key]` with the bench's context, on behalf of each user in turn.
    static func ofrepSpec(_ name: String, key: String?, evaluations: Int) -> RequestSpec {
        let lines = (0..<BenchFlags.users).map { user -> [UInt8] in
            let context = BenchFlags.onBehalf(of: user, ["op": "eval", "context": BenchFlags.context]).object?["context"] ?? [:]
            let body = JSONWriter.string(["context": context])
            let path = "/ofrep/v1/evaluate/flags" + (key.map { "/" + $0 } ?? "")
            return Array("POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        }
        return RequestSpec(
            name: name, lines: lines, framing: .http(failureMarkers: [Array(#""errorCode":""#.utf8)]), evaluationsPerReply: evaluations)
    }

    /// One request of `spec`, answered 200 with a value: OFREP works before it is measured.
    private func checkOFREP(port: Int, _ spec: RequestSpec) throws {
        let client = RoundTripClient(connected: try connectLoopback(port: port), request: spec, timeout: 10)
        client.run(for: 0.001)
        guard client.result.replies > 0, client.result.failures == 0 else {
            throw BenchError.unexpectedReply("OFREP did not answer \(String(decoding: spec.line.prefix(80), as: UTF8.self)) with a 200")
        }
    }
}
