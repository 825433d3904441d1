@testable import GuidonRESP
import Testing

private typealias Machine = RESPConnectionStateMachine<Int>
private typealias Action = Machine.Action

private let ms: UInt64 = 1_000_000

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

extension RESPConnectionStateMachine {
    fileprivate mutating func receive(_ text: String, now: UInt64) -> [Action] {
        Array(text.utf8).withUnsafeBytes { received($0, now: now) }
    }
}

/// A machine that is connected, with `commands` sent at time 0 with deadline 50 ms.
private func connected(_ commands: Int = 0, configuration: RESPConnectionConfiguration = RESPConnectionConfiguration()) -> Machine {
    var m = Machine(configuration: configuration)
    for i in 0..<commands { _ = m.enqueue(i, command: bytes("*1\r\n$4\r\nPING\r\n"), deadline: 50 * ms, now: 0) }
    _ = m.connected(now: 0)
    m.wrote(m.outgoing.count)
    return m
}

@Suite("RESP connection state machine")
struct RESPConnectionStateMachineTests {
    @Test("the first command connects; commands queued meanwhile are written together once connected")
    func connectThenPipeline() {
        var m = Machine()
        #expect(m.enqueue(1, command: bytes("A"), deadline: 50 * ms, now: 0) == [.connect])
        #expect(m.enqueue(2, command: bytes("B"), deadline: 50 * ms, now: 1) == [])
        #expect(m.outgoing == bytes("AB"))
        #expect(m.connected(now: 2) == [.write])
        m.wrote(1)
        #expect(m.outgoing == bytes("B"))
        m.wrote(1)
        #expect(m.enqueue(3, command: bytes("C"), deadline: 50 * ms, now: 3) == [.write])
        #expect(m.pendingCount == 3)
    }

