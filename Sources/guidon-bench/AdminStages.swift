import GuidonJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Stage 4: writes through the admin socket on a 10,000-flag file. How long a write takes until it
/// is answered (and so served: the reply comes after the new version is published), and what a
/// steady trickle of writes (10 per second) costs the query path: its p99 and its 16 × 16
/// throughput, each next to the same load without writes, in alternating rounds.
extension BenchSession {
    func measureAdminWrites() throws {
        let section = "admin writes, \(formatGrouped(Double(settings.reloadFlags))) flags"
        try checkGuidondExecutable()
        let config = launcher.directory.file("admin.json")
        let socket = launcher.directory.file("admin-query.sock")
        let adminSocket = launcher.directory.file("admin.sock")
        try writeFileAtomically(config, BenchFlags.file(count: settings.reloadFlags, generation: 0))
        progress("starting guidond with \(settings.reloadFlags) flags and an admin socket")
        unlink(adminSocket)
        let (process, _) = try launcher.startGuidond(
            config: config, socket: socket,
            extraArguments: ["--admin-socket", adminSocket, "--audit-log", launcher.directory.file("audit.jsonl")])
        defer { process.stop() }

        // Write → answered, one write at a time, nothing else running.
        let writer = try AdminWriter(socket: adminSocket)
        let query = try connectUnix(socket)
        defer { close(query) }
        var times: [Double] = []
        var stale = 0
        var failed = 0
        for sample in 1...settings.adminSamples {
            progress("write → answered \(sample)/\(settings.adminSamples)")
            let started = monotonicNanos()
            guard let revision = writer.write() else {
                failed += 1
                continue
            }
            times.append(Double(monotonicNanos() - started) / 1e6)
            // Read your writes: the query socket serves the new version as soon as the reply is in.
            if try ping(fd: query).configVersion != revision { stale += 1 }
            sleepNanos(20_000_000)
        }

        // The query path with and without 10 writes per second, in alternating slices (four per
        // round) short enough that both see the same machine: on a shared machine, conditions change
        // from second to second.
        let load = guidondSpec("admin load", evalRequest(BenchFlags.targetedKey))
        let slices = 4
        let latencyTiming = LoadTiming(warmup: settings.warmup, duration: settings.reloadSeconds / Double(slices))
        let throughputTiming = LoadTiming(warmup: settings.warmup, duration: settings.adminThroughputSeconds / Double(slices))
        var steady = LoadResult()
        var writing = LoadResult()
        var steadyThroughput = LoadResult()
        var writingThroughput = LoadResult()
        var writes = 0
        var writeFailures = failed
        func withWrites<T>(for seconds: Double, _ body: () -> T) -> T {
            let slot = ResultSlot<(Int, Int)>()
            let thread = PosixThread { slot.value = writer.trickle(perSecond: 10, seconds: seconds) }
            let result = body()
            thread.join()
            writes += slot.value!.0
            writeFailures += slot.value!.1
            return result
        }
        for round in 1...(settings.rounds * slices) {
            progress("reads with and without 10 writes/s, slice \(round)/\(settings.rounds * slices)")
            // Which goes first alternates too, so that neither always follows the other.
            let steadyFirst = round % 2 == 1
            for phase in steadyFirst ? [false, true] : [true, false] {
                if phase {
                    writing.merge(withWrites(for: latencyTiming.warmup + latencyTiming.duration) {
                        LoadClient.load(
                            socket: socket, request: load, connections: settings.reloadConnections, inFlight: 1,
                            threads: settings.clientThreads, timing: latencyTiming)
                    })
                } else {
                    steady.merge(LoadClient.load(
                        socket: socket, request: load, connections: settings.reloadConnections, inFlight: 1,
                        threads: settings.clientThreads, timing: latencyTiming))
                }
            }
            for phase in steadyFirst ? [false, true] : [true, false] {
                if phase {
                    writingThroughput.merge(withWrites(for: throughputTiming.warmup + throughputTiming.duration) {
                        LoadClient.load(
                            socket: socket, request: load, connections: 16, inFlight: 16, threads: settings.clientThreads, timing: throughputTiming)
                    })
                } else {
                    steadyThroughput.merge(LoadClient.load(
                        socket: socket, request: load, connections: 16, inFlight: 16, threads: settings.clientThreads, timing: throughputTiming))
                }
            }
        }
        let peakKiB = process.statusKiB("VmHWM")

        let sorted = times.sorted()
        func quantile(_ q: Double) -> Double? { sorted.isEmpty ? nil : sorted[Int((Double(sorted.count - 1) * q).rounded())] }
        report.add(Figure(
            section: section, name: "write → answered (new version served) p50", unit: .milliseconds,
            guidond: quantile(0.5), goal: .atMost(30)))
        report.add(Figure(section: section, name: "write → answered p90", unit: .milliseconds, guidond: quantile(0.9)))
        report.add(Figure(section: section, name: "write → answered max", unit: .milliseconds, guidond: sorted.last))
        report.add(Figure(
            section: section, name: "answered before the new version was served", unit: .count, guidond: Double(stale), goal: .atMost(0)))
        let loadName = "\(settings.reloadConnections) connections × 1"
        report.add(Figure(section: section, name: "\(loadName), steady p99", unit: .microseconds, guidond: micros(steady.latency.quantile(0.99))))
        report.add(Figure(
            section: section, name: "\(loadName), 10 writes/s p99", unit: .microseconds,
            guidond: micros(writing.latency.quantile(0.99)), reference: micros(steady.latency.quantile(0.99)),
            goal: .referenceRatioAtMost(1.2, reference: "steady")))
        report.add(Figure(section: section, name: "16 × 16, steady, requests", unit: .perSecond, guidond: steadyThroughput.repliesPerSecond))
        report.add(Figure(
            section: section, name: "16 × 16, 10 writes/s, requests", unit: .perSecond,
            guidond: writingThroughput.repliesPerSecond, reference: steadyThroughput.repliesPerSecond,
            goal: .referenceRatioAtLeast(0.9, reference: "steady")))
        report.add(Figure(section: section, name: "writes during the loads", unit: .count, guidond: Double(writes)))
        report.add(Figure(
            section: section, name: "failed requests and writes", unit: .count,
            guidond: Double(steady.failures + writing.failures + steadyThroughput.failures + writingThroughput.failures) + Double(writeFailures),
            goal: .atMost(0)))
        report.add(Figure(section: section, name: "peak RSS (VmHWM)", unit: .mebibytes, guidond: peakKiB.map { Double($0) / 1024 }))
    }
}

