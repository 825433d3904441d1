import Atomics
import GuidonJSON
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import GuidonClient

/// The channel handler on an `EmbeddedChannel`: exact bytes out, reply bytes in, time advanced
/// by hand.
@Suite struct ConnectionHandlerTests {
    final class Harness {
        let channel: EmbeddedChannel
        let handler: ConnectionHandler
        let open = ManagedAtomic(true)
        var loop: EmbeddedEventLoop { channel.embeddedEventLoop }
        var events: [JSONObject] { eventBox.withLockedValue { $0 } }
        private let eventBox = NIOLockedValueBox<[JSONObject]>([])

        init(maxLineBytes: Int = 1 << 20) throws {
            let box = eventBox
            handler = ConnectionHandler(maxLineBytes: maxLineBytes, open: open, onEvent: { event in box.withLockedValue { $0.append(event) } })
            channel = EmbeddedChannel(handler: handler)
            try channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/guidon-embedded.sock")).wait()
        }

        /// Submits a request with `members`; its reply arrives in the returned future.
        func submit(_ id: Int, _ members: String, timeout: TimeAmount = .milliseconds(100)) -> EventLoopFuture<JSONObject> {
            let promise = loop.makePromise(of: ByteBuffer.self)
            handler.submit(Submission(id: id, members: Array(members.utf8), deadline: loop.now + timeout, waiter: .promise(promise)))
            return promise.futureResult.flatMapThrowing { try Reply.parse($0).get() }
        }

        /// Everything written so far, as text.
        func written() throws -> String {
            loop.run()
            var text = ""
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
            return text
        }

        func reply(_ text: String) throws {
            try channel.writeInbound(ByteBuffer(string: text))
        }
    }

    /// The outcome of a future that must already be complete.
    private func outcome(_ future: EventLoopFuture<JSONObject>) -> Result<JSONObject, GuidonClientError>? {
        let result = NIOLockedValueBox<Result<JSONObject, GuidonClientError>?>(nil)
        future.whenComplete { outcome in
            result.withLockedValue {
                $0 = outcome.mapError { $0 as? GuidonClientError ?? GuidonClientError(.connectionFailed, "\($0)") }
            }
        }
        return result.withLockedValue { $0 }
    }

