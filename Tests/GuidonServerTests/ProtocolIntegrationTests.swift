import Dispatch
import Foundation
import GuidonJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

let exampleFlags = #"""
    {
      "metadata": {"flagSetId": "it"},
      "flags": {
        "new-checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
                         "metadata": {"updatedBy": "maria", "ticket": "SHOP-1"}},
        "button": {"state": "ENABLED", "variants": {"a": "Buy", "b": "Get"}, "defaultVariant": "b"},
        "limit": {"state": "ENABLED", "variants": {"small": 5, "big": 50}, "defaultVariant": "big"},
        "kill": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}
      }
    }
    """#

@Suite("guidond: every op over the socket", .serialized)
struct ProtocolIntegrationTests {
    @Test func everyOperation() throws {
        let daemon = try RunningDaemon(flags: exampleFlags)
        defer { try? daemon.finish() }
        let c = try daemon.client()

        let eval = try c.request(#"{"op":"eval","id":1,"flag":"new-checkout","type":"boolean","default":false,"context":{"targetingKey":"user-42","tier":"gold"}}"#)
        #expect(eval["id"] == 1)
        #expect(eval["flag"] == "new-checkout")
        #expect(eval["value"] == true)
        #expect(eval["variant"] == "on")
        #expect(eval["metadata"] == ["flagSetId": "it", "updatedBy": "maria", "ticket": "SHOP-1"])

        let disabled = try c.request(#"{"op":"eval","id":"k","flag":"kill","default":false}"#)
        #expect(disabled["reason"] == "DISABLED")
        #expect(disabled["value"] == false, "the caller's default")
        let noDefault = try c.request(#"{"op":"eval","flag":"kill"}"#)
        #expect(noDefault["value"] == nil)
        #expect(noDefault["id"] == nil)

        let missing = try c.request(#"{"op":"eval","flag":"nope","default":"x"}"#)
        #expect(missing["errorCode"] == "FLAG_NOT_FOUND")
        #expect(missing["value"] == "x")

        let many = try c.request(#"{"op":"eval","id":2,"flags":["limit","button","nope"],"context":{}}"#)
        let results = try #require(many["results"]?.array).compactMap(\.object)
        #expect(results.map { $0["flag"] } == ["limit", "button", "nope"])
        #expect(results.map { $0["value"] } == [50, "Get", nil])

        let all = try c.request(#"{"op":"evalAll","id":3,"context":{"targetingKey":"u"}}"#)
        #expect(try #require(all["results"]?.object).keys == ["new-checkout", "button", "limit", "kill"])

        let ping = try c.request(#"{"op":"ping","id":4}"#)
        #expect(ping["ok"] == true)
        #expect(ping["flags"] == 4)
        let version = try #require(ping["configVersion"]?.string)
        #expect(version.count == 16)

        let status = try c.request(#"{"op":"status","id":5}"#)
        #expect(status["configPath"] == .string(daemon.configPath))
        #expect(status["configVersion"] == .string(version))
        #expect(status["flags"] == 4)
        #expect(status["lastReload"] == .null)
        #expect(status["version"]?.string != nil)
        #expect(status["loadedAt"]?.string?.hasSuffix("Z") == true)

        let list = try c.request(#"{"op":"list","id":6}"#)
        let flags = try #require(list["flags"]?.array).compactMap(\.object)
        #expect(flags.map { $0["key"] } == ["new-checkout", "button", "limit", "kill"])
        #expect(flags[0]["metadata"]?.object?["updatedBy"] == "maria")
        #expect(flags[3]["state"] == "DISABLED")
        #expect(flags[1]["defaultVariant"] == "b")

        let watch = try c.request(#"{"op":"watch","id":7}"#)
        #expect(watch == ["id": 7, "ok": true, "watching": true, "configVersion": .string(version)])
    }

    @Test func thousandPipelinedRequestsComeBackInOrder() throws {
        let daemon = try RunningDaemon(flags: exampleFlags)
        defer { try? daemon.finish() }
        let c = try daemon.client()
        var batch = ""
        for i in 0..<1000 {
            switch i % 4 {
            case 0: batch += #"{"op":"eval","id":\#(i),"flag":"button","context":{"targetingKey":"u\#(i)"}}"# + "\n"
            case 1: batch += #"{"op":"ping","id":\#(i)}"# + "\n"
            case 2: batch += #"{"op":"eval","id":\#(i),"flags":["limit","kill"]}"# + "\n"
            default: batch += #"{"op":"bogus","id":\#(i)}"# + "\n"
            }
        }
        try c.send(batch)
        for i in 0..<1000 {
            let reply = try c.readReply()
            #expect(reply["id"] == .int(Int64(i)))
            if i % 4 == 3 { #expect(reply["error"]?.object?["code"] == "UNKNOWN_OP") }
        }
    }

    @Test func badInputGetsErrorsAndNothingElseIsDisturbed() throws {
        let daemon = try RunningDaemon(flags: exampleFlags, extraArguments: ["--max-line-bytes", "1024"])
        defer { try? daemon.finish() }
        let bystander = try daemon.client()
        let c = try daemon.client()
        func code(_ reply: JSONObject) -> JSONValue? { reply["error"]?.object?["code"] }

        #expect(code(try c.request("{\"op\":")) == "INVALID_REQUEST")
        #expect(code(try c.request("]]]")) == "INVALID_REQUEST")
        #expect(code(try c.request(#"{"op":"eval","flag":42}"#)) == "INVALID_REQUEST")
        #expect(code(try c.request(#"{"op":"eval","flag":"x","context":"nope"}"#)) == "INVALID_REQUEST")
        #expect(code(try c.request(#"{"op":"teleport","id":"t"}"#)) == "UNKNOWN_OP")
        try c.send(Array(#"{"op":"eval","flag":"\#u{1}"#.utf8) + [0xC0, 0x80, 0xFF] + Array("\"}\n".utf8))
        #expect(code(try c.readReply()) == "INVALID_REQUEST")
        try c.send(Array(repeating: 0, count: 10) + [0x0A])
        #expect(code(try c.readReply()) == "INVALID_REQUEST")
        try c.send("\n\n\r\n   \n")
        #expect(try c.request(#"{"op":"ping","id":"still-alive"}"#)["id"] == "still-alive", "empty lines get no reply")

        // A line over the limit: TOO_LARGE, then the daemon hangs up.
        try c.send(#"{"op":"eval","flag":""# + String(repeating: "x", count: 2000) + "\"}\n")
        #expect(code(try c.readReply()) == "TOO_LARGE")
        #expect(try c.isClosedByPeer())

        // The same, without ever sending a newline.
        let endless = try daemon.client()
        try? endless.send(String(repeating: "[", count: 4096))
        #expect(code(try endless.readReply()) == "TOO_LARGE")
        #expect(try endless.isClosedByPeer())

        #expect(try bystander.request(#"{"op":"eval","id":"b","flag":"button"}"#)["value"] == "Get")
    }

    @Test func connectionsOverTheLimitAreTurnedAway() throws {
        let daemon = try RunningDaemon(flags: exampleFlags, extraArguments: ["--max-connections", "3"])
        defer { try? daemon.finish() }
        // Wait until the start-up probe's connection is gone: then `first` is the only one.
        let first = try daemon.client()
        try daemon.waitFor("the probe connection to close") { try first.request(#"{"op":"status"}"#)["connections"] == 1 }
        let held = try [first] + (0..<2).map { _ in try daemon.client() }
        for client in held { #expect(try client.request(#"{"op":"ping"}"#)["ok"] == true) }
        let extra = try daemon.client()
        #expect(try extra.readReply()["error"]?.object?["code"] == "OVERLOADED")
        #expect(try extra.isClosedByPeer())
        #expect(try held[0].request(#"{"op":"ping"}"#)["ok"] == true, "admitted connections are unaffected")
        // Closing one makes room again.
        held[2].disconnect()
        try daemon.waitFor("a free slot") {
            guard let c = try? daemon.client() else { return false }
            return (try? c.request(#"{"op":"ping"}"#))?["ok"] == true
        }
    }
}

@Suite("guidond: flow control", .serialized)
struct FlowControlIntegrationTests {
    func residentMegabytes(_ pid: pid_t) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
        else { throw TestFailure("no VmRSS") }
        return kb / 1024
    }

    @Test func aClientThatDoesNotReadItsRepliesDoesNotMakeTheDaemonBuffer() throws {
        let daemon = try RunningDaemon(flags: bundledExampleFlags)
        defer { try? daemon.finish() }
        let before = try residentMegabytes(daemon.process.pid)
        // 20,000 evalAll requests (~340 KB) ask for ~50 MB of replies.
        let greedy = try daemon.client()
        let count = 20_000
        let batch = String(repeating: #"{"op":"evalAll","context":{"targetingKey":"u"}}"# + "\n", count: count)
        let socketPath = daemon.socketPath
        let sender = DispatchQueue(label: "sender")
        let sent = DispatchSemaphore(value: 0)
        let fd = greedy.fd
        sender.async {
            let bytes = Array(batch.utf8)
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { break }
                offset += n
            }
            sent.signal()
        }
        usleep(500_000)
        // Others are served meanwhile, and the daemon has not buffered the replies nobody reads.
        #expect(try LineClient(path: socketPath).request(#"{"op":"ping"}"#)["ok"] == true)
        let during = try residentMegabytes(daemon.process.pid)
        #expect(during - before < 25, "RSS grew from \(before) MB to \(during) MB")
        // Reading them now gets every reply.
        var received = 0
        while received < count, let line = try greedy.readLine() {
            #expect(line.starts(with: Array(#"{"results":{"new-checkout""#.utf8)))
            received += 1
        }
        #expect(received == count)
        sent.wait()
    }
}
