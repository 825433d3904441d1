import GuidonJSON
import NIOCore
import Testing

@testable import GuidonClient

/// The pipelining logic with plain waiters (strings) and explicit times: no channel, no clock.
@Suite struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine<String>
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    private func receive(_ machine: inout Machine, _ line: String) -> Machine.LineAction {
        machine.received(line: ByteBuffer(string: line))
    }

    private func submit(_ machine: inout Machine, _ id: Int, _ waiter: String, in ms: Int64 = 100) {
        guard case .write = machine.submit(id: id, deadline: t0 + .milliseconds(ms), waiter: waiter) else {
            Issue.record("submit \(id) was not written")
            return
        }
    }

    /// The waiter a line completes and its result, or nil.
    private func completion(_ action: Machine.LineAction) -> (String, Result<JSONObject, GuidonClientError>)? {
        if case .complete(let waiter, let result) = action { return (waiter, result.flatMap(Reply.parse)) }
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

    @Test func theLeadingIdIsReadWithoutParsing() {
        let cases: [(String, Int?)] = [
            (#"{"id":0,"ok":true}"#, 0), (#"{"id":123}"#, 123), (#"{"id":9007199254740993,"x":1}"#, 9_007_199_254_740_993),
            (#"{"id":"a","ok":true}"#, nil), (#"{"id":-1,"ok":true}"#, nil), (#"{"id":1.5,"ok":true}"#, nil),
            (#"{"id":12"#, nil), (#"{ "id":1,"ok":true}"#, nil), (#"{"ok":true,"id":1}"#, nil), (#"{"id":"#, nil),
        ]
        for (line, expected) in cases {
            #expect(Array(line.utf8).withUnsafeBytes { Machine.leadingID(in: $0) } == expected, "\(line)")
        }
    }

    @Test func aReplyMatchedByItsIdIsParsedByItsCallerOnly() {
        var machine = Machine()
        submit(&machine, 1, "a")
        submit(&machine, 2, "b")
        // Broken after the id: only the caller that gets it can tell; the stream is still in step.
        guard case .complete(let waiter, .success(let line)) = receive(&machine, #"{"id":1,"flag":"#) else {
            Issue.record("a reply with the expected leading id goes to its caller")
            return
        }
        #expect(waiter == "a")
        guard case .failure(let error) = Reply.parse(line) else {
            Issue.record("the caller finds it broken")
            return
        }
        #expect(error.code == .protocolViolation)
        #expect(completion(receive(&machine, #"{"id":2,"ok":true}"#))?.0 == "b")
        // An error reply with an id is the caller's daemonError.
        submit(&machine, 3, "c")
        let refused = completion(receive(&machine, #"{"id":3,"error":{"code":"UNKNOWN_OP","message":"no such op"}}"#))
        guard case .failure(let daemonError)? = refused?.1 else {
            Issue.record("an error reply fails its caller")
            return
        }
        #expect(daemonError.daemonCode == "UNKNOWN_OP")
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
