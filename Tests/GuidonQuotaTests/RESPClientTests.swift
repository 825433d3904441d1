import Foundation
import GuidonRESP
import Synchronization
import Testing

/// Sends `command` and waits for its completion; returns the result and the wait in ms.
func roundTrip(_ client: RESPClient, _ command: [String], timeout: Duration = .seconds(5)) -> (Result<RESPValue, RESPError>, Double) {
    let box = Mutex<Result<RESPValue, RESPError>?>(nil)
    let done = DispatchSemaphore(value: 0)
    let start = Date()
    client.send(RESPCommand.encode(command), timeout: timeout) { result in
        box.withLock { $0 = result }
        done.signal()
    }
    _ = done.wait(timeout: .now() + 30)
    return (box.withLock { $0 } ?? .failure(RESPError(.timeout, "the test gave up")), Date().timeIntervalSince(start) * 1000)
}

func makeClient(_ address: RedisAddress, connections: Int = 2, backoff: UInt64 = 20_000_000) throws -> RESPClient {
    let client = try RESPClient(configuration: .init(address: address, connections: connections,
        connection: RESPConnectionConfiguration(minBackoff: backoff, maxBackoff: 4 * backoff, abandonAfter: 200_000_000)))
    client.start()
    return client
}

@Suite("RESP client against a real redis-server", .serialized)
struct RESPClientTests {
    @Test("commands over a Unix socket and over TCP")
    func basics() throws {
        try withRedis { redis in
            for address in [redis.unixAddress, redis.tcpAddress] {
                let client = try makeClient(address)
                defer { client.shutdown() }
                #expect(roundTrip(client, ["SET", "k-\(address)", "välue"]).0 == .success(.simpleString("OK")))
                #expect(roundTrip(client, ["GET", "k-\(address)"]).0 == .success(.bulkString(Array("välue".utf8))))
                #expect(roundTrip(client, ["GET", "missing"]).0 == .success(.null))
                guard case .failure(let error) = roundTrip(client, ["INCR", "k-\(address)"]).0 else { Issue.record("INCR of text succeeded"); return }
                #expect(error.code == .serverError && error.message.hasPrefix("ERR"))
                // The connection stays usable after an error reply.
                #expect(roundTrip(client, ["ECHO", "still"]).0 == .success(.bulkString(Array("still".utf8))))
            }
        }
    }

    @Test("pipelining: 8 threads × 500 commands, every reply to its own command")
    func pipelining() throws {
        try withRedis { redis in
            let client = try makeClient(redis.unixAddress)
            defer { client.shutdown() }
            let mismatches = Mutex(0)
            let done = DispatchGroup()
            for t in 0..<8 {
                for i in 0..<500 {
                    done.enter()
                    let payload = "t\(t)-\(i)-" + String(repeating: "x", count: i % 97)
                    client.send(RESPCommand.encode(["ECHO", payload]), timeout: .seconds(10)) { result in
                        if result != .success(.bulkString(Array(payload.utf8))) { mismatches.withLock { $0 += 1 } }
                        done.leave()
                    }
                }
            }
            #expect(done.wait(timeout: .now() + 30) == .success)
            #expect(mismatches.withLock { $0 } == 0)
        }
    }

    @Test("a frozen server: commands time out at their deadline, and replies resume once it thaws")
    func frozenServer() throws {
        try withRedis { redis in
            let client = try makeClient(redis.unixAddress)
            defer { client.shutdown() }
            #expect(roundTrip(client, ["PING"]).0 == .success(.simpleString("PONG")))
            redis.pause()
            let (result, waited) = roundTrip(client, ["PING"], timeout: .milliseconds(50))
            redis.resume()
            guard case .failure(let error) = result else { Issue.record("a frozen server answered"); return }
            #expect(error.code == .timeout)
            #expect(waited >= 45 && waited < 1000, "waited \(waited) ms for a 50 ms deadline")
            var recovered = false
            for _ in 0..<100 where !recovered {
                recovered = roundTrip(client, ["PING"], timeout: .milliseconds(200)).0 == .success(.simpleString("PONG"))
                if !recovered { usleep(20_000) }
            }
            #expect(recovered)
        }
    }

    @Test("a stopped server: commands fail fast, and the client reconnects once it is back")
    func reconnect() throws {
        try withRedis { redis in
            let client = try makeClient(redis.tcpAddress)
            defer { client.shutdown() }
            #expect(roundTrip(client, ["SET", "a", "1"]).0 == .success(.simpleString("OK")))
            redis.stop()
            for _ in 0..<5 {
                let (result, waited) = roundTrip(client, ["GET", "a"], timeout: .seconds(2))
                guard case .failure(let error) = result else { Issue.record("a stopped server answered"); return }
                #expect([RESPError.Code.connectionClosed, .connectFailed].contains(error.code), "\(error)")
                #expect(waited < 1000)
            }
            try redis.start()
            var back = false
            for _ in 0..<200 where !back {
                back = roundTrip(client, ["PING"], timeout: .milliseconds(200)).0 == .success(.simpleString("PONG"))
                if !back { usleep(10_000) }
            }
            #expect(back)
        }
    }

    @Test("shutdown fails waiting commands and refuses later ones")
    func shutdown() throws {
        try withRedis { redis in
            let client = try makeClient(redis.unixAddress)
            redis.pause()
            defer { redis.resume() }
            let box = Mutex<RESPError?>(nil)
            let done = DispatchSemaphore(value: 0)
            client.send(RESPCommand.encode(["PING"]), timeout: .seconds(30)) { result in
                if case .failure(let error) = result { box.withLock { $0 = error } }
                done.signal()
            }
            usleep(50_000)
            client.shutdown()
            #expect(done.wait(timeout: .now() + 5) == .success)
            #expect(box.withLock { $0?.code } == .shutdown)
            #expect({ if case .failure(let e) = roundTrip(client, ["PING"]).0 { return e.code == .shutdown }; return false }())
            client.shutdown()
        }
    }
}
