import GuidonEngine
import GuidonJSON
import GuidonProtocol
@testable import GuidonServer
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// One `Connection` served by a live event loop over a socketpair; the test holds the client end.
final class ConnectionHarness {
    let store: ConfigStore
    let connections: Connections
    let loop: EventLoop
    let client: LineClient

    static let flags = #"""
        {"metadata":{"team":"web"},"flags":{
          "on-flag":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on","metadata":{"updatedBy":"ana"}},
          "color":{"state":"ENABLED","variants":{"red":"#f00","blue":"#00f"},"defaultVariant":"blue"},
          "killed":{"state":"DISABLED","variants":{"on":true},"defaultVariant":"on"}
        }}
        """#

    init(
        flags: String = ConnectionHarness.flags, maxLineBytes: Int = 1024, replyBudget: Int = 256 * 1024,
        connections: Connections? = nil
    ) throws {
        let snapshot = try Snapshot.compile(json: Array(flags.utf8))
        let store = ConfigStore(ServedConfig(snapshot: snapshot, version: "v1", loadedAt: 0))
        self.store = store
        self.connections = connections ?? Connections(limit: 10)
        let service = ServiceContext(store: store, connections: self.connections, maxLineBytes: maxLineBytes, replyBudget: replyBudget) {
            DaemonStatus(
                daemonVersion: "test", configPath: "/flags.json", configVersion: store.current.version,
                flagCount: store.current.snapshot.count, loadedAt: 0, uptimeSeconds: 1, lenient: false, warnings: 0,
                connections: 1, lastReload: nil)
        }
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw TestFailure("socketpair: \(String(cString: strerror(errno)))")
        }
        let served = fds[1]
        _ = fcntl(served, F_SETFL, fcntl(served, F_GETFL) | O_NONBLOCK)
        client = LineClient(connected: fds[0])
        let loop = try EventLoop(name: "test-loop")
        self.loop = loop
        loop.start()
        let config = LoopConfig(store: service.store)
        loop.execute { Connection.open(served, on: loop, config: config, service: service) }
    }

    deinit {
        client.disconnect()
        loop.stop()
    }

    func send(_ text: String) throws { try client.send(text) }

    /// The next `count` replies.
    func replies(_ count: Int) throws -> [JSONObject] {
        try (0..<count).map { _ in try client.readReply() }
    }

    /// Every reply until the daemon closes the connection.
    func repliesUntilClosed() throws -> [JSONObject] {
        var replies: [JSONObject] = []
        while let line = try client.readLine() {
            replies.append(try #require(try JSONParser(duplicateKeys: .reject).parse(line).object))
        }
        return replies
    }

    /// Waits (up to 15 s) until `condition` holds.
    func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<1500 {
            if condition() { return true }
            usleep(10_000)
        }
        return false
    }
}

@Suite("Connection on a live event loop")
struct ConnectionTests {
    @Test func evalReply() throws {
        let h = try ConnectionHarness()
        try h.send(#"{"op":"eval","id":1,"flag":"on-flag","context":{"targetingKey":"u"}}"# + "\n")
        let reply = try h.client.readReply()
        #expect(reply["id"] == 1)
        #expect(reply["value"] == true)
        #expect(reply["variant"] == "on")
        #expect(reply["metadata"] == ["team": "web", "updatedBy": "ana"])
    }

    @Test func aLineSplitAcrossReadsIsOneRequest() throws {
        let h = try ConnectionHarness()
        let line = #"{"op":"eval","id":"split","flag":"color"}"# + "\n"
        for chunk in line.utf8.chunks(of: 5) {
            try h.client.send(chunk)
            usleep(2_000)  // separate reads, most likely
        }
        let reply = try h.client.readReply()
        #expect(reply["id"] == "split")
        #expect(reply["value"] == "#00f")
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let h = try ConnectionHarness()
        var batch = ""
        for i in 0..<500 { batch += #"{"op":"\#(i % 2 == 0 ? "ping" : "eval")","id":\#(i),"flag":"color"}"# + "\n" }
        try h.send(batch)
        #expect(try h.replies(500).map { $0["id"] } == (0..<500).map { .int(Int64($0)) })
    }

    @Test func badLinesGetErrorsAndTheConnectionStaysUsable() throws {
        let h = try ConnectionHarness()
        try h.send("not json\n\n   \r\n{\"op\":\"nope\",\"id\":2}\n{\"op\":\"eval\"}\r\n{\"op\":\"ping\",\"id\":3}\r\n")
        let replies = try h.replies(4)  // empty lines are ignored
        #expect(replies[0]["error"]?.object?["code"] == "INVALID_REQUEST")
        #expect(replies[1]["error"]?.object?["code"] == "UNKNOWN_OP")
        #expect(replies[1]["id"] == 2)
        #expect(replies[2]["error"]?.object?["code"] == "INVALID_REQUEST")
        #expect(replies[3]["ok"] == true)
        #expect(try h.client.request(#"{"op":"ping","id":4}"#)["id"] == 4)
    }

    @Test func nonUTF8GetsAnError() throws {
        let h = try ConnectionHarness()
        try h.client.send(Array(#"{"op":"eval","flag":""#.utf8) + [0xFE, 0xFF] + Array("\"}\n".utf8))
        #expect(try h.client.readReply()["error"]?.object?["code"] == "INVALID_REQUEST")
        #expect(try h.client.request(#"{"op":"ping"}"#)["ok"] == true)
    }

    @Test func aTooLongLineClosesTheConnection() throws {
        let h = try ConnectionHarness(maxLineBytes: 100)
        try h.send(#"{"op":"ping","id":1}"# + "\n" + #"{"op":"eval","flag":""# + String(repeating: "x", count: 200) + "\"}\n" + #"{"op":"ping","id":3}"# + "\n")
        let replies = try h.repliesUntilClosed()
        #expect(replies.count == 2)
        #expect(replies.first?["id"] == 1)
        #expect(replies.last?["error"]?.object?["code"] == "TOO_LARGE")
    }

    @Test func anUnterminatedLineOverTheLimitClosesTheConnection() throws {
        let h = try ConnectionHarness(maxLineBytes: 100)
        for _ in 0..<3 {
            try h.send(String(repeating: " ", count: 40))
            usleep(2_000)
        }
        #expect(try h.repliesUntilClosed().map { $0["error"]?.object?["code"] } == ["TOO_LARGE"])
    }

    @Test func aLineExactlyAtTheLimitIsAccepted() throws {
        let h = try ConnectionHarness(maxLineBytes: 64)
        let head = #"{"op":"ping","id":""#
        let line = head + String(repeating: "a", count: 64 - head.utf8.count - 2) + "\"}"
        #expect(line.utf8.count == 64)
        #expect(try h.client.request(line)["ok"] == true)
    }

    @Test func connectionsOverTheLimitAreRefused() throws {
        let connections = Connections(limit: 1)
        let first = try ConnectionHarness(connections: connections)
        #expect(try first.client.request(#"{"op":"ping"}"#)["ok"] == true)  // admitted by now
        let second = try ConnectionHarness(connections: connections)
        #expect(try second.repliesUntilClosed().map { $0["error"]?.object?["code"] } == ["OVERLOADED"])
        #expect(try first.client.request(#"{"op":"ping"}"#)["ok"] == true)
        #expect(connections.count == 1)
        first.client.disconnect()
        #expect(first.eventually { connections.count == 0 })
    }

    @Test func everyReplyComesFromTheSnapshotCurrentWhenItWasComputed() throws {
        let h = try ConnectionHarness()
        let before = try h.client.request(#"{"op":"eval","flags":["color","on-flag"]}"#)
        let next = try Snapshot.compile(json: Array(##"{"flags":{"color":{"state":"ENABLED","variants":{"green":"#0f0"},"defaultVariant":"green"}}}"##.utf8))
        h.store.publish(ServedConfig(snapshot: next, version: "v2", loadedAt: 1))
        try h.send(#"{"op":"eval","flags":["color","on-flag"]}"# + "\n" + #"{"op":"ping"}"# + "\n")
        let replies = try h.replies(2)
        let old = try #require(before["results"]?.array).compactMap(\.object)
        let new = try #require(replies[0]["results"]?.array).compactMap(\.object)
        #expect(old.map { $0["value"] } == ["#00f", true])
        #expect(new.map { $0["value"] } == ["#0f0", nil])
        #expect(new[1]["errorCode"] == "FLAG_NOT_FOUND")
        #expect(replies[1]["configVersion"] == "v2")
    }

    @Test func statusListAndWatch() throws {
        let h = try ConnectionHarness()
        try h.send(#"{"op":"status","id":"s"}"# + "\n" + #"{"op":"list"}"# + "\n" + #"{"op":"watch","id":"w"}"# + "\n")
        let replies = try h.replies(3)
        #expect(replies[0]["id"] == "s")
        #expect(replies[0]["configPath"] == "/flags.json")
        let flags = try #require(replies[1]["flags"]?.array).compactMap(\.object)
        #expect(flags.map { $0["key"] } == ["on-flag", "color", "killed"])
        #expect(flags[2]["state"] == "DISABLED")
        #expect(flags[1]["variants"] == ["red", "blue"])
        #expect(replies[2] == ["id": "w", "ok": true, "watching": true, "configVersion": "v1"])
        h.connections.broadcast(Array("{\"event\":\"configurationChanged\"}\n".utf8))
        #expect(try h.client.readReply() == ["event": "configurationChanged"])
    }

    @Test func drainingAnswersWhatArrivedThenCloses() throws {
        let h = try ConnectionHarness()
        try h.send(#"{"op":"ping","id":1}"# + "\n")
        #expect(try h.client.readReply()["id"] == 1)
        try h.send(#"{"op":"ping","id":2}"# + "\n" + #"{"op":"ping","id":"#)
        usleep(20_000)  // received before the drain, most likely; either way it is answered
        h.loop.drainAll()
        #expect(try h.repliesUntilClosed().map { $0["id"] } == [2])
        #expect(h.eventually { h.connections.count == 0 })
    }

    @Test func aLastLineWithoutNewlineIsAnsweredWhenTheClientHalfCloses() throws {
        let h = try ConnectionHarness()
        try h.send(#"{"op":"ping","id":"last"}"#)
        h.client.finishSending()
        #expect(try h.repliesUntilClosed().map { $0["id"] } == ["last"])
    }
}

extension Sequence {
    func chunks(of size: Int) -> [[Element]] {
        var result: [[Element]] = []
        var current: [Element] = []
        for element in self {
            current.append(element)
            if current.count == size {
                result.append(current)
                current = []
            }
        }
        if !current.isEmpty { result.append(current) }
        return result
    }
}

@Suite("Connection flow control")
struct ConnectionFlowControlTests {
    @Test func aBurstOverTheReplyBudgetIsAnsweredInRoundsAndInOrder() throws {
        let h = try ConnectionHarness(replyBudget: 2048)
        var batch = ""
        for i in 0..<300 { batch += #"{"op":"evalAll","id":\#(i)}"# + "\n" }
        try h.send(batch)
        #expect(try h.replies(300).map { $0["id"] } == (0..<300).map { .int(Int64($0)) })
    }

    /// A client that sends without reading its replies is stopped: once the replies fill the
    /// socket, the connection reads nothing more, so the client's own sends block. Everything
    /// sent is answered, in order, once it reads.
    @Test func nothingMoreIsReadWhileTheClientIsNotReading() throws {
        let h = try ConnectionHarness()
        let fd = h.client.fd
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var sent = 0
        var pending: [UInt8] = []
        var stalledFor = 0
        // Without flow control the connection would read all 64 MiB and queue every reply.
        while sent < 400_000 && stalledFor < 50 {
            if pending.isEmpty { pending = Array((#"{"op":"evalAll","id":\#(sent)}"# + "\n").utf8) }
            let n = pending.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n == pending.count {
                pending = []
                sent += 1
                stalledFor = 0
            } else if n > 0 {
                pending.removeFirst(n)
            } else {
                #expect(errno == EAGAIN)
                stalledFor += 1
                usleep(10_000)
            }
        }
        #expect(stalledFor >= 50, "the connection kept reading while its replies were not taken (\(sent) sent)")
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        let got = try h.replies(sent)
        #expect(got.map { $0["id"] } == (0..<sent).map { .int(Int64($0)) })
        if !pending.isEmpty { try h.client.send(pending) }
        try h.send(#"{"op":"ping","id":"later"}"# + "\n")
        #expect(try h.replies(pending.isEmpty ? 1 : 2).last?["id"] == "later")
    }

    @Test func halfCloseAnswersHeldBackLinesAndTheUnterminatedLast() throws {
        let h = try ConnectionHarness(replyBudget: 512)
        var batch = ""
        for i in 0..<40 { batch += #"{"op":"ping","id":\#(i)}"# + "\n" }
        try h.send(batch + #"{"op":"ping","id":"last"}"#)
        h.client.finishSending()
        #expect(try h.repliesUntilClosed().map { $0["id"] } == (0..<40).map { .int(Int64($0)) } + ["last"])
    }
}
