#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Stages 3 and 4: reloads (alone and under load), peak memory, and startup.
extension BenchSession {
    func measureReloads() throws {
        let section = "reload, \(formatGrouped(Double(settings.reloadFlags))) flags"
        try checkGuidondExecutable()
        let config = launcher.directory.file("reload.json")
        let socket = launcher.directory.file("reload.sock")
        let template = BenchFlags.FileTemplate(count: settings.reloadFlags)
        try writeFileAtomically(config, template.bytes(generation: 0))
        progress("starting guidond with \(settings.reloadFlags) flags")
        let (process, _) = try launcher.startGuidond(config: config, socket: socket)
        defer { process.stop() }
        guidond = process
        defer { guidond = nil }
        let loaded = try ping(socket: socket)
        if loaded.flags >= 0 && loaded.flags != settings.reloadFlags {
            report.notes.append("guidond reports \(loaded.flags) flags for a file of \(settings.reloadFlags)")
        }
        let loadedKiB = process.statusKiB("VmRSS")

        // Reload time, one rewrite at a time, no other load.
        var generation = 0
        var reloadTimes: [Double] = []
        var lostReloads = 0
        for sample in 1...settings.reloadSamples {
            progress("reload time \(sample)/\(settings.reloadSamples)")
            generation += 1
            let bytes = template.bytes(generation: generation)
            if let time = try timeReload(socket: socket, trigger: { try writeFileAtomicallyTimed(config, bytes) }) {
                reloadTimes.append(time)
            } else {
                lostReloads += 1
            }
        }

        // The worst case: every flag changes (new set-level metadata) and is compiled again.
        var everyFlagTimes: [Double] = []
        for sample in 1...settings.reloadSamples {
            progress("reload time, every flag changed \(sample)/\(settings.reloadSamples)")
            generation += 1
            let bytes = template.bytes(generation: generation, everyFlag: true)
            if let time = try timeReload(socket: socket, trigger: { try writeFileAtomicallyTimed(config, bytes) }) {
                everyFlagTimes.append(time)
            } else {
                lostReloads += 1
            }
        }

        // The same load with and without a rewrite every interval, in alternating rounds.
        let load = guidondSpec("reload load", evalRequest(BenchFlags.targetedKey))
        let timing = LoadTiming(warmup: settings.warmup, duration: settings.reloadSeconds)
        var steady = LoadResult()
        var storm = LoadResult()
        var writes = 0
        var applied = 0
        for round in 1...settings.rounds {
            progress("reload under load, round \(round)/\(settings.rounds): steady")
            steady.merge(LoadClient.load(
                socket: socket, request: load, connections: settings.reloadConnections, inFlight: 1,
                threads: settings.clientThreads, timing: timing))
            progress("reload under load, round \(round)/\(settings.rounds): rewriting every \(Int(settings.reloadInterval * 1000)) ms")
            let writer = StormWriter(
                config: config, socket: socket, template: template, firstGeneration: generation + 1,
                interval: settings.reloadInterval, duration: timing.warmup + timing.duration)
            let slot = ResultSlot<StormWriter.Outcome>()
            let thread = PosixThread { slot.value = writer.run() }
            storm.merge(LoadClient.load(
                socket: socket, request: load, connections: settings.reloadConnections, inFlight: 1,
                threads: settings.clientThreads, timing: timing))
            thread.join()
            let outcome = slot.value!
            generation = outcome.lastGeneration
            writes += outcome.writes
            applied += outcome.versionChanges
        }
        let peakKiB = process.statusKiB("VmHWM")
        let afterKiB = process.statusKiB("VmRSS")
        process.stop()
        let signalTimes = try measureSignalReloads(template: template, firstGeneration: generation + 1)

        let loadName = "\(settings.reloadConnections) connections × 1"
        report.add(Figure(section: section, name: "\(loadName), steady p50", unit: .microseconds, guidond: micros(steady.latency.quantile(0.5))))
        report.add(Figure(section: section, name: "\(loadName), steady p99", unit: .microseconds, guidond: micros(steady.latency.quantile(0.99))))
        report.add(Figure(section: section, name: "\(loadName), reload storm p50", unit: .microseconds, guidond: micros(storm.latency.quantile(0.5))))
        report.add(Figure(
            section: section, name: "\(loadName), reload storm p99", unit: .microseconds,
            guidond: micros(storm.latency.quantile(0.99)), reference: micros(steady.latency.quantile(0.99)),
            goal: .referenceRatioAtMost(2, reference: "steady")))
        report.add(Figure(section: section, name: "\(loadName), steady, requests", unit: .perSecond, guidond: steady.repliesPerSecond))
        report.add(Figure(section: section, name: "\(loadName), reload storm, requests", unit: .perSecond, guidond: storm.repliesPerSecond))
        report.add(Figure(
            section: section, name: "failed requests (steady + storm)", unit: .count,
            guidond: Double(steady.failures + storm.failures), goal: .atMost(0)))
        report.add(Figure(section: section, name: "rewrites during storms", unit: .count, guidond: Double(writes)))
        report.add(Figure(section: section, name: "configVersion changes seen during storms", unit: .count, guidond: Double(applied)))
        let sorted = reloadTimes.sorted()
        report.add(Figure(
            section: section, name: "reload time p50 (rename → ping sees new version)", unit: .milliseconds,
            guidond: sorted.isEmpty ? nil : sorted[(sorted.count - 1) / 2], goal: .atMost(100)))
        report.add(Figure(section: section, name: "reload time max", unit: .milliseconds, guidond: sorted.last))
        let everyFlagSorted = everyFlagTimes.sorted()
        report.add(Figure(
            section: section, name: "reload time p50, every flag changed (rename → ping sees new version)", unit: .milliseconds,
            guidond: everyFlagSorted.isEmpty ? nil : everyFlagSorted[(everyFlagSorted.count - 1) / 2], goal: .atMost(100)))
        let signalSorted = signalTimes.sorted()
        report.add(Figure(
            section: section, name: "reload time p50 (SIGHUP → ping sees new version, --no-watch)", unit: .milliseconds,
            guidond: signalSorted.isEmpty ? nil : signalSorted[(signalSorted.count - 1) / 2]))
        report.add(Figure(
            section: section, name: "rewrites never picked up (5 s)", unit: .count, guidond: Double(lostReloads), goal: .atMost(0)))
        report.add(Figure(
            section: section, name: "RSS once loaded (VmRSS)", unit: .mebibytes, guidond: loadedKiB.map { Double($0) / 1024 }))
        report.add(Figure(
            section: section, name: "peak RSS (VmHWM)", unit: .mebibytes,
            guidond: peakKiB.map { Double($0) / 1024 }, goal: .atMost(64)))
        report.add(Figure(
            section: section, name: "RSS after the reloads (VmRSS)", unit: .mebibytes, guidond: afterKiB.map { Double($0) / 1024 }))
    }