    @Test func requestsAreWrittenWithTheirIdsAndFlushedTogether() throws {
        let h = try Harness()
        _ = h.submit(1, #""op":"ping""#)
        _ = h.submit(22, #""op":"eval","flag":"a","context":{}"#)
        // One flush for both: a single outbound buffer would also be fine; what matters is the bytes.
        #expect(try h.written() == "{\"id\":1,\"op\":\"ping\"}\n{\"id\":22,\"op\":\"eval\",\"flag\":\"a\",\"context\":{}}\n")
        #expect(h.handler.pendingCount == 2)
    }

    @Test func repliesCompleteTheirCallersHoweverTheyArrive() throws {
        let replies = #"{"id":1,"ok":true,"configVersion":"a","flags":1}"# + "\n" + #"{"id":2,"flag":"f","value":true,"reason":"STATIC","metadata":{}}"# + "\n"
        let bytes = Array(replies.utf8)
        for chunkSize in [bytes.count, 1, 5, 64] {
            let h = try Harness()
            let first = h.submit(1, #""op":"ping""#)
            let second = h.submit(2, #""op":"eval","flag":"f","context":{}"#)
            _ = try h.written()
            for start in stride(from: 0, to: bytes.count, by: chunkSize) {
                #expect(outcome(second) == nil)
                try h.channel.writeInbound(ByteBuffer(bytes: bytes[start..<min(start + chunkSize, bytes.count)]))
            }
            #expect((try? outcome(first)?.get())?["configVersion"] == "a")
            #expect((try? outcome(second)?.get())?["value"] == true)
            #expect(h.handler.pendingCount == 0)
        }
    }

    @Test func aTimeoutFailsItsCallerAndClosesTheConnectionForTheRest() throws {
        let h = try Harness()
        let early = h.submit(1, #""op":"ping""#, timeout: .milliseconds(50))
        let late = h.submit(2, #""op":"ping""#, timeout: .milliseconds(500))
        _ = try h.written()
        h.loop.advanceTime(by: .milliseconds(49))
        #expect(outcome(early) == nil)
        h.loop.advanceTime(by: .milliseconds(1))
        guard case .failure(let timedOut)? = outcome(early), case .failure(let closed)? = outcome(late) else {
            Issue.record("both requests must have failed")
            return
        }
        #expect(timedOut.code == .timeout)
        // The other request fails as "closed" (so that the client sends it again elsewhere).
        #expect(closed.code == .connectionClosed)
        #expect(!h.channel.isActive)
        let open = h.open.load(ordering: .relaxed)
        #expect(!open)
    }

    @Test func aRepliedRequestDoesNotTimeOutLater() throws {
        let h = try Harness()
        let answered = h.submit(1, #""op":"ping""#, timeout: .milliseconds(50))
        _ = try h.written()
        try h.reply(#"{"id":1,"ok":true,"configVersion":"a","flags":1}"# + "\n")
        h.loop.advanceTime(by: .seconds(1))
        #expect((try? outcome(answered)?.get()) != nil)
        #expect(h.channel.isActive)
    }

    @Test func theDaemonClosingFailsEveryWaiterAsClosed() throws {
        let h = try Harness()
        let a = h.submit(1, #""op":"ping""#)
        let b = h.submit(2, #""op":"ping""#)
        _ = try h.written()
        h.channel.pipeline.fireChannelInactive()
        for future in [a, b] {
            guard case .failure(let error)? = outcome(future) else {
                Issue.record("pending requests must fail when the connection ends")
                continue
            }
            #expect(error.code == .connectionClosed)
        }
        let open = h.open.load(ordering: .relaxed)
        #expect(!open)
    }

    @Test func eventLinesGoToTheSubscriber() throws {
        let h = try Harness()
        let ack = h.submit(1, #""op":"watch""#)
        _ = try h.written()
        try h.reply(#"{"id":1,"ok":true,"watching":true,"configVersion":"a"}"# + "\n"
            + #"{"event":"configurationChanged","configVersion":"b","added":["x"],"changed":[],"removed":[]}"# + "\n")
        #expect((try? outcome(ack)?.get())?["watching"] == true)
        #expect(h.events.count == 1)
        #expect(h.events.first?["configVersion"] == "b")
    }

    @Test func anOverlongReplyIsAProtocolViolation() throws {
        let h = try Harness(maxLineBytes: 64)
        let request = h.submit(1, #""op":"list""#)
        _ = try h.written()
        try h.reply(#"{"id":1,"flags":["# + String(repeating: #""abcdefgh","#, count: 10))
        guard case .failure(let error)? = outcome(request) else {
            Issue.record("the request must fail")
            return
        }
        #expect(error.code == .protocolViolation)
        #expect(!h.channel.isActive)
    }

    @Test func cancellingResumesTheCallerAndDropsTheReplyLater() throws {
        let h = try Harness()
        let cancelled = h.submit(5, #""op":"ping""#)
        let next = h.submit(6, #""op":"ping""#)
        _ = try h.written()
        h.handler.cancel(id: 5)
        guard case .failure(let error)? = outcome(cancelled) else {
            Issue.record("a cancelled request is resumed at once")
            return
        }
        #expect(error.code == .cancelled)
        try h.reply(#"{"id":5,"ok":true,"configVersion":"a","flags":1}"# + "\n" + #"{"id":6,"ok":true,"configVersion":"b","flags":1}"# + "\n")
        #expect((try? outcome(next)?.get())?["configVersion"] == "b")
        #expect(h.channel.isActive)
    }

    @Test func submittingToAClosedConnectionFailsAtOnce() throws {
        let h = try Harness()
        h.handler.close(with: GuidonClientError(.connectionClosed, "test"))
        let late = h.submit(1, #""op":"ping""#)
        guard case .failure(let error)? = outcome(late) else {
            Issue.record("a closed connection answers at once")
            return
        }
        #expect(error.code == .connectionClosed)
    }
}
