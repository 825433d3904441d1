import Dispatch
import Foundation
import GuidonJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Usage limits (issue 14) through real guidonds: `consume`, `usage`, `usage.reset`, the CLI,
/// the embedded store's durability and the Redis store's failure behaviour.
@Suite("guidond: usage limits", .serialized)
struct QuotaIntegrationTests {
    // MARK: - Exactness

    /// 16 clients, each pipelining `perClient` consumes of one hard-limited key (t1's video: 40 a
    /// day) over the given sockets; answers checked in request order. Returns the allowed count.
    static func hammer(_ sockets: [String], tenant: String = "t1", perClient: Int = 10) throws -> (allowed: Int, denied: Int) {
        let allowed = Locked(0)
        let denied = Locked(0)
        let failures = Locked<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            do {
                let client = try LineClient(path: sockets[i % sockets.count], timeoutSeconds: 30)
                var burst = ""
                for n in 0..<perClient { burst += consumeLine("video", tenant: tenant, id: n) + "\n" }
                try client.send(burst)
                for n in 0..<perClient {
                    let reply = try client.readReply()
                    guard reply["id"] == .int(Int64(n)) else { throw TestFailure("reply out of order: \(reply)") }
                    guard reply["degraded"] == false else { throw TestFailure("degraded: \(reply)") }
                    if reply["allowed"] == true { allowed.withLockedValue { $0 += 1 } } else if reply["reason"] == "LIMIT_EXCEEDED" {
                        denied.withLockedValue { $0 += 1 }
                    } else {
                        throw TestFailure("unexpected reply \(reply)")
                    }
                }
            } catch {
                failures.withLockedValue { $0.append("\(error)") }
            }
        }
        if let failure = failures.withLockedValue({ $0.first }) { throw TestFailure(failure) }
        return (allowed.withLockedValue { $0 }, denied.withLockedValue { $0 })
    }

    @Test func sixteenClientsGetExactlyTheMaximumEmbedded() throws {
        let daemon = try RunningDaemon.withQuotas()
        defer { try? daemon.finish() }
        let (allowed, denied) = try Self.hammer([daemon.socketPath])
        #expect(allowed == 40)
        #expect(denied == 120)
        #expect(try daemon.client().usage("video", tenant: "t1")["used"] == 40)
    }

    @Test func sixteenClientsGetExactlyTheMaximumThroughRedis() throws {
        let redis = try TestRedis()
        try redis.start()
        let daemon = try RunningDaemon.withQuotas(quotaStore: redis.unixURL)
        defer { try? daemon.finish() }
        let (allowed, denied) = try Self.hammer([daemon.socketPath])
        #expect(allowed == 40)
        #expect(denied == 120)
        #expect(try daemon.client().usage("video", tenant: "t1")["used"] == 40)
    }

    @Test func twoDaemonsSharingOneRedisGrantExactlyTheMaximum() throws {
        let redis = try TestRedis()
        try redis.start()
        let a = try RunningDaemon.withQuotas(quotaStore: redis.tcpURL)
        defer { try? a.finish() }
        let b = try RunningDaemon.withQuotas(quotaStore: redis.tcpURL)
        defer { try? b.finish() }
        let (allowed, denied) = try Self.hammer([a.socketPath, b.socketPath])
        #expect(allowed == 40)
        #expect(denied == 120)
        #expect(try a.client().usage("video", tenant: "t1")["used"] == 40)
        #expect(try b.client().usage("video", tenant: "t1")["used"] == 40)
    }

    // MARK: - Answers

    @Test func answersCarryTheLimitAndItsWindow() throws {
        let daemon = try RunningDaemon.withQuotas()
        defer { try? daemon.finish() }
        let client = try daemon.client()
        let reply = try client.request(consumeLine("video", tenant: "t1", amount: 3, id: 9))
        #expect(reply["id"] == 9)
        #expect(reply["allowed"] == true)
        #expect(reply["used"] == 3 && reply["limit"] == 40 && reply["remaining"] == 37)
        #expect(reply["window"] == "day" && reply["mode"] == "hard" && reply["degraded"] == false)
        // The day's end, UTC: the next midnight.
        let now = Int64(Date().timeIntervalSince1970)
        let midnight = (now / 86_400 + 1) * 86_400
        let resetAt = try #require(reply["resetAt"]?.string)
        #expect(resetAt == isoDate(midnight) || resetAt == isoDate(midnight + 86_400))

        // The feature's own limit applies to a tenant whose plan grants none (but no one without the feature).
        let poor = try client.consume("video", tenant: "poor")
        #expect(poor["allowed"] == false)
        #expect(poor["reason"] == "NOT_ENTITLED")
        #expect(poor["entitlement"]?.object?["metadata"]?.object?["upgradeTo"] == "pro")
        #expect(poor["degraded"] == false)

        let chat = try client.consume("chat", tenant: "t1")
        #expect(chat["allowed"] == true && chat["unlimited"] == true)

        let usage = try client.usage(nil, tenant: "t1")
        let features = try #require(usage["features"]?.array).compactMap { $0.object?["feature"]?.string }
        #expect(Set(features) == ["video", "exports", "ai", "sms"])
        let one = try client.usage("video", tenant: "t1")
        #expect(one["used"] == 3 && one["remaining"] == 37 && one["limit"] == 40)
        #expect(one["limits"]?.array?.count == 2)
    }

    @Test func idempotencySoftAndShadow() throws {
        let daemon = try RunningDaemon.withQuotas()
        defer { try? daemon.finish() }
        let client = try daemon.client()
        let first = try client.consume("video", tenant: "t2", amount: 2, key: "order-17")
        let again = try client.consume("video", tenant: "t2", amount: 2, key: "order-17")
        #expect(first["used"] == 2)
        #expect(again["used"] == 2 && again["replayed"] == true && again["allowed"] == true)
        #expect(try client.usage("video", tenant: "t2")["used"] == 2)

        // Soft: 3 a month, allowed past it and said to be over.
        var soft: [JSONObject] = []
        for _ in 0..<5 { soft.append(try client.consume("exports", tenant: "t2")) }
        #expect(soft.allSatisfy { $0["allowed"] == true && $0["mode"] == "soft" })
        #expect(soft.map { $0["over"] == true } == [false, false, false, true, true])
        #expect(soft.last?["used"] == 5 && soft.last?["remaining"] == 0)

        // Shadow (2 an hour) never refuses; the user's hard 5 a day does.
        var ai: [JSONObject] = []
        for _ in 0..<6 { ai.append(try client.consume("ai", tenant: "t2", user: "u1")) }
        #expect(ai.prefix(5).allSatisfy { $0["allowed"] == true })
        #expect(ai[2]["shadowOver"] == true)
        #expect(ai[5]["allowed"] == false && ai[5]["reason"] == "LIMIT_EXCEEDED" && ai[5]["window"] == "day")
        // Another user has their own day.
        #expect(try client.consume("ai", tenant: "t2", user: "u2")["allowed"] == true)
        // A per-user limit needs the user.
        let anonymous = try client.consume("ai", tenant: "t2")
        #expect(anonymous["error"]?.object?["code"] == "INVALID_REQUEST")
    }

    @Test func badInputIsRefusedAndNothingCounted() throws {
        let daemon = try RunningDaemon.withQuotas()
        defer { try? daemon.finish() }
        let client = try daemon.client()
        let lines = [
            (#"{"op":"consume","feature":"nope","context":{"tenantId":"t1"}}"#, "unknown feature"),
            (#"{"op":"consume","feature":"video","amount":-1,"context":{"tenantId":"t1"}}"#, "amount"),
            (#"{"op":"consume","feature":"video","amount":0,"context":{"tenantId":"t1"}}"#, "amount"),
            (#"{"op":"consume","feature":"video","amount":1.5,"context":{"tenantId":"t1"}}"#, "amount"),
            (#"{"op":"consume","feature":"video","amount":9007199254740992,"context":{"tenantId":"t1"}}"#, "amount"),
            (#"{"op":"consume","feature":"video","amount":1e300,"context":{"tenantId":"t1"}}"#, "amount"),
            (#"{"op":"consume","feature":"video","amount":"1","context":{"tenantId":"t1"}}"#, "amount"),
            (#"{"op":"consume","feature":"video"}"#, "tenantId"),
            (#"{"op":"consume","feature":"video","context":{"tenantId":true}}"#, "tenantId"),
            (#"{"op":"consume","feature":5,"context":{"tenantId":"t1"}}"#, "feature"),
            (#"{"op":"consume","context":{"tenantId":"t1"}}"#, "feature"),
            (#"{"op":"consume","feature":"video","idempotencyKey":7,"context":{"tenantId":"t1"}}"#, "idempotencyKey"),
            (#"{"op":"consume","feature":"video","idempotencyKey":"","context":{"tenantId":"t1"}}"#, "idempotencyKey"),
            (#"{"op":"usage","feature":"video","amount":1,"context":{"tenantId":"t1"}}"#, "amount"),
        ]
        for (line, mentions) in lines {
            let reply = try client.request(line)
            let error = reply["error"]?.object
            #expect(error?["code"] == "INVALID_REQUEST", "\(line) → \(reply)")
            #expect(error?["message"]?.string?.contains(mentions) == true, "\(line) → \(reply)")
        }
        #expect(try client.usage("video", tenant: "t1")["used"] == 0)
        // The connection still serves.
        #expect(try client.consume("video", tenant: "t1")["used"] == 1)
    }

    // MARK: - Admin, CLI, metrics

    @Test func resetIsAuditedAndTheCLIShowsUsage() throws {
        let daemon = try RunningDaemon.withQuotas()
        defer { try? daemon.finish() }
        let client = try daemon.client()
        for _ in 0..<7 { _ = try client.consume("video", tenant: "t1") }

        let show = try runGuidon(["usage", "t1", "video"], environment: ["GUIDON_SOCKET": daemon.socketPath])
        #expect(show.status == 0, "\(show.output)")
        #expect(show.output.contains("video: 7 of 40 this day (33 left; resets "), "\(show.output)")
        let all = try runGuidon(["usage", "t1"], environment: ["GUIDON_SOCKET": daemon.socketPath])
        #expect(all.output.contains("exports: 0 of 3 this month"), "\(all.output)")

        let admin = try daemon.adminClient()
        let unsigned = try admin.ask(["op": "usage.reset", "tenant": "t1", "feature": "video"])
        #expect(unsigned["error"]?.object?["code"] == "INVALID_ARGUMENT")
        let reset = try runGuidon(
            ["usage", "reset", "t1", "video", "--by", "ana", "--reason", "refund after outage"],
            environment: ["GUIDON_ADMIN_SOCKET": daemon.adminSocketPath])
        #expect(reset.status == 0, "\(reset.output)")
        #expect(reset.output.contains("counts removed"), "\(reset.output)")
        #expect(try client.usage("video", tenant: "t1")["used"] == 0)
        #expect(try client.consume("video", tenant: "t1")["used"] == 1)

        let records = try daemon.auditRecords().filter { $0["action"] == "usage.reset" }
        #expect(records.count == 2)
        #expect(records.first?["result"] == "invalid")
        #expect(records.last?["result"] == "applied" && records.last?["by"] == "ana" && records.last?["reason"] == "refund after outage")
        #expect(records.last?["before"]?.object?["tenant"] == "t1")

        // A reset on the query socket is refused as every admin operation is.
        #expect(try client.request(#"{"op":"usage.reset","tenant":"t1","feature":"video"}"#)["error"]?.object?["code"] == "FORBIDDEN")

        let metrics = try #require(try client.request(#"{"op":"metrics"}"#)["text"]?.string)
        #expect(metrics.contains("guidon_quota_answers_total{result=\"allowed\"} 8"), "\(metrics)")
        #expect(metrics.contains("guidon_requests_total{op=\"consume\"} 8"))
    }

    // MARK: - Durability

    @Test func aCleanStopKeepsEveryCount() throws {
        let daemon = try RunningDaemon.withQuotas()
        let dir = daemon.dir
        let client = try daemon.client()
        for _ in 0..<25 { _ = try client.consume("video", tenant: "t3") }
        client.disconnect()
        #expect(try daemon.process.stop() == 0)
        let again = try RunningDaemon.withQuotas(dir: dir)
        defer { try? again.finish() }
        #expect(try again.client().usage("video", tenant: "t3")["used"] == 25)
    }

    /// Four clients consume as fast as they can; guidond is killed with SIGKILL; a restart must
    /// have every count acknowledged more than one second before the kill.
    @Test func killNineKeepsWhatWasAcknowledgedASecondBefore() throws {
        let daemon = try RunningDaemon.withQuotas()
        let dir = daemon.dir
        let highest = Locked<Int64>(0)
        let stop = Locked(false)
        let group = DispatchGroup()
        let socketPath = daemon.socketPath
        for _ in 0..<4 {
            DispatchQueue.global().async(group: group) {
                guard let client = try? LineClient(path: socketPath) else { return }
                while !stop.withLockedValue({ $0 }) {
                    guard let reply = try? client.consume("sms", tenant: "t4"), case .int(let used)? = reply["used"] else { return }
                    highest.withLockedValue { $0 = max($0, used) }
                }
            }
        }
        // (when, highest acknowledged) every 10 ms.
        var timeline: [(ContinuousClock.Instant, Int64)] = []
        let end = ContinuousClock.now + .milliseconds(2500)
        while ContinuousClock.now < end {
            timeline.append((ContinuousClock.now, highest.withLockedValue { $0 }))
            usleep(10_000)
        }
        let killedAt = ContinuousClock.now
        daemon.process.signal(SIGKILL)
        _ = try daemon.process.waitForExit()
        stop.withLockedValue { $0 = true }
        group.wait()
        let bound = timeline.last { $0.0 <= killedAt - .seconds(1) }?.1 ?? 0
        let acknowledged = highest.withLockedValue { $0 }
        #expect(bound > 0, "nothing was acknowledged a second before the kill")

        let again = try RunningDaemon.withQuotas(dir: dir)
        defer { try? again.finish() }
        let recovered = try #require(try again.client().usage("sms", tenant: "t4")["used"].flatMap { if case .int(let n) = $0 { n } else { nil } })
        print("kill -9 under load: \(acknowledged) acknowledged by the kill, \(bound) a second before, \(recovered) recovered")
        #expect(recovered >= bound)
    }

    // MARK: - Redis going away

    @Test func redisStoppedAndRestartedMidRun() throws {
        let redis = try TestRedis()
        try redis.start()
        let daemon = try RunningDaemon.withQuotas(quotaStore: redis.unixURL, extraArguments: ["--quota-timeout", "50"])
        defer { try? daemon.finish() }
        let client = try daemon.client()
        #expect(try client.consume("sms", tenant: "t1")["degraded"] == false)
        #expect(try client.consume("video", tenant: "t1")["used"] == 1)

        redis.stop()
        for _ in 0..<20 {
            let closed = try client.consume("sms", tenant: "t1")
            #expect(closed["allowed"] == false && closed["degraded"] == true && closed["reason"] == "STORE_UNAVAILABLE", "\(closed)")
            #expect(closed["used"] == .null)
            let open = try client.consume("video", tenant: "t1")
            #expect(open["allowed"] == true && open["degraded"] == true, "\(open)")
        }
        // Pipelined while down: every line answered, in order.
        var burst = ""
        for n in 0..<50 { burst += consumeLine("video", tenant: "t1", id: n) + "\n" + #"{"op":"ping","id":"p\#(n)"}"# + "\n" }
        try client.send(burst)
        for n in 0..<50 {
            #expect(try client.readReply()["id"] == .int(Int64(n)))
            #expect(try client.readReply()["id"] == .string("p\(n)"))
        }
        let usage = try client.usage("video", tenant: "t1")
        #expect(usage["degraded"] == true && usage["used"] == .null)

        try redis.start()
        try daemon.waitFor("counting through Redis again") {
            try client.consume("video", tenant: "t1")["degraded"] == false
        }
        let resumed = try client.consume("video", tenant: "t1")
        #expect(resumed["degraded"] == false && resumed["allowed"] == true)
        // The restarted Redis kept nothing (no persistence): counting starts again from there.
        #expect(try client.usage("video", tenant: "t1")["used"] == resumed["used"])
        #expect(try client.consume("sms", tenant: "t1")["allowed"] == true)
        let metrics = try #require(try client.request(#"{"op":"metrics"}"#)["text"]?.string)
        #expect(metrics.contains("guidon_quota_answers_total{result=\"degraded\"} "), "\(metrics)")
        #expect(!metrics.contains("guidon_quota_answers_total{result=\"degraded\"} 0\n"))
    }

    @Test func usageLimitsOffWithoutAStore() throws {
        let dir = try ScratchDirectory()
        try dir.write("ent.json", quotaEntitlements)
        let daemon = try RunningDaemon(flags: bundledExampleFlags, extraArguments: ["--entitlements", dir.file("ent.json")], dir: dir)
        defer { try? daemon.finish() }
        let reply = try daemon.client().consume("video", tenant: "t1")
        #expect(reply["error"]?.object?["code"] == "UNAVAILABLE")
        #expect(reply["error"]?.object?["message"]?.string?.contains("--state-dir") == true)
    }
}

private func isoDate(_ t: Int64) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.timeZone = TimeZone(identifier: "UTC")
    return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(t)))
}