    /// Runs `trigger` (which returns the instant it made the change) and pings until the
    /// configVersion changes; returns the milliseconds in between, `nil` after 5 s.
    private func timeReload(socket: String, trigger: () throws -> UInt64) throws -> Double? {
        let fd = try connectUnix(socket)
        defer { close(fd) }
        let before = try ping(fd: fd).configVersion
        let start = try trigger()
        defer { sleepNanos(150_000_000) }
        while monotonicNanos() - start < 5_000_000_000 {
            if try ping(fd: fd).configVersion != before {
                return Double(monotonicNanos() - start) / 1e6
            }
            sleepNanos(250_000)
        }
        return nil
    }

    /// Reload times without the file watcher: a guidond started with `--no-watch` gets the
    /// new file, then SIGHUP. Compared with the inotify figure this shows the debounce.
    private func measureSignalReloads(template: BenchFlags.FileTemplate, firstGeneration: Int) throws -> [Double] {
        let config = launcher.directory.file("reload-signal.json")
        let socket = launcher.directory.file("reload-signal.sock")
        try writeFileAtomically(config, template.bytes(generation: firstGeneration))
        let (process, _) = try launcher.startGuidond(config: config, socket: socket, extraArguments: ["--no-watch"])
        defer { process.stop() }
        var times: [Double] = []
        for sample in 1...settings.reloadSamples {
            progress("reload time via SIGHUP \(sample)/\(settings.reloadSamples)")
            try writeFileAtomically(config, template.bytes(generation: firstGeneration + sample))
            let time = try timeReload(socket: socket) {
                let now = monotonicNanos()
                kill(process.pid, SIGHUP)
                return now
            }
            if let time { times.append(time) }
        }
        return times
    }

