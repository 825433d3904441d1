import Atomics
#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import GuidonSystemd

/// Something that runs tasks on its own thread: an event loop, for the watchdog.
protocol TaskRunner: Sendable {
    func execute(_ task: @escaping @Sendable () -> Void)
}

extension EventLoop: TaskRunner {}

/// Pets systemd's watchdog at half the interval it asked for, but only after a no-op task
/// has run on every event loop: a wedged loop stops the pings and systemd restarts us.
///
/// `@unchecked Sendable`: the timer is configured in `init`/`start`/`stop`, which the daemon
/// calls from its main thread; afterwards only its own queue touches it.
final class Watchdog: @unchecked Sendable {
    private let loops: [any TaskRunner]
    private let queue = DispatchQueue(label: "guidon.watchdog")
    private let timer: any DispatchSourceTimer
    private let roundInFlight = ManagedAtomic(false)
    private let pet: @Sendable () -> Void

    /// `nil` when no interval was asked for. `pet` sends `WATCHDOG=1` (replaceable for tests).
    init?(loops: [any TaskRunner], interval: Duration?, pet: @escaping @Sendable () -> Void = { SystemdNotifier.watchdog() }) {
        guard let interval, !loops.isEmpty else { return nil }
        self.loops = loops
        self.pet = pet
        timer = DispatchSource.makeTimerSource(queue: queue)
        let half = interval / 2
        let microseconds = Int(half.components.seconds * 1_000_000 + half.components.attoseconds / 1_000_000_000_000)
        timer.schedule(deadline: .now(), repeating: .microseconds(max(microseconds, 1000)))
    }

    func start() {
        timer.setEventHandler { [self] in round() }
        timer.resume()
    }

    /// Stops the pings. Call it before shutting the event loops down: it waits (up to `grace`)
    /// for a round still travelling through the loops, whose tasks would otherwise be dropped
    /// by loops that have shut down.
    func stop(grace: Duration = .seconds(2)) {
        timer.cancel()
        queue.sync {}  // a round being started has finished submitting
        let deadline = ContinuousClock.now + grace
        while roundInFlight.load(ordering: .acquiring) && ContinuousClock.now < deadline {
            usleep(1_000)
        }
    }

    private func round() {
        guard roundInFlight.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return  // the last round has not come back: some loop is stuck, so no ping.
        }
        let outstanding = ManagedAtomic(loops.count)
        for loop in loops {
            loop.execute { [roundInFlight, pet] in
                guard outstanding.wrappingDecrementThenLoad(ordering: .acquiringAndReleasing) == 0 else { return }
                pet()
                roundInFlight.store(false, ordering: .releasing)
            }
        }
    }
}
