import ArgumentParser
import GuidonJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `guidon-bench daemon`: guidond over its socket, next to an echo floor and Redis, in one run.
struct DaemonBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Measure guidond over its Unix socket against an echo floor and Redis GET.",
        discussion: """
            Starts guidond (from the same build directory unless --guidond is given) on a generated flag \
            file, an echo server (the floor: the cheapest possible reply) and, when installed, a private \
            redis-server, and measures all three with the same client, in alternating rounds. \
            Stages: latency (1 connection, 1 request in flight), throughput (connections × requests in \
            flight), reload (p99 while a 10,000-flag file is rewritten every 100 ms, reload time, RSS once loaded, at its peak and after), \
            admin (write → answered through the admin socket on the 10,000-flag file; reads and 16 × 16 throughput with and \
            without 10 writes per second), startup (spawn to first answered ping) and counting (guidond with counting off, on, \
            and on with exposure events for the benchmarked flag, alternating: what counting costs) and ofrep (the same flags \
            through OFREP over a keep-alive HTTP connection and through the Unix socket, taking turns: their p50 side by side) \
            and consume (usage limits: consume through guidond with the embedded store and with Redis, against the floor \
            and a bare EVALSHA of the same script; 16 × 16 against the floor). \
            Not in the default: entitlements (guidond with 100,000 tenants) and entitlements-admin (write → served of a \
            one-tenant override through the admin socket on the 100,000-tenant file; reads with and without 2 writes per second).
            """
    )

    @Option(help: "Attach to a guidond already listening here (serving `guidon-bench write-flags` output) instead of starting one. Runs latency and throughput only.")
    var socket: String?

    @Option(help: "The guidond executable (default: next to guidon-bench).")
    var guidond: String?

    @Option(name: .customLong("guidond-arg"), parsing: .unconditionalSingleValue, help: "An extra argument for guidond (repeatable).")
    var guidondArguments: [String] = []

    @Flag(help: "A ~20 s smoke run: one short round of everything.")
    var quick = false

    @Option(help: "Alternating rounds per measurement (default 4, --quick 1).")
    var rounds: Int?

    @Option(help: "Seconds per latency measurement per round (default 0.6, --quick 0.3).")
    var latencySeconds: Double?

    @Option(help: "Seconds per throughput measurement per round (default 0.35, --quick 0.15).")
    var throughputSeconds: Double?

    @Option(help: "Warm-up seconds before each measurement, not counted (default 0.15, --quick 0.05).")
    var warmupSeconds: Double?

    @Option(help: "Connection counts for the throughput stage.")
    var connections: String = "1,4,16,64"

    @Option(help: "Requests in flight per connection for the throughput stage.")
    var inFlight: String = "1,16"

    @Option(help: "Client threads (poll loops) for the throughput stage.")
    var clientThreads: Int = 1

    @Option(help: "Flags in the file the reload stage rewrites.")
    var reloadFlags: Int = 10_000

    @Option(help: "Milliseconds between rewrites during a reload storm.")
    var reloadIntervalMs: Int = 100

    @Option(help: "Connections (1 request in flight each) loading guidond during the reload stage.")
    var reloadConnections: Int = 4

    @Option(help: "Seconds per steady / storm phase per round (default 2, --quick 1).")
    var reloadSeconds: Double?

    @Option(help: "Rewrites timed one by one, without load (default 10, --quick 3).")
    var reloadSamples: Int?

    @Option(help: "guidond starts per flag file in the startup stage (default 7, --quick 2).")
    var startupRuns: Int?

    @Option(help: "Writes timed one by one in the admin stage (default 30, --quick 8).")
    var adminSamples: Int?

    @Option(help: "Seconds per 16 × 16 throughput phase per round in the admin stage (default 1, --quick 0.5).")
    var adminThroughputSeconds: Double?

    @Option(help: "Tenants in the entitlements document of the entitlements-admin stage.")
    var entitlementsTenants: Int = 100_000

    @Option(help: "Stages to run, comma-separated: latency, throughput, reload, admin, startup, counting, ofrep, consume, entitlements, entitlements-admin (the last two not in the default).")
    var stages: String = "latency,throughput,reload,admin,startup,counting,ofrep,consume"
    @Option(help: "Alternating rounds of the counting stage (default 24, --quick 4).")
    var countingRounds: Int?

    @Option(help: "Seconds per server per round of the counting stage's throughput (default 0.25, after 0.05 of warm-up).")
    var countingSeconds: Double = 0.25

    @Flag(help: "Skip the Redis baseline even when redis-server is installed.")
    var noRedis = false

    @Flag(help: "Print the results as JSON on standard output (the table goes to standard error).")
    var json = false

    func validate() throws {
        guard clientThreads >= 1 else { throw ValidationError("--client-threads must be at least 1") }
        guard reloadFlags >= 4 else { throw ValidationError("--reload-flags must be at least 4") }
        guard !integerList(connections).isEmpty, !integerList(inFlight).isEmpty else {
            throw ValidationError("--connections and --in-flight take comma-separated positive integers")
        }
        guard entitlementsTenants >= 10 else { throw ValidationError("--entitlements-tenants must be at least 10") }
        let known: Set = ["latency", "throughput", "reload", "admin", "startup", "counting", "ofrep", "consume", "entitlements", "entitlements-admin"]
        for stage in stageList where !known.contains(stage) {
            throw ValidationError("unknown stage '\(stage)' (known: latency, throughput, reload, admin, startup, counting, ofrep, consume, entitlements, entitlements-admin)")
        }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let settings = BenchSettings(
            rounds: rounds ?? (quick ? 1 : 4),
            warmup: warmupSeconds ?? (quick ? 0.05 : 0.15),
            latencySeconds: latencySeconds ?? (quick ? 0.3 : 0.6),
            throughputSeconds: throughputSeconds ?? (quick ? 0.15 : 0.35),
            connections: integerList(connections),
            inFlight: integerList(inFlight),
            clientThreads: clientThreads,
            reloadFlags: reloadFlags,
            reloadInterval: Double(reloadIntervalMs) / 1000,
            reloadConnections: reloadConnections,
            reloadSeconds: reloadSeconds ?? (quick ? 1 : 2),
            reloadSamples: reloadSamples ?? (quick ? 3 : 10),
            startupRuns: startupRuns ?? (quick ? 2 : 7),
            adminSamples: adminSamples ?? (quick ? 8 : 30),
            adminThroughputSeconds: adminThroughputSeconds ?? (quick ? 0.5 : 1),
            entitlementsTenants: entitlementsTenants,
            stages: Set(stageList),
            redis: !noRedis,
            countingRounds: countingRounds ?? (quick ? 4 : 24),
            countingSeconds: countingSeconds
        )
        let directory = try TemporaryDirectory(prefix: "guidon-bench")
        defer { directory.remove() }
        let session = BenchSession(
            settings: settings,
            launcher: ServerLauncher(
                directory: directory,
                guidond: guidond ?? executableDirectory() + "/guidond",
                guidondArguments: guidondArguments),
            attachTo: socket)
        defer { session.stopAll() }
        let loadBefore = Machine.loadAverage()
        var report = try session.run()
        report.command = CommandLine.arguments.joined(separator: " ")
        report.notes.append("load average (1 min) before the run \(loadBefore), after \(Machine.loadAverage())")

        let machine = Machine.current()
        let table = "guidon-bench on \(machine.processors) × \(machine.cpuModel)\n" + report.table() + "\n"
        if json {
            printError(table)
            print(JSONWriter.string(report.json(machine: machine)))
        } else {
            print(table)
        }
    }

    private var stageList: [String] {
        stages.split(separator: ",").map { $0.trimmingCharacters(in: " ") }
    }

    private func integerList(_ text: String) -> [Int] {
        let values = text.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: " ")) }
        return values.allSatisfy { $0 > 0 } ? values : []
    }
}

struct BenchSettings {
    var rounds: Int
    var warmup: Double
    var latencySeconds: Double
    var throughputSeconds: Double
    var connections: [Int]
    var inFlight: [Int]
    var clientThreads: Int
    var reloadFlags: Int
    var reloadInterval: Double
    var reloadConnections: Int
    var reloadSeconds: Double
    var reloadSamples: Int
    var startupRuns: Int
    var adminSamples: Int
    var adminThroughputSeconds: Double
    var entitlementsTenants: Int = 100_000
    var stages: Set<String>
    var redis: Bool
    var countingRounds: Int = 24
    var countingSeconds: Double = 0.25
}

func printError(_ text: String) {
    let bytes = Array((text + "\n").utf8)
    bytes.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count {
            let n = write(2, raw.baseAddress! + offset, raw.count - offset)
            if n <= 0 { return }
            offset += n
        }
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: Character) -> String {
        String(drop { $0 == set }.reversed().drop { $0 == set }.reversed())
    }
}