/// Writes through the admin socket: rollouts of one flag, each based on the revision the last
/// reply named.
private final class AdminWriter: @unchecked Sendable {  // used by one thread at a time (the stage, then its trickle thread)
    private let fd: Int32
    private var revision: String
    private var percentage = 3
    /// A filler flag with a two-bucket rollout (see `BenchFlags`).
    private let flag = BenchFlags.fillerKey(3)

    init(socket: String) throws {
        fd = try connectUnix(socket)
        let reply = try exchange(fd: fd, line: #"{"op":"flags.get"}"#)
        guard case .object(let object)? = try? JSONParser().parse(reply), let revision = object["revision"]?.string else {
            throw BenchError.unexpectedReply("flags.get: \(reply.prefix(200))")
        }
        self.revision = revision
    }

    deinit { close(fd) }

    /// One write; the new revision, or `nil` when it was refused.
    func write() -> String? {
        percentage = percentage % 97 + 1
        let request: JSONValue = [
            "op": "flags.rollout", "flag": .string(flag), "percentage": .int(Int64(percentage)), "ifRevision": .string(revision),
            "by": "guidon-bench",
        ]
        guard let reply = try? exchange(fd: fd, line: JSONWriter.string(request)),
            case .object(let object)? = try? JSONParser().parse(reply), object["ok"] == .bool(true),
            let revision = object["revision"]?.string
        else { return nil }
        self.revision = revision
        return revision
    }

    /// `perSecond` writes a second for `seconds`; returns (writes, refusals).
    func trickle(perSecond: Int, seconds: Double) -> (Int, Int) {
        let step = UInt64(1e9 / Double(perSecond))
        let end = monotonicNanos() + UInt64(seconds * 1e9)
        var next = monotonicNanos()
        var writes = 0
        var failures = 0
        while next < end {
            let now = monotonicNanos()
            if now < next { sleepNanos(next - now) }
            if write() != nil { writes += 1 } else { failures += 1 }
            next += step
        }
        return (writes, failures)
    }
}
