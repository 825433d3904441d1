import GuidonJSON
import NIOCore
import NIOPosix
import Testing

@testable import GuidonClient

/// The hand-off between a watch connection's event loop and the stream's consumer.
@Suite struct WatchMailboxTests {
    let loop = MultiThreadedEventLoopGroup.singleton.next()

    private func name(_ item: WatchMailbox.Item) -> String {
        switch item {
        case .event(let event): "event \(event["n"].map { "\($0)" } ?? "?")"
        case .closed: "closed"
        case .overflowed: "overflowed"
        case .terminated: "terminated"
        case .cancelled: "cancelled"
        case .timedOut: "timedOut"
        }
    }

    @Test func eventsComeOutInOrderAndEarlierGenerationsAreDropped() async {
        let mailbox = WatchMailbox(capacity: 10)
        mailbox.begin(generation: 1)
        mailbox.push(.event(["n": 1]), generation: 1)
        mailbox.push(.event(["n": 2]), generation: 1)
        mailbox.begin(generation: 2)  // a new connection: what the old one left is gone
        mailbox.push(.event(["n": 3]), generation: 2)
        mailbox.push(.closed, generation: 1)  // late news of the old connection
        mailbox.push(.event(["n": 4]), generation: 2)
        #expect(name(await mailbox.next(on: loop)) == "event 3")
        #expect(name(await mailbox.next(on: loop)) == "event 4")
    }

    @Test func aConsumerThatFallsBehindIsToldToResynchronise() async {
        let mailbox = WatchMailbox(capacity: 3)
        mailbox.begin(generation: 1)
        for n in 1...10 { mailbox.push(.event(["n": .int(Int64(n))]), generation: 1) }
        var seen: [String] = []
        for _ in 0..<4 { seen.append(name(await mailbox.next(on: loop))) }
        #expect(seen == ["event 1", "event 2", "event 3", "overflowed"])
    }

    @Test func aWaitingConsumerIsWokenByAnEventTheDeadlineOrTheShutdown() async throws {
        let mailbox = WatchMailbox(capacity: 3)
        mailbox.begin(generation: 1)
        let waiting = Task { await mailbox.next(on: loop) }
        try await Task.sleep(for: .milliseconds(20))
        mailbox.push(.event(["n": 7]), generation: 1)
        #expect(name(await waiting.value) == "event 7")

        #expect(name(await mailbox.next(until: .now() + .milliseconds(20), on: loop)) == "timedOut")

        let waitingLong = Task { await mailbox.next(until: .now() + .seconds(60), on: loop) }
        try await Task.sleep(for: .milliseconds(20))
        mailbox.terminate()
        #expect(name(await waitingLong.value) == "terminated")
        #expect(name(await mailbox.next(on: loop)) == "terminated")
    }

    @Test func cancellingTheConsumerWakesIt() async throws {
        let mailbox = WatchMailbox(capacity: 3)
        mailbox.begin(generation: 1)
        let waiting = Task { await mailbox.next(on: loop) }
        try await Task.sleep(for: .milliseconds(20))
        waiting.cancel()
        #expect(name(await waiting.value) == "cancelled")
    }
}
