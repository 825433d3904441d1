#if canImport(Glibc)
import Glibc
#endif
import GuidonJSON

/// The counting stage: what counting and exposure events cost, measured in one run against
/// guidond with counting off (`--no-metrics`), in alternating rounds.
///
/// Three guidond processes serve the same 200-flag file, in which the benchmarked (targeted)
/// flag asks for exposure events (`metadata.trackEvents`), so that every reply is the same
/// bytes: one with `--no-metrics`, one as shipped (counting on), one with counting and
/// `--events` (the 256 users of the bench are recorded once each, the rest are repeats within
/// the window, as an experiment's traffic is). Each round measures each of them in turn.
extension BenchSession {
    private static let countingSection = "counting: guidond counting off / on / on with exposure events, alternating"

    func measureCountingCost() throws {
        try checkGuidondExecutable()
        let config = launcher.directory.file("counting-flags.json")
        try writeFileAtomically(
            config, BenchFlags.file(count: Self.servedFlagCount, generation: 0, trackEvents: [BenchFlags.targetedKey]))
        let variants: [(name: String, arguments: [String])] = [
            ("off", ["--no-metrics"]),
            ("on", []),
            ("events", ["--events", launcher.directory.file("events.jsonl")]),
        ]
        var servers: [(name: String, process: ChildProcess, socket: String)] = []
        defer { for server in servers { server.process.stop() } }
        for variant in variants {
            let socket = launcher.directory.file("counting-\(variant.name).sock")
            progress("counting stage: starting guidond (\(variant.name))")
            let (process, _) = try launcher.startGuidond(config: config, socket: socket, extraArguments: variant.arguments)
            servers.append((variant.name, process, socket))
        }
        let request = guidondSpec("targeted", evalRequest(BenchFlags.targetedKey))
        let rounds = max(1, settings.countingRounds)

        // Latency: one connection each, in 20 ms slices taking turns.
        let latencyTiming = LoadTiming(warmup: settings.warmup, duration: settings.latencySeconds)
        var clients: [RoundTripClient?] = []
        for server in servers {
            let client = try? RoundTripClient(socket: server.socket, request: request, timeout: latencyTiming.drainTimeout)
            client?.run(for: latencyTiming.warmup, recording: false)
            clients.append(client)
        }
        let slices = max(1, Int((Double(rounds) * settings.countingSeconds / 0.02).rounded()))
        progress("counting stage: latency, \(slices) slices of 20 ms per server")
        for _ in 0..<slices {
            for client in clients { client?.run(for: 0.02) }
        }

        // Throughput: 16 connections × 16 in flight, each server once per round.
        let timing = LoadTiming(warmup: 0.05, duration: settings.countingSeconds)
        var totals = [LoadResult](repeating: LoadResult(), count: servers.count)
        var roundRatios: [[Double]] = [[], []]
        // The daemons' CPU time (user + system) during their loads: what a request costs them,
        // which time spent waiting for a core on a busy machine does not inflate.
        var cpuTicks = [Int](repeating: 0, count: servers.count)
        for round in 1...rounds {
            progress("counting stage: throughput 16 × 16, round \(round)/\(rounds)")
            var rates: [Double] = []
            // Rotate the order each round, so that no server always runs first.
            let order = (0..<servers.count).map { ($0 + round) % servers.count }
            var results = [LoadResult](repeating: LoadResult(), count: servers.count)
            for i in order {
                let before = Self.cpuTicks(servers[i].process.pid)
                results[i] = LoadClient.load(
                    socket: servers[i].socket, request: request, connections: 16, inFlight: 16,
                    threads: settings.clientThreads, timing: timing)
                cpuTicks[i] += Self.cpuTicks(servers[i].process.pid) - before
                totals[i].merge(results[i])
            }
            rates = results.map(\.repliesPerSecond)
            if rates[0] > 0 {
                roundRatios[0].append(rates[1] / rates[0])
                roundRatios[1].append(rates[2] / rates[0])
            }
        }

        let latency = clients.map { $0?.result.latency.quantile(0.5) ?? 0 }
        let off = totals[0].repliesPerSecond
        let section = Self.countingSection
        report.add(Figure(section: section, name: "16 × 16, 1 flag, counting off, requests", unit: .perSecond, guidond: off))
        report.add(Figure(
            section: section, name: "16 × 16, 1 flag, counting on, requests", unit: .perSecond, guidond: totals[1].repliesPerSecond,
            reference: off, goal: .referenceRatioAtLeast(0.97, reference: "off")))
        report.add(Figure(
            section: section, name: "16 × 16, 1 flag, counting + events, requests", unit: .perSecond,
            guidond: totals[2].repliesPerSecond, reference: off, goal: .referenceRatioAtLeast(0.90, reference: "off")))
        report.add(Figure(section: section, name: "throughput on ÷ off", unit: .ratio, guidond: ratio(totals[1].repliesPerSecond, off)))
        report.add(Figure(section: section, name: "throughput events ÷ off", unit: .ratio, guidond: ratio(totals[2].repliesPerSecond, off)))
        report.add(Figure(section: section, name: "p50, 1 connection, counting off", unit: .microseconds, guidond: micros(latency[0])))
        report.add(Figure(
            section: section, name: "p50, 1 connection, counting on", unit: .microseconds, guidond: micros(latency[1]),
            reference: micros(latency[0]), goal: .referenceRatioAtMost(1.02, reference: "off")))
        report.add(Figure(
            section: section, name: "p50, 1 connection, counting + events", unit: .microseconds, guidond: micros(latency[2]),
            reference: micros(latency[0]), goal: .referenceRatioAtMost(1.10, reference: "off")))
        report.add(Figure(section: section, name: "p50 on ÷ off", unit: .ratio, guidond: ratio(Double(latency[1]), Double(latency[0]))))
        report.add(Figure(section: section, name: "p50 events ÷ off", unit: .ratio, guidond: ratio(Double(latency[2]), Double(latency[0]))))
        // CPU per request: over the whole load (warm-up included), so divide by every reply sent.
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        let cpuPerRequest = zip(cpuTicks, totals).map { ticks, total -> Double in
            let requests = total.repliesPerSecond * total.seconds * (timing.warmup + timing.duration) / timing.duration
            return requests > 0 ? Double(ticks) / hz / requests * 1e6 : 0
        }
        report.add(Figure(section: section, name: "guidond CPU per request, counting off", unit: .microseconds, guidond: cpuPerRequest[0]))
        report.add(Figure(section: section, name: "guidond CPU per request, counting on", unit: .microseconds, guidond: cpuPerRequest[1]))
        report.add(Figure(section: section, name: "guidond CPU per request, counting + events", unit: .microseconds, guidond: cpuPerRequest[2]))
        report.add(Figure(section: section, name: "CPU per request on ÷ off", unit: .ratio, guidond: ratio(cpuPerRequest[1], cpuPerRequest[0])))
        report.add(Figure(section: section, name: "CPU per request events ÷ off", unit: .ratio, guidond: ratio(cpuPerRequest[2], cpuPerRequest[0])))
        let failures = totals.reduce(0) { $0 + $1.failures } + clients.reduce(0) { $0 + ($1?.result.failures ?? 1) }
        report.add(Figure(section: section, name: "failed requests", unit: .count, guidond: Double(failures), goal: .atMost(0)))
        for (name, ratios) in zip(["on ÷ off", "events ÷ off"], roundRatios) where !ratios.isEmpty {
            let sorted = ratios.sorted()
            let quartiles = (sorted[sorted.count / 4], sorted[sorted.count / 2], sorted[(3 * sorted.count) / 4])
            report.notes.append(
                "counting stage, throughput \(name) per round: median \(formatFixed(quartiles.1, 3)), "
                    + "quartiles \(formatFixed(quartiles.0, 3))–\(formatFixed(quartiles.2, 3)), "
                    + "range \(formatFixed(sorted.first!, 3))–\(formatFixed(sorted.last!, 3)) over \(sorted.count) rounds")
        }
        if let stats = try? exchange(socket: servers[2].socket, line: #"{"op":"stats"}"#) {
            report.notes.append("counting stage, events server: \(Self.eventSummary(stats))")
        }
    }

    private func ratio(_ a: Double, _ b: Double) -> Double? { b > 0 ? a / b : nil }

    /// utime + stime of `pid`, in clock ticks (`/proc/PID/stat` fields 14 and 15).
    static func cpuTicks(_ pid: pid_t) -> Int {
        guard let stat = readTextFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, so utime (14) and stime (15) are at 11 and 12.
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return 0 }
        return user + system
    }

    /// `written N, deduplicated N, dropped N` from a `stats` reply.
    private static func eventSummary(_ stats: String) -> String {
        guard case .object(let reply)? = try? JSONParser().parse(stats), case .object(let events)? = reply["exposureEvents"] else {
            return "no exposure-event counts in \(stats.prefix(200))"
        }
        func text(_ value: JSONValue?) -> String { value.map { JSONWriter.string($0) } ?? "?" }
        return "exposure events written \(text(events["written"])), repeats left out \(text(events["deduplicated"])), "
            + "dropped \(text(events["dropped"]))"
    }
}
