import GuidonJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Stage `entitlements-admin`: one-tenant overrides through the admin socket on issue 13's
/// entitlements document (100,000 tenants, 30 features, 3 plans, an override on one tenant in
/// ten: `EngineBench.entitlementsDocument`). Write → served: from sending `entitlements.enable`
/// (or `disable`) until the reply is in, then checked on the query socket — `ping` reports the
/// new `entitlementsVersion` and an `eval` of the feature for that tenant answers the new value.
/// Then the query path's p99 (4 connections × 1, evaluating a feature for tenants in turn) with
/// and without 2 writes per second, in alternating slices.
extension BenchSession {
    func measureEntitlementsWrites() throws {
        let tenants = settings.entitlementsTenants
        let section = "entitlements admin writes, \(formatGrouped(Double(tenants))) tenants"
        try checkGuidondExecutable()
        let flags = launcher.directory.file("ent-flags.json")
        let document = launcher.directory.file("entitlements.json")
        let socket = launcher.directory.file("ent-query.sock")
        let adminSocket = launcher.directory.file("ent-admin.sock")
        try writeFileAtomically(flags, BenchFlags.file(count: 100, generation: 0))
        let bytes = EngineBench.entitlementsDocument(tenants: tenants)
        try writeFileAtomically(document, bytes)
        progress("starting guidond with \(tenants) tenants (\(bytes.count / 1024) KiB) and an admin socket")
        unlink(adminSocket)
        let (process, _) = try launcher.startGuidond(
            config: flags, socket: socket,
            extraArguments: [
                "--entitlements", document, "--admin-socket", adminSocket, "--audit-log", launcher.directory.file("ent-audit.jsonl"),
            ])
        defer { process.stop() }

        // A tenant on "growth" (which grants feature-12) without an override of its own: the
        // writes turn feature-12 off and on for it with an override.
        let tenant = EngineBench.tenantID(tenants / 2 + 1)
        let feature = "feature-12"
        let writer = try EntitlementsWriter(socket: adminSocket, tenant: tenant, feature: feature)
        let query = try connectUnix(socket)
        defer { close(query) }
        let eval = #"{"op":"eval","flag":"\#(feature)","context":{"targetingKey":"u","tenantId":"\#(tenant)"}}"#
        var times: [Double] = []
        var stale = 0
        var failed = 0
        for sample in 1...settings.adminSamples {
            progress("write → served \(sample)/\(settings.adminSamples)")
            let started = monotonicNanos()
            guard let (revision, enabled) = writer.write() else {
                failed += 1
                continue
            }
            times.append(Double(monotonicNanos() - started) / 1e6)
            // Read your writes: once the reply is in, the query socket serves the new version.
            let served = try exchange(fd: query, line: #"{"op":"ping"}"#)
            let answer = try exchange(fd: query, line: eval)
            if !served.contains(#""entitlementsVersion":"\#(revision)""#) || !answer.contains(#""value":\#(enabled)"#) { stale += 1 }
            sleepNanos(50_000_000)
        }

        // Reads with and without 2 writes a second, in alternating slices (see the admin stage).
        let lines = (0..<256).map { i in
            Array((#"{"op":"eval","flag":"feature-\#(String(format2: 1 + i % 29))","context":{"targetingKey":"u","tenantId":"\#(EngineBench.tenantID((i &* 7919) % tenants))"}}"# + "\n").utf8)
        }
        let load = RequestSpec(name: "entitlements load", lines: lines, framing: Self.guidondFraming)
        let slices = 4
        let timing = LoadTiming(warmup: settings.warmup, duration: settings.reloadSeconds / Double(slices))
        var steady = LoadResult()
        var writing = LoadResult()
        var writes = 0
        var writeFailures = failed
        for round in 1...(settings.rounds * slices) {
            progress("reads with and without 2 writes/s, slice \(round)/\(settings.rounds * slices)")
            let steadyFirst = round % 2 == 1
            for phase in steadyFirst ? [false, true] : [true, false] {
                if phase {
                    let slot = ResultSlot<(Int, Int)>()
                    let thread = PosixThread { slot.value = writer.trickle(perSecond: 2, seconds: timing.warmup + timing.duration) }
                    writing.merge(LoadClient.load(
                        socket: socket, request: load, connections: settings.reloadConnections, inFlight: 1,
                        threads: settings.clientThreads, timing: timing))
                    thread.join()
                    writes += slot.value!.0
                    writeFailures += slot.value!.1
                } else {
                    steady.merge(LoadClient.load(
                        socket: socket, request: load, connections: settings.reloadConnections, inFlight: 1,
                        threads: settings.clientThreads, timing: timing))
                }
            }
        }
        let peakKiB = process.statusKiB("VmHWM")

        let sorted = times.sorted()
        func quantile(_ q: Double) -> Double? { sorted.isEmpty ? nil : sorted[Int((Double(sorted.count - 1) * q).rounded())] }
        report.add(Figure(
            section: section, name: "1-tenant override: write → served p50", unit: .milliseconds, guidond: quantile(0.5),
            goal: .atMost(100)))
        report.add(Figure(section: section, name: "write → served p90", unit: .milliseconds, guidond: quantile(0.9)))
        report.add(Figure(section: section, name: "write → served max", unit: .milliseconds, guidond: sorted.last))
        report.add(Figure(
            section: section, name: "answered before the new version was served", unit: .count, guidond: Double(stale), goal: .atMost(0)))
        let loadName = "\(settings.reloadConnections) connections × 1"
        report.add(Figure(section: section, name: "\(loadName), steady p99", unit: .microseconds, guidond: micros(steady.latency.quantile(0.99))))
        report.add(Figure(
            section: section, name: "\(loadName), 2 writes/s p99", unit: .microseconds,
            guidond: micros(writing.latency.quantile(0.99)), reference: micros(steady.latency.quantile(0.99)),
            goal: .referenceRatioAtMost(1.5, reference: "steady")))
        report.add(Figure(section: section, name: "writes during the loads", unit: .count, guidond: Double(writes)))
        report.add(Figure(
            section: section, name: "failed requests and writes", unit: .count,
            guidond: Double(steady.failures + writing.failures) + Double(writeFailures), goal: .atMost(0)))
        report.add(Figure(section: section, name: "peak RSS (VmHWM)", unit: .mebibytes, guidond: peakKiB.map { Double($0) / 1024 }))
    }
}

extension String {
    /// Two digits at least: 7 → "07".
    fileprivate init(format2 n: Int) {
        self = n < 10 ? "0\(n)" : "\(n)"
    }
}

/// Overrides of one feature for one tenant through the admin socket, off and on in turn, each
/// based on the revision the last reply named.
private final class EntitlementsWriter: @unchecked Sendable {  // used by one thread at a time
    private let fd: Int32
    private var revision: String
    private var enabled = true
    private let tenant: String
    private let feature: String

    init(socket: String, tenant: String, feature: String) throws {
        fd = try connectUnix(socket)
        self.tenant = tenant
        self.feature = feature
        let reply = try exchange(fd: fd, line: #"{"op":"entitlements.get"}"#, timeout: 30)
        guard case .object(let object)? = try? JSONParser().parse(reply), let revision = object["revision"]?.string else {
            throw BenchError.unexpectedReply("entitlements.get: \(reply.prefix(200))")
        }
        self.revision = revision
    }

    deinit { close(fd) }

    /// One write; the new revision and the feature's new value, or `nil` when it was refused.
    func write() -> (String, Bool)? {
        enabled.toggle()
        let request: JSONValue = [
            "op": .string(enabled ? "entitlements.enable" : "entitlements.disable"), "tenant": .string(tenant),
            "feature": .string(feature), "ifRevision": .string(revision), "by": "guidon-bench", "reason": "benchmark",
        ]
        guard let reply = try? exchange(fd: fd, line: JSONWriter.string(request), timeout: 30),
            case .object(let object)? = try? JSONParser().parse(reply), object["ok"] == .bool(true),
            let revision = object["revision"]?.string
        else {
            progress("entitlements write refused")
            return nil
        }
        self.revision = revision
        return (revision, enabled)
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
