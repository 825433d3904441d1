import GuidonEngine
import GuidonJSON
import GuidonProtocol
@testable import GuidonServer
import NIOCore
import NIOEmbedded
import Testing

/// A handler on an `EmbeddedChannel`, fed bytes and read back line by line.
struct HandlerHarness {
    let store: ConfigStore
    let connections: Connections
    let channel: EmbeddedChannel

    static let flags = #"""
        {"metadata":{"team":"web"},"flags":{
          "on-flag":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on","metadata":{"updatedBy":"ana"}},
          "color":{"state":"ENABLED","variants":{"red":"#f00","blue":"#00f"},"defaultVariant":"blue"},
          "killed":{"state":"DISABLED","variants":{"on":true},"defaultVariant":"on"}
        }}
        """#

    init(flags: String = HandlerHarness.flags, maxLineBytes: Int = 1024, replyBudget: Int = 256 * 1024, connections: Connections? = nil) throws {
        let snapshot = try Snapshot.compile(json: Array(flags.utf8))
        store = ConfigStore(ServedConfig(snapshot: snapshot, version: "v1", loadedAt: 0))
        self.connections = connections ?? Connections(limit: 10)
        let store = store
        let service = ServiceContext(store: store, connections: self.connections, maxLineBytes: maxLineBytes, replyBudget: replyBudget) {
            DaemonStatus(
                daemonVersion: "test", configPath: "/flags.json", configVersion: store.current.version,
                flagCount: store.current.snapshot.count, loadedAt: 0, uptimeSeconds: 1, lenient: false, warnings: 0,
                connections: 1, lastReload: nil)
        }
        channel = EmbeddedChannel(handler: RequestHandler(service: service))
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/guidon-test.sock")).wait()
    }

    func send(_ text: String) throws {
        try channel.writeInbound(ByteBuffer(string: text))
    }

    /// Every line written so far, parsed.
    func replies() throws -> [JSONObject] {
        var text = ""
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            text += buffer.readString(length: buffer.readableBytes) ?? ""
        }
        guard !text.isEmpty else { return [] }
        #expect(text.hasSuffix("\n"), "replies end with a newline")
        return try text.split(separator: "\n").map { line in
            try #require(try JSONParser(duplicateKeys: .reject).parse(String(line)).object)
        }
    }
}

@Suite("RequestHandler on an EmbeddedChannel")
struct RequestHandlerTests {
    @Test func evalReply() throws {
        let h = try HandlerHarness()
        try h.send(#"{"op":"eval","id":1,"flag":"on-flag","context":{"targetingKey":"u"}}"# + "\n")
        let replies = try h.replies()
        #expect(replies.count == 1)
        #expect(replies[0]["id"] == 1)
        #expect(replies[0]["value"] == true)
        #expect(replies[0]["variant"] == "on")
        #expect(replies[0]["metadata"] == ["team": "web", "updatedBy": "ana"])
    }

    @Test func aLineSplitAcrossReadsIsOneRequest() throws {
        let h = try HandlerHarness()
        let line = #"{"op":"eval","id":"split","flag":"color"}"# + "\n"
        for chunk in line.utf8.chunks(of: 5) { try h.channel.writeInbound(ByteBuffer(bytes: chunk)) }
        let replies = try h.replies()
        #expect(replies.map { $0["id"] } == ["split"])
        #expect(replies[0]["value"] == "#00f")
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let h = try HandlerHarness()
        var batch = ""
        for i in 0..<500 { batch += #"{"op":"\#(i % 2 == 0 ? "ping" : "eval")","id":\#(i),"flag":"color"}"# + "\n" }
        try h.send(batch)
        let replies = try h.replies()
        #expect(replies.map { $0["id"] } == (0..<500).map { .int(Int64($0)) })
    }

    @Test func badLinesGetErrorsAndTheConnectionStaysUsable() throws {
        let h = try HandlerHarness()
        try h.send("not json\n\n   \r\n{\"op\":\"nope\",\"id\":2}\n{\"op\":\"eval\"}\r\n{\"op\":\"ping\",\"id\":3}\r\n")
        let replies = try h.replies()
        #expect(replies.count == 4, "empty lines are ignored")
        #expect(replies[0]["error"]?.object?["code"] == "INVALID_REQUEST")
        #expect(replies[1]["error"]?.object?["code"] == "UNKNOWN_OP")
        #expect(replies[1]["id"] == 2)
        #expect(replies[2]["error"]?.object?["code"] == "INVALID_REQUEST")
        #expect(replies[3]["ok"] == true)
        #expect(h.channel.isActive)
    }

    @Test func nonUTF8GetsAnError() throws {
        let h = try HandlerHarness()
        try h.channel.writeInbound(ByteBuffer(bytes: Array(#"{"op":"eval","flag":""#.utf8) + [0xFE, 0xFF] + Array("\"}\n".utf8)))
        let replies = try h.replies()
        #expect(replies.first?["error"]?.object?["code"] == "INVALID_REQUEST")
        #expect(h.channel.isActive)
    }

    @Test func aTooLongLineClosesTheConnection() throws {
        let h = try HandlerHarness(maxLineBytes: 100)
        try h.send(#"{"op":"ping","id":1}"# + "\n" + #"{"op":"eval","flag":""# + String(repeating: "x", count: 200) + "\"}\n" + #"{"op":"ping","id":3}"# + "\n")
        let replies = try h.replies()
        #expect(replies.count == 2)
        #expect(replies[0]["id"] == 1)
        #expect(replies[1]["error"]?.object?["code"] == "TOO_LARGE")
        #expect(!h.channel.isActive)
    }

    @Test func anUnterminatedLineOverTheLimitClosesTheConnection() throws {
        let h = try HandlerHarness(maxLineBytes: 100)
        for _ in 0..<3 { try h.send(String(repeating: " ", count: 40)) }
        let replies = try h.replies()
        #expect(replies.map { $0["error"]?.object?["code"] } == ["TOO_LARGE"])
        #expect(!h.channel.isActive)
    }

    @Test func aLineExactlyAtTheLimitIsAccepted() throws {
        let h = try HandlerHarness(maxLineBytes: 64)
        let head = #"{"op":"ping","id":""#
        let line = head + String(repeating: "a", count: 64 - head.utf8.count - 2) + "\"}"
        #expect(line.utf8.count == 64)
        try h.send(line + "\n")
        #expect(try h.replies().first?["ok"] == true)
    }

    @Test func connectionsOverTheLimitAreRefused() throws {
        let connections = Connections(limit: 1)
        let first = try HandlerHarness(connections: connections)
        let second = try HandlerHarness(connections: connections)
        #expect(try second.replies().map { $0["error"]?.object?["code"] } == ["OVERLOADED"])
        #expect(!second.channel.isActive)
        try first.send(#"{"op":"ping"}"# + "\n")
        #expect(try first.replies().first?["ok"] == true)
        #expect(connections.count == 1)
        _ = try first.channel.finish()
        #expect(connections.count == 0)
    }

    @Test func everyReplyComesFromTheSnapshotCurrentWhenItWasComputed() throws {
        let h = try HandlerHarness()
        try h.send(#"{"op":"eval","flags":["color","on-flag"]}"# + "\n")
        let next = try Snapshot.compile(json: Array(##"{"flags":{"color":{"state":"ENABLED","variants":{"green":"#0f0"},"defaultVariant":"green"}}}"##.utf8))
        h.store.publish(ServedConfig(snapshot: next, version: "v2", loadedAt: 1))
        try h.send(#"{"op":"eval","flags":["color","on-flag"]}"# + "\n" + #"{"op":"ping"}"# + "\n")
        let replies = try h.replies()
        let before = try #require(replies[0]["results"]?.array).compactMap(\.object)
        let after = try #require(replies[1]["results"]?.array).compactMap(\.object)
        #expect(before.map { $0["value"] } == ["#00f", true])
        #expect(after.map { $0["value"] } == ["#0f0", nil])
        #expect(after[1]["errorCode"] == "FLAG_NOT_FOUND")
        #expect(replies[2]["configVersion"] == "v2")
    }

    @Test func statusListAndWatch() throws {
        let h = try HandlerHarness()
        try h.send(#"{"op":"status","id":"s"}"# + "\n" + #"{"op":"list"}"# + "\n" + #"{"op":"watch","id":"w"}"# + "\n")
        let replies = try h.replies()
        #expect(replies[0]["id"] == "s")
        #expect(replies[0]["configPath"] == "/flags.json")
        let flags = try #require(replies[1]["flags"]?.array).compactMap(\.object)
        #expect(flags.map { $0["key"] } == ["on-flag", "color", "killed"])
        #expect(flags[2]["state"] == "DISABLED")
        #expect(flags[1]["variants"] == ["red", "blue"])
        #expect(replies[2] == ["id": "w", "ok": true, "watching": true, "configVersion": "v1"])
        h.connections.broadcast(Array("{\"event\":\"configurationChanged\"}\n".utf8))
        h.channel.embeddedEventLoop.run()
        #expect(try h.replies() == [["event": "configurationChanged"]])
    }

    @Test func drainingAnswersWhatArrivedThenCloses() throws {
        let h = try HandlerHarness()
        try h.send(#"{"op":"ping","id":1}"# + "\n" + #"{"op":"ping","id":"#)
        h.channel.pipeline.fireUserInboundEventTriggered(DrainEvent())
        #expect(try h.replies().map { $0["id"] } == [1])
        #expect(!h.channel.isActive)
    }

    @Test func aLastLineWithoutNewlineIsAnsweredWhenTheClientHalfCloses() throws {
        let h = try HandlerHarness()
        try h.send(#"{"op":"ping","id":"last"}"#)
        h.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(try h.replies().map { $0["id"] } == ["last"])
        #expect(!h.channel.isActive)
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

@Suite("RequestHandler flow control")
struct RequestHandlerFlowControlTests {
    @Test func aBurstOverTheReplyBudgetIsAnsweredInRoundsAndInOrder() throws {
        let h = try HandlerHarness(replyBudget: 2048)
        var batch = ""
        for i in 0..<300 { batch += #"{"op":"evalAll","id":\#(i)}"# + "\n" }
        try h.send(batch)
        let firstRound = try h.replies()
        #expect(firstRound.count > 0 && firstRound.count < 300, "the budget stops the first round early (\(firstRound.count))")
        h.channel.embeddedEventLoop.run()  // the scheduled continuations
        let rest = try h.replies()
        #expect((firstRound + rest).map { $0["id"] } == (0..<300).map { .int(Int64($0)) })
    }

    @Test func nothingMoreIsAnsweredWhileTheClientIsNotReading() throws {
        let h = try HandlerHarness()
        h.channel.isWritable = false
        var batch = ""
        for i in 0..<50 { batch += #"{"op":"ping","id":\#(i)}"# + "\n" }
        try h.send(batch)
        h.channel.embeddedEventLoop.run()
        #expect(try h.replies().count == 1, "one reply, then it waits")
        try h.send(#"{"op":"ping","id":"later"}"# + "\n")
        #expect(try h.replies().isEmpty)
        h.channel.isWritable = true
        h.channel.pipeline.fireChannelWritabilityChanged()
        h.channel.embeddedEventLoop.run()
        let rest = try h.replies()
        #expect(rest.map { $0["id"] } == (1..<50).map { .int(Int64($0)) } + ["later"])
    }

    @Test func halfCloseAnswersHeldBackLinesAndTheUnterminatedLast() throws {
        let h = try HandlerHarness(replyBudget: 512)
        var batch = ""
        for i in 0..<40 { batch += #"{"op":"ping","id":\#(i)}"# + "\n" }
        try h.send(batch + #"{"op":"ping","id":"last"}"#)
        h.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        h.channel.embeddedEventLoop.run()
        #expect(try h.replies().map { $0["id"] } == (0..<40).map { .int(Int64($0)) } + ["last"])
        #expect(!h.channel.isActive)
    }
}
