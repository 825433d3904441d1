import GuidonJSON

#if canImport(Glibc)
import Glibc
#endif

/// The `entitlements` stage: guidond serving the bench's flags and an entitlements file of issue
/// 13's scale (100,000 tenants, 30 features, 3 plans, an override on one tenant in ten; the
/// engine bench's generator): socket latency of a feature against the floor, the reload of one
/// changed tenant, and guidond's memory.
extension BenchSession {
    static let entitlementsTenants = 100_000

    func measureEntitlements() throws {
        let section = "entitlements, \(formatGrouped(Double(Self.entitlementsTenants))) tenants"
        try checkGuidondExecutable()
        let config = launcher.directory.file("ent-flags.json")
        let document = launcher.directory.file("entitlements.json")
        let socket = launcher.directory.file("ent.sock")
        let floorPath = launcher.directory.file("ent-floor.sock")
        try writeFileAtomically(config, BenchFlags.file(count: Self.servedFlagCount, generation: 0))
        try writeFileAtomically(document, EngineBench.entitlementsDocument(tenants: Self.entitlementsTenants))
        progress("starting guidond with \(Self.servedFlagCount) flags and \(Self.entitlementsTenants) tenants")
        let (process, startNanos) = try launcher.startGuidond(config: config, socket: socket, extraArguments: ["--entitlements", document])
        defer { process.stop() }
        let loadedKiB = process.statusKiB("VmRSS")
        let startupHWM = process.statusKiB("VmHWM")

        // Latency: the floor, a static flag and two features on the same daemon, taking turns.
        let tenant = EngineBench.tenantID(5)  // starter, active
        func featureRequest(_ key: String) -> JSONValue {
            ["op": "eval", "flag": .string(key), "context": ["targetingKey": "user-4217", "tenantId": .string(tenant), "tier": "gold"]]
        }
        let staticLine = Self.text(evalRequest(BenchFlags.staticKey))
        let floor = try launcher.startFloor(socket: floorPath, reply: try exchange(socket: socket, line: staticLine))
        defer { floor.stop() }
        let timing = LoadTiming(warmup: settings.warmup, duration: settings.latencySeconds)
        let floorSpec = RequestSpec(name: "floor", line: Array((staticLine + "\n").utf8), framing: Self.guidondFraming)
        let kinds = [
            guidondSpec("static flag", evalRequest(BenchFlags.staticKey)),
            guidondSpec("feature, boolean (plan grant)", featureRequest("feature-01")),
            guidondSpec("feature, configuration (plan grant)", featureRequest("feature-02")),
            guidondSpec("feature, unknown tenant", ["op": "eval", "flag": "feature-01", "context": ["tenantId": "nobody"]]),
            guidondSpec("entitlements op (30 features)", ["op": "entitlements", "tenant": .string(tenant)]),
        ]
        var clients: [(name: String, client: RoundTripClient?)] = [
            ("floor", try? RoundTripClient(socket: floorPath, request: floorSpec, timeout: timing.drainTimeout))
        ]
        for kind in kinds {
            clients.append((kind.name, try? RoundTripClient(socket: socket, request: kind, timeout: timing.drainTimeout)))
        }
        for (_, client) in clients { client?.run(for: timing.warmup, recording: false) }
        let slice = 0.02
        let slices = max(1, Int((Double(settings.rounds) * timing.duration / slice).rounded()))
        progress("entitlements latency: \(slices) slices of \(Int(slice * 1000)) ms per target, \(clients.count) targets in turn")
        for _ in 0..<slices {
            for (_, client) in clients { client?.run(for: slice) }
        }
        let floorResult = clients[0].client?.result ?? LoadResult()
        for (index, (name, client)) in clients.enumerated().dropFirst() {
            let result = client?.result ?? LoadResult()
            for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
                report.add(Figure(
                    section: section, name: "\(name) \(label)", unit: .microseconds,
                    guidond: micros(result.latency.quantile(q)), floor: micros(floorResult.latency.quantile(q)),
                    goal: index <= 3 && label == "p50" ? .floorRatioAtMost(1.3) : nil))
            }
            report.add(Figure(section: section, name: "\(name), failed requests", unit: .count, guidond: Double(result.failures), goal: .atMost(0)))
        }

        // The reload of one changed tenant: rename → ping shows the new entitlementsVersion.
        var times: [Double] = []
        for sample in 1...settings.reloadSamples {
            progress("entitlements reload, one tenant changed \(sample)/\(settings.reloadSamples)")
            let bytes = EngineBench.entitlementsDocument(tenants: Self.entitlementsTenants, changing: sample * 997 % Self.entitlementsTenants)
            if let time = try timeEntitlementsReload(socket: socket, document: document, bytes: bytes) { times.append(time) }
        }
        let peakKiB = process.statusKiB("VmHWM")
        let afterKiB = process.statusKiB("VmRSS")
        let sorted = times.sorted()
        report.add(Figure(
            section: section, name: "startup (spawn → first answer)", unit: .milliseconds, guidond: Double(startNanos) / 1e6))
        report.add(Figure(
            section: section, name: "reload p50, one tenant changed (rename → ping sees new entitlementsVersion)", unit: .milliseconds,
            guidond: sorted.isEmpty ? nil : sorted[(sorted.count - 1) / 2], goal: .atMost(100)))
        report.add(Figure(section: section, name: "reload max", unit: .milliseconds, guidond: sorted.last))
        report.add(Figure(
            section: section, name: "reloads never seen (5 s)", unit: .count, guidond: Double(settings.reloadSamples - times.count), goal: .atMost(0)))
        report.add(Figure(section: section, name: "RSS once loaded (VmRSS)", unit: .mebibytes, guidond: loadedKiB.map { Double($0) / 1024 }))
        report.add(Figure(section: section, name: "peak RSS at startup (VmHWM)", unit: .mebibytes, guidond: startupHWM.map { Double($0) / 1024 }))
        report.add(Figure(
            section: section, name: "peak RSS after the reloads (VmHWM)", unit: .mebibytes, guidond: peakKiB.map { Double($0) / 1024 },
            goal: .atMost(96)))
        report.add(Figure(section: section, name: "RSS after the reloads (VmRSS)", unit: .mebibytes, guidond: afterKiB.map { Double($0) / 1024 }))
    }

    /// Replaces `document` with `bytes` and pings until the entitlements version changes; the
    /// milliseconds from the rename, `nil` after 5 s.
    private func timeEntitlementsReload(socket: String, document: String, bytes: [UInt8]) throws -> Double? {
        let fd = try connectUnix(socket)
        defer { close(fd) }
        func version() throws -> String? {
            let text = try exchange(fd: fd, line: #"{"op":"ping"}"#)
            return (try? JSONParser().parse(text))?.object?["entitlementsVersion"]?.string
        }
        let before = try version()
        let temporary = document + ".tmp"
        try writeFileAtomically(temporary, bytes)
        let start = monotonicNanos()
        guard rename(temporary, document) == 0 else { throw SystemError("rename") }
        defer { sleepNanos(150_000_000) }
        while monotonicNanos() - start < 5_000_000_000 {
            if try version() != before { return Double(monotonicNanos() - start) / 1e6 }
            sleepNanos(250_000)
        }
        return nil
    }
}
