import Foundation
import GuidonRESP
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Drives `connection` the way an event loop does (here with `poll` on the test's thread):
/// its socket's readiness and its next deadline, until `done()` or 10 s.
private func drive(_ connection: RESPLoopConnection, until done: () -> Bool) {
    let giveUp = RESPClient.now() + 10_000_000_000
    while !done() && RESPClient.now() < giveUp {
        var timeout: Int32 = 100
        if let deadline = connection.nextDeadline {
            let now = RESPClient.now()
            timeout = deadline <= now ? 0 : Int32(min(100, (deadline - now + 999_999) / 1_000_000))
        }
        guard connection.fd >= 0 else {
            usleep(UInt32(max(timeout, 1)) * 1000)
            connection.timePassed()
            continue
        }
        var fd = pollfd(fd: connection.fd, events: Int16(POLLIN) | (connection.wantsWrite ? Int16(POLLOUT) : 0), revents: 0)
        let ready = poll(&fd, 1, timeout)
        if ready > 0 {
            connection.handle(
                readable: fd.revents & Int16(POLLIN) != 0, writable: fd.revents & Int16(POLLOUT) != 0,
                failed: fd.revents & Int16(POLLHUP | POLLERR) != 0)
        }
        connection.timePassed()
    }
}

/// Collects results on the driving thread (completions are called there).
private final class Results: @unchecked Sendable {
    var values: [Int: Result<RESPValue, RESPError>] = [:]
    var offThread = 0
}

@Suite("RESP connection driven by its owner's loop, against a real redis-server", .serialized)
struct RESPLoopConnectionTests {
    @Test("pipelined commands complete in order on the driving thread")
    func pipelining() throws {
        try withRedis { redis in
            let connection = try RESPLoopConnection(address: redis.unixAddress)
            defer { connection.shutdown() }
            let results = Results()
            let thread = pthread_self()
            for i in 0..<300 {
                connection.send(RESPCommand.encode(["ECHO", "m\(i)-" + String(repeating: "x", count: i % 97)]), deadline: RESPClient.now() + 5_000_000_000) { result in
                    if pthread_equal(pthread_self(), thread) == 0 { results.offThread += 1 }
                    results.values[i] = result
                }
            }
            drive(connection) { results.values.count == 300 }
            #expect(results.offThread == 0)
            for i in 0..<300 {
                #expect(results.values[i] == .success(.bulkString(Array(("m\(i)-" + String(repeating: "x", count: i % 97)).utf8))))
            }
        }
    }

    @Test("a frozen server: a command fails at its deadline; a stopped one fails fast, and the connection comes back")
    func deadlinesAndReconnection() throws {
        try withRedis { redis in
            let connection = try RESPLoopConnection(
                address: redis.tcpAddress, configuration: RESPConnectionConfiguration(minBackoff: 20_000_000, maxBackoff: 80_000_000, abandonAfter: 200_000_000))
            defer { connection.shutdown() }
            let results = Results()
            func ask(_ key: Int, _ command: [String], timeout: UInt64) -> (Result<RESPValue, RESPError>?, Double) {
                let start = RESPClient.now()
                connection.send(RESPCommand.encode(command), deadline: start + timeout) { results.values[key] = $0 }
                drive(connection) { results.values[key] != nil }
                return (results.values[key], Double(RESPClient.now() - start) / 1_000_000)
            }
            #expect(ask(0, ["PING"], timeout: 2_000_000_000).0 == .success(.simpleString("PONG")))
            redis.pause()
            let (frozen, waited) = ask(1, ["PING"], timeout: 50_000_000)
            redis.resume()
            #expect({ if case .failure(let e)? = frozen { return e.code == .timeout }; return false }(), "\(String(describing: frozen))")
            #expect(waited >= 45 && waited < 1000, "waited \(waited) ms for a 50 ms deadline")
            var key = 2
            var back = false
            for _ in 0..<100 where !back {
                back = ask(key, ["PING"], timeout: 200_000_000).0 == .success(.simpleString("PONG"))
                key += 1
            }
            #expect(back)
            redis.stop()
            let (stopped, fast) = ask(key, ["PING"], timeout: 2_000_000_000)
            key += 1
            #expect({ if case .failure = stopped { return true }; return false }())
            #expect(fast < 1000)
            try redis.start()
            back = false
            for _ in 0..<200 where !back {
                back = ask(key, ["PING"], timeout: 200_000_000).0 == .success(.simpleString("PONG"))
                key += 1
                if !back { usleep(10_000) }
            }
            #expect(back)
        }
    }
}
