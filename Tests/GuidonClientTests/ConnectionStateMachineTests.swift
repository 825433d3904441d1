import GuidonJSON
import NIOCore
import Testing

@testable import GuidonClient

/// The pipelining logic with plain waiters (strings) and explicit times: no channel, no clock.
@Suite struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine<String>
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    private func receive(_ machine: inout Machine, _ line: String) -> Machine.LineAction {
        Array(line.utf8).withUnsafeBytes { machine.received(line: $0) }
    }

    private func submit(_ machine: inout Machine, _ id: Int, _ waiter: String, in ms: Int64 = 100) {
        guard case .write = machine.submit(id: id, deadline: t0 + .milliseconds(ms), waiter: waiter) else {
            Issue.record("submit \(id) was not written")
            return
        }
    }

    /// The waiter a line completes and its result, or nil.
    private func completion(_ action: Machine.LineAction) -> (String, Result<JSONObject, GuidonClientError>)? {
        if case .complete(let waiter, let result) = action { return (waiter, result) }
        return nil
    }

    @Test func repliesCompleteTheOldestRequestInOrder() {
        var machine = Machine()
        submit(&machine, 1, "a")
        submit(&machine, 2, "b")
        submit(&machine, 3, "c")
        for (id, waiter) in [(1, "a"), (2, "b"), (3, "c")] {
            let done = completion(receive(&machine, #"{"id":\#(id),"ok":true}"#))
            #expect(done?.0 == waiter)
            #expect((try? done?.1.get())?["id"] == .int(Int64(id)))
        }
        #expect(machine.pending.isEmpty)
    }

    @Test func aReplyWithAnotherIdClosesTheConnection() {
        var machine = Machine()
        submit(&machine, 1, "a")
        submit(&machine, 2, "b")
        guard case .close(let error) = receive(&machine, #"{"id":2,"ok":true}"#) else {
            Issue.record("an out-of-order id must close")
            return
        }
        #expect(error.code == .protocolViolation)
        let closed = machine.closed(with: error)
        #expect(closed.waiters == ["a", "b"])
        #expect(closed.error.code == .protocolViolation)
    }

    @Test func aReplyNobodyAskedForClosesTheConnection() {
        var machine = Machine()
        guard case .close(let error) = receive(&machine, #"{"id":9,"ok":true}"#) else {
            Issue.record("an unsolicited reply must close")
            return
        }
        #expect(error.code == .protocolViolation)
    }

    @Test func linesThatAreNotJSONObjectsCloseTheConnection() {
        for line in ["not json", "[1,2]", #"{"id":1"#] {
            var machine = Machine()
            submit(&machine, 1, "a")
            guard case .close(let error) = receive(&machine, line) else {
                Issue.record("\(line) must close")
                continue
            }
            #expect(error.code == .protocolViolation)
        }
    }

    @Test func errorRepliesFailTheirRequestOnlyEvenWithoutAnId() {
        var machine = Machine()
        submit(&machine, 1, "a")
        submit(&machine, 2, "b")
        let first = completion(receive(&machine, #"{"error":{"code":"INVALID_REQUEST","message":"column 1: not JSON"}}"#))
        #expect(first?.0 == "a")
        guard case .failure(let error)? = first?.1 else {
            Issue.record("an error reply must fail its request")
            return
        }
        #expect(error.code == .daemonError)
        #expect(error.daemonCode == "INVALID_REQUEST")
        #expect(error.message.contains("column 1: not JSON"))
        #expect(completion(receive(&machine, #"{"id":2,"ok":true}"#))?.0 == "b")
    }

    @Test func aReplyWithoutIdThatIsNotAnErrorClosesTheConnection() {
        var machine = Machine()
        submit(&machine, 1, "a")
        guard case .close = receive(&machine, #"{"ok":true}"#) else {
            Issue.record("every request has an id; only an error reply may lack it")
            return
        }
    }

    @Test func eventsGoToTheSubscriberAndDoNotTakeAReply() {
        var machine = Machine()
        submit(&machine, 1, "a")
        guard case .event(let event) = receive(&machine, #"{"event":"configurationChanged","configVersion":"x","added":[],"changed":[],"removed":[]}"#) else {
            Issue.record("an event line must be an event")
            return
        }
        #expect(event["configVersion"] == "x")
        #expect(completion(receive(&machine, #"{"id":1,"ok":true}"#))?.0 == "a")
    }

    @Test func blankLinesAreIgnored() {
        var machine = Machine()
        submit(&machine, 1, "a")
        guard case .none = receive(&machine, " \t") else {
            Issue.record("a blank line is nothing")
            return
        }
        #expect(machine.pending.count == 1)
    }

    @Test func expiredRequestsStopWaitingButKeepTheirPlace() {
        var machine = Machine()
        submit(&machine, 1, "a", in: 50)
        submit(&machine, 2, "b", in: 100)
        #expect(machine.earliestDeadline == t0 + .milliseconds(50))
        #expect(machine.expire(now: t0 + .milliseconds(49)).isEmpty)
        #expect(machine.expire(now: t0 + .milliseconds(50)) == ["a"])
        #expect(machine.earliestDeadline == t0 + .milliseconds(100))
        // The late reply to 1 is read and dropped; 2's reply still reaches b.
        guard case .none = receive(&machine, #"{"id":1,"ok":true}"#) else {
            Issue.record("a reply to an expired request is dropped")
            return
        }
        #expect(completion(receive(&machine, #"{"id":2,"ok":true}"#))?.0 == "b")
    }

    @Test func aCancelledRequestIsDroppedTheSameWay() {
        var machine = Machine()
        submit(&machine, 7, "a")
        submit(&machine, 8, "b")
        #expect(machine.cancel(id: 7) == "a")
        #expect(machine.cancel(id: 7) == nil)
        guard case .none = receive(&machine, #"{"id":7,"ok":true}"#) else {
            Issue.record("a reply to a cancelled request is dropped")
            return
        }
        #expect(completion(receive(&machine, #"{"id":8,"ok":true}"#))?.0 == "b")
    }

    @Test func closingFailsWhatWaitsAndEverySubmitAfter() {
        var machine = Machine()
        submit(&machine, 1, "a")
        submit(&machine, 2, "b")
        _ = machine.cancel(id: 1)
        let closed = machine.closed()
        #expect(closed.waiters == ["b"])
        #expect(closed.error.code == .connectionClosed)
        #expect(machine.closed().waiters.isEmpty)
        guard case .fail(let waiter, let error) = machine.submit(id: 3, deadline: t0, waiter: "c") else {
            Issue.record("a closed connection refuses requests")
            return
        }
        #expect(waiter == "c")
        #expect(error.code == .connectionClosed)
    }

    @Test func anOverloadedFarewellIsWhyTheConnectionCloses() {
        var machine = Machine()
        guard case .none = receive(&machine, #"{"error":{"code":"OVERLOADED","message":"too many connections (limit 1024)"}}"#) else {
            Issue.record("an error with no request waiting is the daemon's farewell")
            return
        }
        let closed = machine.closed()
        #expect(closed.error.code == .daemonError)
        #expect(closed.error.daemonCode == "OVERLOADED")
    }
}
