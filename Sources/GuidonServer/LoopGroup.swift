import Atomics

/// The event loops that serve the socket, and where their connections live.
///
/// One loop answers every connection while that keeps up; the others join only while it is
/// saturated with work that pays for a second core, and hand their connections back when it
/// stops. With one request in flight per connection (an application's workers asking one
/// question each and waiting), a request costs a wake-up of the loop that answers it: one loop
/// wakes once for every connection that is ready, while loops that split the connections
/// wake for theirs separately, on cores that the clients share, for no more work done. With
/// many requests in flight, 16-flag batches or `evalAll`, a ready connection brings tens of
/// microseconds of work, and a second core doubles what can be answered.
///
/// The first loop decides to *spread* (move every other connection to another loop, and deal
/// new ones out in turn), every `window` of its own time, when in `spreadWindows` windows in a
/// row its thread used at least `spreadBusy` of the window in CPU time (CPU time, so that a loop
/// preempted on a busy machine does not look busy), a ready connection took it at least
/// `spreadWork` of CPU time on average, and at least `spreadTogether` connections were ready
/// per wake-up (one busy connection gains nothing from a second loop: it would only be answered
/// from another core, which on an idle machine costs a slower wake-up). Any loop decides to
/// *gather* them back when the loops together were busy less than `gatherBusy` of one loop's
/// time, or a ready connection took them less than `gatherWork`. The gap between the
/// thresholds keeps the decision from flapping. A connection moves between batches of events,
/// on the thread of the loop that has it (`Connection.move`): nothing on the request path takes
/// a lock or counts a shared reference for it.
///
/// `@unchecked Sendable`: the loops and configurations are immutable; `spread`, `draining`
/// and every loop's `LoopLoad` are atomics; `heavyWindows` is confined to the first loop's thread.
final class LoopGroup: @unchecked Sendable {
    let loops: [EventLoop]
    /// Each loop's configuration reference, by the loop's position.
    let configs: [LoopConfig]
    /// Connections are dealt over every loop (else they all live on the first).
    let spread = ManagedAtomic(false)
    /// The daemon is draining: nothing moves any more, and a connection that arrives on a loop
    /// drains at once.
    let draining = ManagedAtomic(false)
    private let loads: [LoopLoad]
    /// Heavy windows in a row (the first loop's thread only).
    private var heavyWindows = 0
    /// How often connections were spread and gathered.
    private let spreads = ManagedAtomic(0)
    private let gathers = ManagedAtomic(0)
    var spreadCount: Int { spreads.load(ordering: .relaxed) }
    var gatherCount: Int { gathers.load(ordering: .relaxed) }

    struct Policy: Sendable {
        /// Nanoseconds of the first loop's time between decisions.
        var window: UInt64 = 20_000_000
        /// Spread when the first loop's thread used at least this part of a window…
        var spreadBusy = 0.5
        /// …and a ready connection took it at least this many nanoseconds of CPU on average…
        /// (One single-flag request: 3–6 µs here, system calls included, more with caches
        /// that other processes keep cold; 16 pipelined ones, 25–45 µs.)
        var spreadWork: UInt64 = 15_000
        /// …with at least this many connections ready per wake-up on average (more than one
        /// connection has work at once: there is something to answer on a second core)…
        var spreadTogether = 1.5
        /// …in this many windows in a row. One: waiting for a second heavy window cost a
        /// measurement of 16 × 16 about a tenth of its throughput (the bench reconnects each
        /// round), and a light window gathers them back anyway.
        var spreadWindows = 1
        /// Gather when the loops together were busy less than this part of one loop's time…
        var gatherBusy = 0.25
        /// …or a ready connection took them less than this many nanoseconds on average.
        var gatherWork: UInt64 = 8_000

        /// Always spread (tests of moving connections: any traffic counts as heavy).
        static let eager = Policy(
            window: 1_000_000, spreadBusy: 0, spreadWork: 0, spreadTogether: 0, spreadWindows: 1, gatherBusy: -1, gatherWork: 0)
    }

