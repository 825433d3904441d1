import ArgumentParser
import CAllocCounter
import GuidonQuota
import GuidonRESP
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `guidon-bench quota`: the quota stores in-process, and the Redis store against a bare
/// `EVALSHA` of the same script to the same Redis, in one run.
struct QuotaBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quota",
        abstract: "Measure the quota stores (build with -c release).",
        discussion: """
            embedded: consume in-process (ns and allocations per call), 1 thread and 2 threads, with the \
            default 64 striped locks and with 1 lock (the same run). windows: calendar-window arithmetic. \
            durability: the flusher's cost per flush, state sizes, recovery time from the snapshot and from \
            the log alone. redis: a consume through the Redis store (round trip to the caller's thread) \
            against a bare EVALSHA of the same script from this benchmark's own blocking client, \
            alternating rounds, on a private redis-server.
            """
    )

    @Option(help: "Calls per timed run (in-process stages).")
    var iterations = 500_000

    @Option(help: "Timed runs per scenario; the median is reported.")
    var runs = 5

    @Option(help: "Counts written before measuring a flush and recovery.")
    var keys = 100_000

    @Option(help: "Round trips per round (redis stage).")
    var requests = 10_000

    @Option(help: "Alternating rounds (redis stage).")
    var rounds = 4

    @Option(help: "The embedded store's flush interval in the embedded stage, in ms (0: no flush while measuring).")
    var flushIntervalMs = 200

    @Option(help: "Stages, comma-separated: embedded, windows, durability, redis.")
    var stages = "embedded,windows,durability,redis"

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let wanted = Set(stages.split(separator: ",").map(String.init))
        let directory = try TemporaryDirectory(prefix: "guidon-quota-bench")
        defer { removeTree(directory.path) }
        var load = [0.0, 0.0, 0.0]
        _ = getloadavg(&load, 3)
        print("guidon-bench quota (load average \(fmt(load[0], 2)) \(fmt(load[1], 2)) \(fmt(load[2], 2)))\n")
        if wanted.contains("embedded") { try embedded(directory) }
        if wanted.contains("windows") { try windows() }
        if wanted.contains("durability") { try durability(directory) }
        if wanted.contains("redis") { try redis(directory) }
    }

    // MARK: - Embedded

    static let limits = [QuotaLimit(per: .day, max: QuotaLimit.maximumValue, scope: .user), QuotaLimit(per: .month, max: QuotaLimit.maximumValue)]

    /// Now, by the wall clock (the stores drop windows that ended by it).
    static func request(tenant: String, user: String = "user-4217") -> QuotaRequest {
        QuotaRequest(subject: QuotaSubject(feature: "video_generation", tenant: tenant, user: user), limits: limits,
                     now: EmbeddedQuotaStore.wallClock())
    }

    func embedded(_ directory: TemporaryDirectory) throws {
        print("embedded consume, 2 limits (day per user, month per tenant), in-process, \(iterations) calls × \(runs) runs (median);"
            + " flusher every \(flushIntervalMs == 0 ? "hour (idle)" : "\(flushIntervalMs) ms")")
        print(pad("scenario", 44) + pad("ns/call", 10, right: true) + pad("allocs/call", 13, right: true))
        for stripes in [64, 1] {
            let interval: Duration = flushIntervalMs == 0 ? .seconds(3600) : .milliseconds(flushIntervalMs)
            let store = EmbeddedQuotaStore(configuration: .init(stateDirectory: directory.file("embedded-\(stripes)"), stripes: stripes, flushInterval: interval),
                                           logger: Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() })
            try store.start()
            defer { store.shutdown() }
            let label = stripes == 1 ? "1 lock" : "\(stripes) striped locks"
            let single = Self.request(tenant: "tenant-42")
            report("1 thread, \(label)", median { n, allocs in
                counting(allocs) { for _ in 0..<n { _ = try? store.consume(single) } }
            })
            // Two threads at once, each on its own tenant (two loops serving different tenants).
            let requests = [Self.request(tenant: "tenant-a"), Self.request(tenant: "tenant-b")]
            report("2 threads, 2 tenants, \(label)", median { n, allocs in
                _ = onThreads(2) { t in
                    counting(allocs) { for _ in 0..<n { _ = try? store.consume(requests[t]) } }
                }
            })
            let users = [Self.request(tenant: "tenant-42", user: "user-0"), Self.request(tenant: "tenant-42", user: "user-1")]
            report("2 threads, 1 tenant, 2 users, \(label)", median { n, allocs in
                _ = onThreads(2) { t in
                    counting(allocs) { for _ in 0..<n { _ = try? store.consume(users[t]) } }
                }
            })
        }
        print("(2 threads: wall time per call of one thread; both run at once. Allocations: the calling threads' own, not the flusher's)\n")
    }

    /// Median nanoseconds and allocations per call of `body(iterations)`; `body` adds the
    /// allocations of its calling threads to the counter it is given.
    func median(_ body: (Int, AllocationTally) -> Void) -> (Double, Double) {
        let allocs = AllocationTally()
        body(min(iterations, 20_000), allocs)  // warm-up: tables grown, code paged in
        var times: [Double] = []
        var allocations: [Double] = []
        for _ in 0..<runs {
            allocs.value.store(0, ordering: .relaxed)
            let start = monotonicNanos()
            body(iterations, allocs)
            times.append(Double(monotonicNanos() - start) / Double(iterations))
            allocations.append(Double(allocs.value.load(ordering: .relaxed)) / Double(iterations))
        }
        return (times.sorted()[runs / 2], allocations.sorted()[runs / 2])
    }

    /// Runs `body` and adds the allocations it made on this thread to `counter`.
    func counting(_ counter: AllocationTally, _ body: () -> Void) {
        let before = guidon_thread_alloc_count()
        body()
        counter.value.wrappingAdd(guidon_thread_alloc_count() - before, ordering: .relaxed)
    }

    func report(_ name: String, _ m: (Double, Double)) {
        print(pad(name, 44) + pad(fmt(m.0, 1), 10, right: true) + pad(guidon_alloc_counting() != 0 ? fmt(m.1, 3) : "n/a", 13, right: true))
    }

    // MARK: - Windows

    func windows() throws {
        print("calendar windows (ns/call, \(iterations) calls × \(runs) runs, median)")
        let berlin = try TimeZoneRules.load("Europe/Berlin")
        let t: Int64 = 1_781_524_800
        for (name, zone) in [("UTC", TimeZoneRules.utc), ("Europe/Berlin", berlin)] {
            for unit in [WindowUnit.day, .month] {
                var sink: Int64 = 0
                let m = median { n, allocs in
                    counting(allocs) { for i in 0..<n { sink &+= zone.window(unit, containing: t &+ Int64(i & 1023)).end } }
                }
                if sink == 42 { print("") }
                report("\(name) \(unit)", m)
            }
        }
        // Beyond the zone file's table (the footer's POSIX rule, computed per call).
        var sink: Int64 = 0
        let late = median { n, allocs in
            counting(allocs) { for i in 0..<n { sink &+= berlin.window(.day, containing: 5_370_000_000 &+ Int64(i & 1023)).end } }
        }
        if sink == 42 { print("") }
        report("Europe/Berlin day, year 2140 (rule)", late)
        print("")
    }

    // MARK: - Durability

    func durability(_ directory: TemporaryDirectory) throws {
        print("embedded durability: \(keys) consumes of distinct tenants, 2 limits each")
        for sync in [true, false] { try durability(directory, sync: sync) }
        print("")
    }

    func durability(_ directory: TemporaryDirectory, sync: Bool) throws {
        let quiet = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }
        let path = directory.file("durable-\(sync)")
        let store = EmbeddedQuotaStore(configuration: .init(stateDirectory: path, flushInterval: .seconds(3600), sync: sync, compactAfterBytes: Int.max), logger: quiet)
        try store.start()
        // One flush of everything the loops counted since the last one.
        var flushTimes: [Double] = []
        for batch in 0..<5 {
            for i in 0..<(keys / 5) { _ = try? store.consume(Self.request(tenant: "tenant-\(batch * keys / 5 + i)")) }
            let start = monotonicNanos()
            store.flushNow()
            flushTimes.append(Double(monotonicNanos() - start) / 1e6)
        }
        let logBytes = fileSize(path + "/quota.log")
        print("  flush of \(keys / 5) consumes (\(keys / 5 * 2) count records, \(logBytes / 5 / 1024) KiB) \(sync ? "with" : "without") fdatasync: "
            + "median \(fmt(flushTimes.sorted()[2], 2)) ms (\(flushTimes.map { fmt($0, 1) }.joined(separator: ", ")))")
        guard sync else {
            store.shutdown()
            return
        }
        // The log as a kill -9 leaves it, without a snapshot: replayed at start.
        let crashed = directory.file("crashed")
        mkdir(crashed, 0o700)
        try writeFileAtomically(crashed + "/quota.log", readFile(path + "/quota.log") ?? [])
        store.shutdown()
        let snapshotBytes = fileSize(path + "/quota.snapshot")
        for (name, dir, bytes) in [("snapshot", path, snapshotBytes), ("log only (after kill -9)", crashed, logBytes)] {
            var times: [Double] = []
            for _ in 0..<3 {
                let again = EmbeddedQuotaStore(configuration: .init(stateDirectory: dir), logger: quiet)
                let start = monotonicNanos()
                try again.start()
                times.append(Double(monotonicNanos() - start) / 1e6)
                again.shutdown()
            }
            print("  recovery from the \(name), \(bytes / 1024) KiB: median \(fmt(times.sorted()[1], 1)) ms")
        }
    }

    // MARK: - Redis

    func redis(_ directory: TemporaryDirectory) throws {
        let launcher = ServerLauncher(directory: directory, guidond: "", guidondArguments: [])
        let socket = directory.file("redis.sock")
        guard let server = try launcher.startRedis(socket: socket) else {
            print("redis: redis-server not installed, skipped")
            return
        }
        defer { server.stop() }
        let store = try RedisQuotaStore(configuration: .init(address: .unix(path: socket), timeout: .seconds(1)),
                                        logger: Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() })
        store.start()
        defer { store.shutdown() }
        let request = Self.request(tenant: "tenant-42")
        let command = store.scriptCommand(for: request)

        // The bare round trip: this process's own blocking client, one EVALSHA at a time.
        let fd = try connectUnix(socket)
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let parser = RESPParser()
        func bare() -> UInt64 {
            let start = monotonicNanos()
            try? sendAll(fd, command)
            var have = 0
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + have, $0.count - have, 0) }
                if n <= 0 { fatalError("redis closed the bench's connection") }
                have += n
                let done = buffer.withUnsafeBytes { raw in (try? parser.parse(UnsafeRawBufferPointer(rebasing: raw[0..<have]))) != nil }
                if done { break }
            }
            return monotonicNanos() - start
        }
        // Through the store: the answer comes back on the store's thread and is handed over a
        // pipe, as the daemon will hand it to its event loop.
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw SystemError("pipe") }
        defer { close(pipeFDs[0]); close(pipeFDs[1]) }
        let writeEnd = pipeFDs[1]
        let degraded = Atomic<Int>(0)
        func viaStore() -> UInt64 {
            let start = monotonicNanos()
            store.consume(request) { result in
                if case .success(let answer) = result, answer.degraded { degraded.wrappingAdd(1, ordering: .relaxed) }
                var one: UInt8 = 1
                _ = write(writeEnd, &one, 1)
            }
            var byte: UInt8 = 0
            while read(pipeFDs[0], &byte, 1) < 0 && errno == EINTR {}
            return monotonicNanos() - start
        }
        for _ in 0..<1000 {
            _ = bare()
            _ = viaStore()
        }
        var bareHistogram = LatencyHistogram()
        var storeHistogram = LatencyHistogram()
        var storeAllocations: UInt64 = 0
        for _ in 0..<rounds {
            for _ in 0..<requests { bareHistogram.record(bare()) }
            let allocs = guidon_alloc_count()
            for _ in 0..<requests { storeHistogram.record(viaStore()) }
            storeAllocations += guidon_alloc_count() - allocs
        }
        print("redis: consume round trip, 1 in flight, \(rounds) alternating rounds × \(requests) (µs)")
        print(pad("", 34) + pad("p50", 9, right: true) + pad("p90", 9, right: true) + pad("p99", 9, right: true))
        for (name, h) in [("bare EVALSHA (bench's own client)", bareHistogram), ("RedisQuotaStore.consume", storeHistogram)] {
            print(pad(name, 34) + [0.5, 0.9, 0.99].map { pad(fmt(Double(h.quantile($0)) / 1000, 1), 9, right: true) }.joined())
        }
        let ratio = Double(storeHistogram.quantile(0.5)) / Double(bareHistogram.quantile(0.5))
        print("store p50 / bare p50 = \(fmt(ratio, 2)) (daemon target ≤ 1.3 once wired); "
            + "allocations per store consume: \(fmt(Double(storeAllocations) / Double(rounds * requests), 1)); degraded: \(degraded.load(ordering: .relaxed))\n")
    }
}

/// Allocations made by the measured threads.
final class AllocationTally: Sendable {
    let value = Atomic<UInt64>(0)
}

private func fmt(_ d: Double, _ decimals: Int) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (d * scale).rounded()
    let whole = Int((scaled / scale).rounded(.towardZero))
    let fraction = Int(abs(scaled).truncatingRemainder(dividingBy: scale))
    let digits = String(fraction)
    return decimals == 0 ? "\(whole)" : "\(whole)." + String(repeating: "0", count: decimals - digits.count) + digits
}

private func fileSize(_ path: String) -> Int {
    var st = stat()
    return stat(path, &st) == 0 ? Int(st.st_size) : 0
}

/// Removes a directory tree (the bench's state directories are one level deep at most).
private func removeTree(_ path: String) {
    guard let dir = opendir(path) else { unlink(path); return }
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name == "." || name == ".." { continue }
        let child = path + "/" + name
        if entry.pointee.d_type == UInt8(DT_DIR) { removeTree(child) } else { unlink(child) }
    }
    closedir(dir)
    rmdir(path)
}
