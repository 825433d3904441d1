import Dispatch
@testable import GuidonServer
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Watchdog")
struct WatchdogTests {
    /// Polls until `condition` holds (generous timeout: only a broken watchdog waits it out).
    func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<1000 {
            if condition() { return true }
            usleep(10_000)
        }
        return false
    }

    @Test func petsOnlyWhileEveryEventLoopIsAlive() throws {
        let loops = try (0..<3).map { try EventLoop(name: "test-loop-\($0)") }
        for loop in loops { loop.start() }
        defer { for loop in loops { loop.stop() } }
        let pets = Counter()
        let watchdog = try #require(Watchdog(loops: loops, interval: .milliseconds(20)) { pets.increment() })
        watchdog.start()
        defer { watchdog.stop() }
        #expect(eventually { pets.value >= 3 }, "pets while all loops are idle")

        // Wedge one loop: the round in flight cannot complete, so pets stop.
        let release = DispatchSemaphore(value: 0)
        let wedged = DispatchSemaphore(value: 0)
        loops[2].execute {
            wedged.signal()
            release.wait()
        }
        wedged.wait()
        let atWedge = pets.value
        usleep(300_000)  // 15 intervals
        #expect(pets.value <= atWedge + 1, "at most the round already past loop 2 completes")

        release.signal()
        let atRelease = pets.value
        #expect(eventually { pets.value >= atRelease + 3 }, "pets resume once the loop is free")
    }

    @Test func noIntervalNoWatchdog() throws {
        let loop = try EventLoop(name: "test-loop")
        #expect(Watchdog(loops: [loop], interval: nil) == nil)
        #expect(Watchdog(loops: [], interval: .seconds(1)) == nil)
    }
}

final class Counter: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func increment() { count.withLock { $0 += 1 } }
}
