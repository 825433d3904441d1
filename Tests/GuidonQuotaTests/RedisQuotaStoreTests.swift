import Foundation
@testable import GuidonQuota
import GuidonRESP
import Synchronization
import Testing

/// Runs `body` with a started Redis store on `address`, shut down afterwards.
func withRedisStore<T>(_ address: RedisAddress, timeout: Duration = .milliseconds(50), _ body: (RedisQuotaStore) throws -> T) throws -> T {
    let store = try RedisQuotaStore(configuration: .init(address: address, timeout: timeout,
        connection: RESPConnectionConfiguration(minBackoff: 20_000_000, maxBackoff: 200_000_000, abandonAfter: 200_000_000)), logger: quietLogger)
    store.start()
    defer { store.shutdown() }
    return try body(store)
}

/// The answer and how long it took, in milliseconds.
func timedConsume(_ store: any QuotaStore, _ request: QuotaRequest) throws -> (QuotaAnswer, Double) {
    let start = Date()
    let answer = try consume(store, request)
    return (answer, Date().timeIntervalSince(start) * 1000)
}

@Suite("Redis quota store", .serialized)
struct RedisQuotaStoreTests {
    @Test("the same semantics as the embedded store, through Redis")
    func semantics() throws {
        try withRedis { redis in
            // Generous timeout: this checks semantics, not degradation, on a loaded machine.
            try withRedisStore(redis.unixAddress, timeout: .seconds(5)) { store in
                try QuotaSemantics.severalLimits(store)
                try QuotaSemantics.scopes(store)
                try QuotaSemantics.softAndShadow(store)
                try QuotaSemantics.idempotency(store)
                try QuotaSemantics.windows(store)
                try QuotaSemantics.badInput(store)
                try QuotaSemantics.resetCounts(store)
                #expect(store.statistics.degraded == 0)
            }
        }
    }

    @Test("exactness: 16 threads, one store, one hard limit")
    func exactness() throws {
        try withRedis { redis in
            try withRedisStore(redis.unixAddress, timeout: .seconds(5)) { store in
                try QuotaSemantics.exactness([store], max: 300, perThread: 40)
            }
        }
    }

    @Test("exactness: two stores (as two guidonds) sharing one Redis, over TCP and a Unix socket")
    func twoStores() throws {
        try withRedis { redis in
            try withRedisStore(redis.tcpAddress, timeout: .seconds(5)) { first in
                try withRedisStore(redis.unixAddress, timeout: .seconds(5)) { second in
                    try QuotaSemantics.exactness([first, second], max: 300, perThread: 40)
                }
            }
        }
    }

    @Test("counts expire with their window: the key's TTL runs to the window's end plus the grace")
    func keyExpiry() throws {
        try withRedis { redis in
            try withRedisStore(redis.unixAddress, timeout: .seconds(5)) { store in
                let limit = QuotaLimit(per: .hour, max: 5)
                let now = june15 + 600  // 12:10: the hour ends in 50 minutes
                _ = try consume(store, consumeRequest([limit], tenant: "ttl", now: now))
                let key = store.counterKey(QuotaSubject(feature: "video", tenant: "ttl"), limit, TimeZoneRules.utc.window(.hour, containing: now))
                #expect(try redis.command(["GET", key]) == .bulkString(Array("1".utf8)))
                let ttl = try redis.command(["TTL", key]).integer ?? -1
                #expect((3000 - 5)...(3000 + 60) ~= ttl, "TTL \(ttl)")
            }
        }
    }

    @Test("a flushed script is loaded again (NOSCRIPT → EVAL), not answered degraded")
    func noscript() throws {
        try withRedis { redis in
            try withRedisStore(redis.unixAddress, timeout: .seconds(5)) { store in
                let limits = [QuotaLimit(per: .day, max: 5)]
                #expect(try consume(store, consumeRequest(limits, tenant: "ns", now: june15)).used == 1)
                try redis.command(["SCRIPT", "FLUSH"])
                let answer = try consume(store, consumeRequest(limits, tenant: "ns", now: june15))
                #expect(answer.used == 2 && !answer.degraded)
                #expect(try redis.command(["SCRIPT", "EXISTS", QuotaScript.sha]) == .array([.integer(1)]))
            }
        }
    }

