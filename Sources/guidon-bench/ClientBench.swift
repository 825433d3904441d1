import ArgumentParser
import GuidonClient
import GuidonJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `guidon-bench client`: what the Swift client library costs over the bench's raw POSIX client,
/// on one guidond, in alternating rounds.
struct ClientBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client",
        abstract: "Measure GuidonClient (the Swift client library) against the bench's raw POSIX client.",
        discussion: """
            Starts guidond (from the same build directory unless --guidond or --socket is given) on the \
            bench's 200-flag file and evaluates its static flag on behalf of 256 users, with the same \
            request for both clients: 1 task with 1 request in flight, then N tasks sharing one \
            client (its requests pipelined on --pool-size connections) against the raw client keeping \
            N requests in flight on one connection. The raw client sends prepared bytes and only \
            finds line ends in the replies; the library encodes each request, parses each reply into \
            a result, and crosses between the calling task and its event loop twice per call.
            """
    )

    @Option(help: "Attach to a guidond already listening here (serving `guidon-bench write-flags` output).")
    var socket: String?

    @Option(help: "The guidond executable (default: next to guidon-bench).")
    var guidond: String?

    @Option(help: "Alternating rounds (default 3, --quick 1).")
    var rounds: Int?

    @Option(help: "Seconds per measurement per round (default 1, --quick 0.3).")
    var seconds: Double?

    @Option(help: "Concurrent tasks (and raw requests in flight) for the pipelined measurement.")
    var tasks: Int = 16

    @Option(help: "Connections in the client's pool.")
    var poolSize: Int = 1

    @Flag(help: "A short smoke run.")
    var quick = false

    func validate() throws {
        guard tasks >= 1, poolSize >= 1 else { throw ValidationError("--tasks and --pool-size must be at least 1") }
    }

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        let rounds = rounds ?? (quick ? 1 : 3)
        let seconds = seconds ?? (quick ? 0.3 : 1)
        let warmup = quick ? 0.05 : 0.2
        let loadBefore = Machine.loadAverage()

        let directory = try TemporaryDirectory(prefix: "guidon-bench-client")
        defer { directory.remove() }
        var daemon: ChildProcess?
        defer { daemon?.stop() }
        let path: String
        if let socket {
            path = socket
        } else {
            let launcher = ServerLauncher(
                directory: directory, guidond: guidond ?? executableDirectory() + "/guidond", guidondArguments: [])
            let config = directory.file("flags.json")
            try writeFileAtomically(config, BenchFlags.file(count: BenchSession.servedFlagCount, generation: 0))
            path = directory.file("guidond.sock")
            progress("starting \(launcher.guidond)")
            (daemon, _) = try launcher.startGuidond(config: config, socket: path)
        }

        // The same request both ways: eval of the static flag, on behalf of each user in turn.
        let contexts: [JSONObject] = (0..<BenchFlags.users).map { user in
            BenchFlags.onBehalf(of: user, ["context": BenchFlags.context]).object?["context"]?.object ?? [:]
        }
        let rawLines = contexts.map { context in
            Array((JSONWriter.string(["op": "eval", "flag": .string(BenchFlags.staticKey), "context": .object(context)]) + "\n").utf8)
        }
        let rawSpec = RequestSpec(name: "raw", lines: rawLines, framing: BenchSession.guidondFraming)

        let client = GuidonClient(configuration: GuidonClientConfiguration(socket: path, timeout: .seconds(2), poolSize: poolSize))
        let rawSequential = try RoundTripClient(socket: path, request: rawSpec, timeout: 2)
        rawSequential.run(for: warmup, recording: false)
        _ = await Self.drive(client, tasks: tasks, seconds: warmup, contexts: contexts)

        var clientSequential = LoadResult()
        var clientPipelined = LoadResult()
        var rawPipelined = LoadResult()
        // This process's CPU time in each measurement (all its threads: the callers, the event
        // loops, the raw client's): what a round trip costs the application, whatever the wait.
        var cpu = [Double](repeating: 0, count: 4)
        progress("\(rounds) rounds of 4 measurements × \(seconds) s")
        for _ in 0..<rounds {
            var mark = processCPUSeconds()
            func lap(_ index: Int) {
                let now = processCPUSeconds()
                cpu[index] += now - mark
                mark = now
            }
            rawSequential.run(for: seconds)
            lap(0)
            clientSequential.merge(await Self.drive(client, tasks: 1, seconds: seconds, contexts: contexts))
            lap(1)
            rawPipelined.merge(LoadClient.load(
                socket: path, request: rawSpec, connections: 1, inFlight: tasks, threads: 1,
                timing: LoadTiming(warmup: 0, duration: seconds, drainTimeout: 2)))
            lap(2)
            clientPipelined.merge(await Self.drive(client, tasks: tasks, seconds: seconds, contexts: contexts))
            lap(3)
        }
        await client.shutdown()

        let rows: [(String, LoadResult, LoadResult)] = [
            ("1 task, 1 request in flight", rawSequential.result, clientSequential),
            ("\(tasks) tasks pipelining", rawPipelined, clientPipelined),
        ]
        var lines = ["guidon-bench client: eval of \(BenchFlags.staticKey) over \(path)", ""]
        lines.append(pad("", 34) + pad("raw POSIX", 14) + pad("GuidonClient", 14) + "client/raw")
        for (name, raw, library) in rows {
            lines.append(pad(name, 34) + pad(formatRate(raw.repliesPerSecond), 14) + pad(formatRate(library.repliesPerSecond), 14)
                + formatFixed(library.repliesPerSecond / max(raw.repliesPerSecond, 1), 2))
        }
        let micros = { (value: UInt64) in formatFixed(Double(value) / 1000, 1) + " µs" }
        let cpuPerCall = { (index: Int, result: LoadResult) in
            formatFixed(cpu[index] * 1e6 / Double(max(result.replies, 1)), 1) + " µs"
        }
        for (index, (name, raw, library)) in rows.enumerated() {
            let rawCPU = cpu[index * 2] / Double(max(raw.replies, 1))
            let libraryCPU = cpu[index * 2 + 1] / Double(max(library.replies, 1))
            lines.append(pad("  CPU per call, " + (index == 0 ? "1 task" : name), 34) + pad(cpuPerCall(index * 2, raw), 14)
                + pad(cpuPerCall(index * 2 + 1, library), 14) + formatFixed(libraryCPU / max(rawCPU, 1e-12), 2))
        }
        for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
            let raw = rawSequential.result.latency.quantile(q), library = clientSequential.latency.quantile(q)
            lines.append(pad("  1 task, round trip \(label)", 34) + pad(micros(raw), 14) + pad(micros(library), 14)
                + formatFixed(Double(library) / Double(max(raw, 1)), 2))
        }
        let failures = rows.reduce(UInt64(0)) { $0 + $1.1.failures + $1.2.failures }
        lines.append("")
        lines.append("pipelining: the raw client keeps \(tasks) requests in flight on 1 connection; "
            + "the library's \(tasks) tasks share a pool of \(poolSize)")
        lines.append("failed requests: \(failures)")
        lines.append("command: \(CommandLine.arguments.joined(separator: " "))")
        lines.append("load average (1 min) before \(loadBefore), after \(Machine.loadAverage()); "
            + "\(Machine.current().processors) × \(Machine.current().cpuModel)")
        print(lines.joined(separator: "\n"))
    }

    /// `tasks` tasks calling `evaluate` back to back for `seconds`; round trips timed per call.
    private static func drive(_ client: GuidonClient, tasks: Int, seconds: Double, contexts: [JSONObject]) async -> LoadResult {
        let start = monotonicNanos()
        let end = start + UInt64(seconds * 1e9)
        var total = await withTaskGroup(of: LoadResult.self) { group in
            for task in 0..<tasks {
                group.addTask {
                    var result = LoadResult()
                    var user = task * 37
                    while true {
                        let sent = monotonicNanos()
                        if sent >= end { break }
                        let answer = await client.evaluate(BenchFlags.staticKey, context: contexts[user % contexts.count])
                        let now = monotonicNanos()
                        if answer.clientError != nil || answer.reason == .error { result.errorReplies += 1 }
                        result.replies += 1
                        result.latency.record(now - sent)
                        user += 1
                    }
                    return result
                }
            }
            var total = LoadResult()
            for await part in group { total.merge(part) }
            return total
        }
        total.seconds = Double(monotonicNanos() - start) / 1e9
        return total
    }
}

/// User and system CPU time of this process so far.
private func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

private func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
}

private func formatRate(_ perSecond: Double) -> String {
    var digits = String(Int(perSecond.rounded()))
    var grouped = ""
    while digits.count > 3 {
        grouped = "," + digits.suffix(3) + grouped
        digits.removeLast(3)
    }
    return digits + grouped + "/s"
}
