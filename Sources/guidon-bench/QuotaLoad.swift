import ArgumentParser
import GuidonQuota
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `guidon-bench quota-load`: an embedded quota store under load, reporting what it has
/// acknowledged, for the durability test that kills it with SIGKILL (GuidonQuotaTests).
///
/// Each of `--threads` threads consumes 1 on its own tenant's day limit as fast as it can; a
/// reporter prints `acked <CLOCK_MONOTONIC ns> <count>` every 10 ms, where `count` answers were
/// returned before that instant. A restart must find at least the count printed one second
/// before the kill.
struct QuotaLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quota-load",
        abstract: "Load an embedded quota store and report acknowledged counts (for kill -9 tests).",
        shouldDisplay: false
    )

    @Option(help: "The quota state directory.")
    var stateDir: String

    @Option(help: "Consuming threads.")
    var threads = 4

    @Option(help: "Stop cleanly after this many seconds (if not killed first).")
    var seconds = 60.0

    func run() throws {
        let store = EmbeddedQuotaStore(configuration: .init(stateDirectory: stateDir), logger: Logger(label: "quota-load"))
        try store.start()
        let acked = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
        let limits = [QuotaLimit(per: .day, max: QuotaLimit.maximumValue)]
        let workers = (0..<threads).map { t in
            PosixThread {
                let subject = QuotaSubject(feature: "load", tenant: "tenant-\(t)")
                while !stop.load(ordering: .relaxed) {
                    var ts = timespec()
                    clock_gettime(CLOCK_REALTIME, &ts)
                    let request = QuotaRequest(subject: subject, limits: limits, now: Int64(ts.tv_sec))
                    if (try? store.consume(request))?.allowed == true {
                        acked.wrappingAdd(1, ordering: .releasing)
                    }
                }
            }
        }
        let deadline = monotonicNanos() + UInt64(seconds * 1e9)
        while monotonicNanos() < deadline {
            // The count is read before the instant printed: every one of them was answered by then.
            let count = acked.load(ordering: .acquiring)
            let line = "acked \(monotonicNanos()) \(count)\n"
            _ = line.utf8CString.withUnsafeBufferPointer { write(1, $0.baseAddress, $0.count - 1) }
            sleepNanos(10_000_000)
        }
        stop.store(true, ordering: .relaxed)
        for worker in workers { worker.join() }
        store.shutdown()
        let line = "done \(acked.load(ordering: .acquiring))\n"
        _ = line.utf8CString.withUnsafeBufferPointer { write(1, $0.baseAddress, $0.count - 1) }
    }
}