    @Test("Redis stopped and restarted mid-run: failMode decides within the timeout, then counting resumes")
    func redisDown() throws {
        try withRedis { redis in
            try withRedisStore(redis.unixAddress) { store in
                let open = [QuotaLimit(per: .day, max: 100, failMode: .open)]
                let closed = [QuotaLimit(per: .day, max: 100, failMode: .closed), QuotaLimit(per: .month, max: 1000, failMode: .open)]
                let softClosed = [QuotaLimit(per: .day, max: 100, mode: .soft, failMode: .closed)]
                // Warm up (first connection, script load) with a patient retry.
                var warm = false
                for _ in 0..<50 where !warm {
                    warm = !(try consume(store, consumeRequest(open, tenant: "down", now: june15)).degraded)
                    if !warm { usleep(20_000) }
                }
                #expect(warm)
                redis.stop()
                var slowest = 0.0
                for _ in 0..<20 {
                    let (a, msA) = try timedConsume(store, consumeRequest(open, tenant: "down", now: june15))
                    #expect(a.allowed && a.degraded && a.used == nil && a.remaining == nil)
                    let (b, msB) = try timedConsume(store, consumeRequest(closed, tenant: "down", now: june15))
                    #expect(!b.allowed && b.degraded && b.status.index == 0)
                    let (c, msC) = try timedConsume(store, consumeRequest(softClosed, tenant: "down", now: june15))
                    #expect(c.allowed && c.degraded)  // failMode applies to hard limits only
                    slowest = max(slowest, msA, msB, msC)
                }
                // The timeout is 50 ms; allow for a loaded machine's scheduling, never for a hang.
                #expect(slowest < 50 + 250, "slowest answer \(slowest) ms")
                #expect(store.statistics.degraded >= 60)
                try redis.start()
                var resumed: QuotaAnswer?
                for _ in 0..<200 where resumed == nil {
                    let a = try consume(store, consumeRequest(open, tenant: "down", now: june15))
                    if !a.degraded { resumed = a } else { usleep(10_000) }
                }
                // The restarted Redis kept nothing (no persistence): counting starts again at 1.
                #expect(resumed?.used == 1)
                #expect(try consume(store, consumeRequest(open, tenant: "down", now: june15)).used == 2)
            }
        }
    }

    @Test("a frozen Redis: every answer comes at the timeout, degraded, and counting resumes when it thaws")
    func redisFrozen() throws {
        try withRedis { redis in
            try withRedisStore(redis.unixAddress) { store in
                let limits = [QuotaLimit(per: .day, max: 100, failMode: .closed)]
                var warm = false
                for _ in 0..<50 where !warm {
                    warm = !(try consume(store, consumeRequest(limits, tenant: "frozen", now: june15)).degraded)
                    if !warm { usleep(20_000) }
                }
                redis.pause()
                let answers = onThreads(8) { _ in (try? timedConsume(store, consumeRequest(limits, tenant: "frozen", now: june15))) }
                redis.resume()
                for case let (answer, ms)? in answers {
                    #expect(!answer.allowed && answer.degraded)
                    #expect(ms >= 40 && ms < 50 + 250, "answered after \(ms) ms")
                }
                #expect(answers.allSatisfy { $0 != nil })
                var back = false
                for _ in 0..<200 where !back {
                    back = !(try consume(store, consumeRequest(limits, tenant: "frozen", now: june15)).degraded)
                    if !back { usleep(10_000) }
                }
                #expect(back)
            }
        }
    }

    @Test("an invalid address is refused at construction")
    func invalidAddress() {
        #expect {
            _ = try RedisQuotaStore(configuration: .init(address: .tcp(host: "no-such-host.invalid", port: 6379)), logger: quietLogger)
        } throws: { ($0 as? QuotaStoreError)?.code == .invalidAddress }
    }
}