    let policy: Policy

    init(loops: [EventLoop], configs: [LoopConfig], policy: Policy = Policy()) {
        precondition(loops.count == configs.count && !loops.isEmpty, "one configuration reference per loop")
        self.loops = loops
        self.configs = configs
        self.policy = policy
        loads = loops.map { _ in LoopLoad() }
        for (index, loop) in loops.enumerated() {
            loop.onWindow = { [unowned self] busy, elapsed, events, wakeups in
                self.window(index, busy: busy, elapsed: elapsed, events: events, wakeups: wakeups)
            }
            loop.windowNanoseconds = policy.window
        }
    }

    /// Where a new connection goes: the first loop, or, while spread, the loops in turn.
    func placement(_ turn: Int) -> Int {
        spread.load(ordering: .relaxed) ? turn % loops.count : 0
    }

    /// A loop's window has ended (on that loop's thread).
    private func window(_ index: Int, busy: UInt64, elapsed: UInt64, events: Int, wakeups: Int) {
        let load = loads[index]
        load.permille.store(Int(busy * 1000 / max(elapsed, 1)), ordering: .relaxed)
        load.busy.store(Int(busy), ordering: .relaxed)
        load.events.store(events, ordering: .relaxed)
        load.ended.store(Int(EventLoop.monotonicNanoseconds()), ordering: .relaxed)
        guard loops.count > 1, !draining.load(ordering: .relaxed) else { return }
        let work = events > 0 ? busy / UInt64(events) : 0
        if !spread.load(ordering: .relaxed) {
            // Only the first loop spreads (`heavyWindows` is its own).
            guard index == 0 else { return }
            // Connections ready together: one busy connection (a client's evalAll after evalAll)
            // gains nothing from a second loop, and would only be answered from another core.
            let together = Double(events) / Double(max(wakeups, 1))
            guard Double(busy) >= policy.spreadBusy * Double(elapsed), work >= policy.spreadWork, events > 0,
                together >= policy.spreadTogether
            else {
                heavyWindows = 0
                return
            }
            heavyWindows += 1
            guard heavyWindows >= policy.spreadWindows else { return }
            heavyWindows = 0
            spread.store(true, ordering: .relaxed)
            spreads.wrappingIncrement(ordering: .relaxed)
            // Every other connection of this loop's goes to the others, in turn.
            var turn = 0
            loops[0].forEachConnection { connection in
                turn += 1
                let target = turn % loops.count
                if target != 0 { connection.move(to: target) }
            }
        } else {
            // Any loop may gather: the first may have no connection left to wake it.
            // The loops' last windows (a loop that has not ended one lately is idle).
            let now = EventLoop.monotonicNanoseconds()
            var permille = 0, totalBusy = 0, totalEvents = 0
            for load in loads where now &- UInt64(load.ended.load(ordering: .relaxed)) < 5 * policy.window {
                permille += load.permille.load(ordering: .relaxed)
                totalBusy += load.busy.load(ordering: .relaxed)
                totalEvents += load.events.load(ordering: .relaxed)
            }
            let allWork = totalEvents > 0 ? UInt64(totalBusy / totalEvents) : 0
            guard Double(permille) < policy.gatherBusy * 1000 || allWork < policy.gatherWork,
                spread.compareExchange(expected: true, desired: false, ordering: .relaxed).exchanged
            else { return }
            gathers.wrappingIncrement(ordering: .relaxed)
            for helper in loops.dropFirst() {
                helper.execute { [self] in
                    // Spread again meanwhile: these stay.
                    guard !spread.load(ordering: .relaxed) else { return }
                    helper.forEachConnection { $0.move(to: 0) }
                }
            }
        }
    }
}

/// A loop's last window, published for the first loop's decisions.
final class LoopLoad: Sendable {
    let permille = ManagedAtomic(0)
    let busy = ManagedAtomic(0)
    let events = ManagedAtomic(0)
    /// When the window ended (monotonic nanoseconds).
    let ended = ManagedAtomic(0)
}