    func measureStartup() throws {
        let section = "startup, spawn → first answered ping"
        try checkGuidondExecutable()
        let files = [(10, launcher.directory.file("startup-10.json")), (settings.reloadFlags, launcher.directory.file("startup-large.json"))]
        for (count, path) in files { try writeFileAtomically(path, BenchFlags.file(count: count, generation: 0)) }
        var times = [Int: [Double]]()
        for run in 1...settings.startupRuns {
            progress("startup \(run)/\(settings.startupRuns)")
            for (count, path) in files {
                let socket = launcher.directory.file("startup.sock")
                let (process, nanos) = try launcher.startGuidond(config: path, socket: socket)
                process.stop()
                times[count, default: []].append(Double(nanos) / 1e6)
            }
        }
        for (count, _) in files {
            let sorted = times[count]!.sorted()
            report.add(Figure(
                section: section, name: "\(formatGrouped(Double(count))) flags, median of \(sorted.count)", unit: .milliseconds,
                guidond: sorted[(sorted.count - 1) / 2], goal: count == 10 ? .atMost(50) : nil))
            report.add(Figure(
                section: section, name: "\(formatGrouped(Double(count))) flags, max", unit: .milliseconds, guidond: sorted.last))
        }
    }
}

/// Rewrites the flag file every `interval` (atomic rename) for `duration`, pinging once
/// before each rewrite to count the configVersion changes guidond has applied.
private struct StormWriter: Sendable {
    struct Outcome {
        var writes = 0
        var versionChanges = 0
        var lastGeneration = 0
    }

    let config: String
    let socket: String
    let template: BenchFlags.FileTemplate
    let firstGeneration: Int
    let interval: Double
    let duration: Double

    func run() -> Outcome {
        var outcome = Outcome(lastGeneration: firstGeneration - 1)
        let start = monotonicNanos()
        let end = start + UInt64(duration * 1e9)
        let step = UInt64(interval * 1e9)
        let fd = try? connectUnix(socket)
        defer { if let fd { close(fd) } }
        var lastVersion = fd.flatMap { try? ping(fd: $0).configVersion }
        var next = start
        while next < end {
            let now = monotonicNanos()
            if now < next { sleepNanos(next - now) }
            if let fd, let version = try? ping(fd: fd).configVersion {
                if let lastVersion, version != lastVersion { outcome.versionChanges += 1 }
                lastVersion = version
            }
            outcome.lastGeneration += 1
            if (try? writeFileAtomically(config, template.bytes(generation: outcome.lastGeneration))) != nil {
                outcome.writes += 1
            }
            next += step
        }
        return outcome
    }
}

/// Writes the file and returns the monotonic time of the `rename` that made it visible.
private func writeFileAtomicallyTimed(_ path: String, _ bytes: [UInt8]) throws -> UInt64 {
    let temporary = path + ".next"
    try writeFileAtomically(temporary, bytes)
    let time = monotonicNanos()
    guard rename(temporary, path) == 0 else { throw SystemError("rename(\(temporary), \(path))") }
    return time
}