    @Test("replies complete commands in order, however the bytes are split")
    func repliesInOrder() {
        var m = connected(3)
        #expect(m.receive(":1\r\n+O", now: 1) == [.complete(0, .success(.integer(1)))])
        #expect(m.receive("K\r\n-ERR no\r\n", now: 2) == [
            .complete(1, .success(.simpleString("OK"))),
            .complete(2, .failure(RESPError(.serverError, "ERR no"))),
        ])
        #expect(m.pendingCount == 0)
        #expect(m.nextDeadline == nil)
    }

    @Test("a command past its deadline times out at once; its late reply is dropped, the next one still matches")
    func timeoutThenLateReply() {
        var m = Machine()
        _ = m.enqueue(1, command: bytes("A"), deadline: 50 * ms, now: 0)
        _ = m.enqueue(2, command: bytes("B"), deadline: 80 * ms, now: 0)
        _ = m.connected(now: 0)
        #expect(m.nextDeadline == 50 * ms)
        #expect(m.deadlinePassed(now: 49 * ms) == [])
        let timedOut = m.deadlinePassed(now: 50 * ms)
        guard case .complete(1, .failure(let error))? = timedOut.first, timedOut.count == 1 else {
            Issue.record("expected a timeout for 1, got \(timedOut)")
            return
        }
        #expect(error.code == .timeout)
        // The abandoned command is still awaited (until abandonAfter) and the live one too.
        #expect(m.nextDeadline == 80 * ms)
        #expect(m.receive(":1\r\n:2\r\n", now: 60 * ms) == [.complete(2, .success(.integer(2)))])
        #expect(m.phase == .connected)
    }

    @Test("an abandoned command unanswered for abandonAfter closes the connection and fails the rest")
    func hungServer() {
        var m = connected(1, configuration: RESPConnectionConfiguration(abandonAfter: 100 * ms))
        _ = m.deadlinePassed(now: 50 * ms)
        _ = m.enqueue(7, command: bytes("X"), deadline: 500 * ms, now: 60 * ms)
        #expect(m.nextDeadline == 150 * ms)
        let actions = m.deadlinePassed(now: 150 * ms)
        guard actions.count == 2, case .failAll([7], let error) = actions[0], case .close = actions[1] else {
            Issue.record("expected failAll([7]) then close, got \(actions)")
            return
        }
        #expect(error.code == .timeout)
        guard case .backingOff(let until, _) = m.phase else { Issue.record("not backing off: \(m.phase)"); return }
        #expect(until == 160 * ms)
    }

    @Test("a closed connection fails everything waiting; commands then fail fast until the backoff ends, which doubles")
    func closeAndBackoff() {
        var m = connected(2, configuration: RESPConnectionConfiguration(minBackoff: 10 * ms, maxBackoff: 25 * ms))
        let closed = RESPError(.connectionClosed, "gone")
        #expect(m.closed(closed, now: 5 * ms) == [.failAll([0, 1], closed)])
        let refused = m.enqueue(3, command: bytes("C"), deadline: 100 * ms, now: 10 * ms)
        guard case .complete(3, .failure(let error))? = refused.first else { Issue.record("\(refused)"); return }
        #expect(error.code == .connectionClosed && error.message.contains("gone"))
        // After the backoff the next command reconnects…
        #expect(m.enqueue(4, command: bytes("D"), deadline: 100 * ms, now: 15 * ms) == [.connect])
        // …which fails again: the wait doubles (20 ms), then is capped (25 ms).
        #expect(m.closed(closed, now: 16 * ms) == [.failAll([4], closed)])
        #expect(m.phase == .backingOff(until: 36 * ms, lastError: closed))
        _ = m.enqueue(5, command: bytes("E"), deadline: 100 * ms, now: 40 * ms)
        _ = m.closed(closed, now: 41 * ms)
        #expect(m.phase == .backingOff(until: 66 * ms, lastError: closed))
        // A successful connect resets it.
        _ = m.enqueue(6, command: bytes("F"), deadline: 100 * ms, now: 70 * ms)
        #expect(m.connected(now: 71 * ms) == [.write])
        _ = m.closed(closed, now: 72 * ms)
        #expect(m.phase == .backingOff(until: 82 * ms, lastError: closed))
    }

    @Test("a connect past its deadline fails the commands waiting for it")
    func connectTimeout() {
        var m = Machine(configuration: RESPConnectionConfiguration(connectTimeout: 30 * ms))
        _ = m.enqueue(1, command: bytes("A"), deadline: 500 * ms, now: 0)
        #expect(m.nextDeadline == 30 * ms)
        let actions = m.deadlinePassed(now: 30 * ms)
        guard case .failAll([1], let error)? = actions.first, actions.last == .close else { Issue.record("\(actions)"); return }
        #expect(error.code == .connectFailed)
    }

    @Test("malformed bytes or a reply nobody waits for close the connection")
    func protocolViolations() {
        var m = connected(1)
        let actions = m.receive("?\r\n", now: 1)
        guard case .failAll([0], let error)? = actions.first, actions.last == .close else { Issue.record("\(actions)"); return }
        #expect(error.code == .malformedReply)

        var n = connected(1)
        let extra = n.receive(":1\r\n:2\r\n", now: 1)
        #expect(extra.first == .complete(0, .success(.integer(1))))
        #expect(extra.last == .close)
        if case .backingOff = n.phase {} else { Issue.record("expected backoff after an unexpected reply") }
    }

    @Test("the pending limit refuses at once; a deadline already passed is refused before sending")
    func limits() {
        var m = Machine(configuration: RESPConnectionConfiguration(maxPending: 1))
        _ = m.enqueue(1, command: bytes("A"), deadline: 10 * ms, now: 0)
        let refused = m.enqueue(2, command: bytes("B"), deadline: 10 * ms, now: 0)
        guard case .complete(2, .failure(let error))? = refused.first else { Issue.record("\(refused)"); return }
        #expect(error.code == .tooManyPending)
        var n = Machine()
        guard case .complete(3, .failure(let late))? = n.enqueue(3, command: bytes("C"), deadline: 5, now: 5).first else {
            Issue.record("expected an immediate timeout"); return
        }
        #expect(late.code == .timeout)
        #expect(n.outgoing.isEmpty)
    }

    @Test("shutdown fails everything waiting, closes, and refuses later commands")
    func shutdown() {
        var m = connected(2)
        let actions = m.shutdown()
        guard case .failAll([0, 1], let error)? = actions.first, actions.last == .close else { Issue.record("\(actions)"); return }
        #expect(error.code == .shutdown)
        guard case .complete(9, .failure(let later))? = m.enqueue(9, command: bytes("Z"), deadline: 10 * ms, now: 1).first else {
            Issue.record("expected a refusal"); return
        }
        #expect(later.code == .shutdown)
    }

    @Test("many pipelined replies in one read, with the FIFO compacted along the way")
    func longPipeline() {
        var m = Machine()
        var text = ""
        for i in 0..<500 {
            _ = m.enqueue(i, command: bytes("P"), deadline: 50 * ms, now: 0)
            text += ":\(i)\r\n"
        }
        #expect(m.connected(now: 0) == [.write])
        m.wrote(m.outgoing.count)
        var completed: [Int] = []
        // Delivered in uneven chunks.
        var rest = Substring(text)
        while !rest.isEmpty {
            let chunk = rest.prefix(37)
            rest = rest.dropFirst(37)
            for action in m.receive(String(chunk), now: 1) {
                guard case .complete(let id, .success(.integer(let n))) = action, Int64(id) == n else {
                    Issue.record("unexpected \(action)"); return
                }
                completed.append(id)
            }
        }
        #expect(completed == Array(0..<500))
        #expect(m.pendingCount == 0)
    }
}
