import Foundation
@testable import GuidonQuota
import Testing

/// The `guidon-bench` built next to this test bundle (or `$GUIDON_BENCH_BIN`).
func guidonBenchPath() throws -> String {
    if let explicit = ProcessInfo.processInfo.environment["GUIDON_BENCH_BIN"] { return explicit }
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    let candidate = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("guidon-bench").path
    guard FileManager.default.isExecutableFile(atPath: candidate) else {
        throw TestFailure("guidon-bench not found at \(candidate); run `swift build --product guidon-bench` first or set GUIDON_BENCH_BIN")
    }
    return candidate
}

func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

@Suite("Embedded quota store: kill -9 under load")
struct KillDurabilityTests {
    @Test("after kill -9 under load, a restart has every count acknowledged more than one second before the kill")
    func killUnderLoad() throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let state = scratch.file("state")
        let log = scratch.file("load.log")
        let threads = 4
        var before: Int64 = 0  // what the rounds before left
        for round in 0..<2 {
            // Round 0 starts empty; round 1 starts from what round 0 left (snapshot-less log replay).
            let pid = try spawnChild(try guidonBenchPath(), ["quota-load", "--state-dir", state, "--threads", String(threads), "--seconds", "60"], log: log)
            // Let it run under load for 2.5 s (at least 1 s of history before the kill).
            let started = monotonicNanos()
            while monotonicNanos() - started < 2_500_000_000 {
                guard childIsRunning(pid) else { throw TestFailure("quota-load exited early: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")") }
                usleep(50_000)
            }
            let killedAt = monotonicNanos()
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)

            let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
            var ackedSecondBefore = 0
            var ackedAtKill = 0
            for line in lines where line.hasPrefix("acked ") {
                let parts = line.split(separator: " ")
                guard parts.count == 3, let at = UInt64(parts[1]), let count = Int(parts[2]) else { continue }
                if at <= killedAt - 1_000_000_000 { ackedSecondBefore = max(ackedSecondBefore, count) }
                if at <= killedAt { ackedAtKill = max(ackedAtKill, count) }
            }
            #expect(ackedSecondBefore > 1000, "round \(round): the load acknowledged only \(ackedSecondBefore) a second before the kill")

            // Restart on the same state directory and add up every tenant's count.
            let store = EmbeddedQuotaStore(configuration: .init(stateDirectory: state), logger: quietLogger)
            try store.start()
            var recovered: Int64 = 0
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            for t in 0..<threads {
                let status = try store.usage(QuotaUsageRequest(
                    subject: QuotaSubject(feature: "load", tenant: "tenant-\(t)"),
                    limits: [QuotaLimit(per: .day, max: QuotaLimit.maximumValue)], now: Int64(ts.tv_sec)))
                recovered += status[0].used ?? 0
            }
            store.shutdown()
            // Counts of the rounds add up: this round's are on top of what the last one left.
            let gained = Int(recovered - before)
            print("kill -9 round \(round): acknowledged \(ackedSecondBefore) a second before the kill and \(ackedAtKill) by it; recovered \(gained)")
            #expect(gained >= ackedSecondBefore,
                    "round \(round): recovered \(gained), but \(ackedSecondBefore) were acknowledged a second before the kill (\(ackedAtKill) by the kill)")
            // Nothing is invented: at most what was acknowledged by the last report before the
            // kill, plus what could be answered between that report and the kill.
            #expect(gained <= ackedAtKill + ackedAtKill / 20 + 10_000, "round \(round): recovered \(gained) > acknowledged \(ackedAtKill)")
            before = recovered
            try? FileManager.default.removeItem(atPath: log)
        }
    }
}
