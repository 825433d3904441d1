import NIOCore
import Testing

@testable import GuidonClient

/// The pool's choices at explicit times: lazy connections, round robin, the shared back-off.
@Suite struct PoolStateMachineTests {
    final class FakeConnection: PooledConnection {
        let name: String
        var isOpen = true
        var load = 0
        init(_ name: String) { self.name = name }
    }

    typealias Machine = PoolStateMachine<FakeConnection, String>
    let t0 = NIODeadline.uptimeNanoseconds(5_000_000_000)
    let backoff = GuidonClientConfiguration.Backoff(initial: .milliseconds(10), maximum: .milliseconds(80))

    private func describe(_ action: Machine.LeaseAction) -> String {
        switch action {
        case .use(let connection): "use \(connection.name)"
        case .wait(let attempt): "wait \(attempt)"
        case .connect(let slot, let attempt): "connect \(slot) \(attempt)"
        case .fail(let error): "fail \(error.code)"
        }
    }

    @Test func oneConnectionServesUntilItIsBusyThenTheNextConnects() {
        var pool = Machine(size: 2, backoff: backoff, spillAt: 2)
        var attempts = 0
        let lease = { (pool: inout Machine) in pool.lease(now: t0) { attempts += 1; return "attempt\(attempts)" } }
        #expect(describe(lease(&pool)) == "connect 0 attempt1")
        // Calls while the first connects wait for it rather than open a second.
        #expect(describe(lease(&pool)) == "wait attempt1")
        let a = FakeConnection("a")
        #expect(pool.connected(a, in: 0) == (true, false))
        // A caller alone keeps using the same connection.
        for _ in 0..<5 { #expect(describe(lease(&pool)) == "use a") }
        // Busy: the next slot connects, and calls meanwhile still go to a.
        a.load = 2
        #expect(describe(lease(&pool)) == "connect 1 attempt2")
        #expect(describe(lease(&pool)) == "use a")
        let b = FakeConnection("b")
        _ = pool.connected(b, in: 1)
        #expect(describe(lease(&pool)) == "use b")
        // Both busy: the less busy one.
        b.load = 3
        #expect(describe(lease(&pool)) == "use a")
        // a frees up: back to a.
        a.load = 0
        #expect(describe(lease(&pool)) == "use a")
        #expect(attempts == 2)
    }

    @Test func aFailedConnectBacksOffThePoolAndCallsFailAtOnce() {
        var pool = Machine(size: 1, backoff: backoff)
        let failure = GuidonClientError(.connectionFailed, "cannot connect: ENOENT")
        guard case .connect(let slot, _) = pool.lease(now: t0, newAttempt: { "x" }) else {
            Issue.record("the first call connects")
            return
        }
        #expect(pool.connectFailed(in: slot, failure, now: t0) == true)
        // Within 10 ms: no attempt, an immediate failure that says when the next one is.
        guard case .fail(let error) = pool.lease(now: t0 + .milliseconds(9), newAttempt: { "no" }) else {
            Issue.record("backing off must fail at once")
            return
        }
        #expect(error.code == .connectionFailed)
        #expect(error.message.contains("ENOENT"))
        #expect(error.message.contains("next attempt in 1 ms"))
        // After it, one attempt; failing again doubles the wait, up to the maximum.
        var now = t0 + .milliseconds(10)
        var expectedDelays: [Int64] = []
        for failures in 2...6 {
            guard case .connect(let slot, _) = pool.lease(now: now, newAttempt: { "y" }) else {
                Issue.record("after the back-off a call connects (failure \(failures))")
                return
            }
            #expect(pool.connectFailed(in: slot, failure, now: now) == false)
            let delay = TimeAmount(backoff.delay(afterFailures: failures))
            expectedDelays.append(delay.nanoseconds / 1_000_000)
            guard case .fail = pool.lease(now: now + delay - .nanoseconds(1), newAttempt: { "no" }) else {
                Issue.record("still backing off just before \(delay)")
                return
            }
            now = now + delay
        }
        #expect(expectedDelays == [20, 40, 80, 80, 80])
        guard case .connect(let slot, _) = pool.lease(now: now, newAttempt: { "z" }) else {
            Issue.record("connect again")
            return
        }
        #expect(pool.connected(FakeConnection("back"), in: slot) == (true, true))
        #expect(pool.failures == 0)
    }

    @Test func anOpenConnectionStillServesWhileTheBackoffLasts() {
        var pool = Machine(size: 2, backoff: backoff, spillAt: 1)
        _ = pool.lease(now: t0, newAttempt: { "a" })
        let a = FakeConnection("a")
        _ = pool.connected(a, in: 0)
        a.load = 1
        guard case .connect(let slot, _) = pool.lease(now: t0, newAttempt: { "b" }) else {
            Issue.record("slot 1 connects")
            return
        }
        _ = pool.connectFailed(in: slot, GuidonClientError(.connectionFailed, "refused"), now: t0)
        // Busy as it is, a serves rather than a call failing or trying to connect.
        #expect(describe(pool.lease(now: t0, newAttempt: { "no" })) == "use a")
        #expect(describe(pool.lease(now: t0, newAttempt: { "no" })) == "use a")
    }

    @Test func aClosedConnectionIsReplacedOnTheNextCall() {
        var pool = Machine(size: 1, backoff: backoff)
        _ = pool.lease(now: t0, newAttempt: { "1" })
        let a = FakeConnection("a")
        _ = pool.connected(a, in: 0)
        a.isOpen = false  // closing; the close future has not reported it yet
        #expect(describe(pool.lease(now: t0, newAttempt: { "2" })) == "connect 0 2")
        // The late report of a's close leaves the new attempt alone.
        pool.closed(a, in: 0)
        #expect(describe(pool.lease(now: t0, newAttempt: { "3" })) == "wait 2")
    }

    @Test func shutDownRefusesCallsAndHandsBackTheConnections() {
        var pool = Machine(size: 2, backoff: backoff)
        _ = pool.lease(now: t0, newAttempt: { "1" })
        _ = pool.connected(FakeConnection("a"), in: 0)
        #expect(pool.shutDown().map(\.name) == ["a"])
        #expect(describe(pool.lease(now: t0, newAttempt: { "no" })) == "fail clientShutDown")
        // An attempt that completes after the shutdown is not kept.
        #expect(pool.connected(FakeConnection("late"), in: 1).keep == false)
        #expect(pool.shutDown().isEmpty)
    }
}
