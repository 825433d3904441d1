import Foundation
@testable import GuidonQuota
import GuidonRESP
import Testing

/// Runs `body` with a started embedded store on a fresh state directory, then shuts it down.
func withEmbeddedStore<T>(
    directory: ScratchDirectory? = nil, clock: ManualClock? = nil, compactAfterBytes: Int = 4 << 20,
    _ body: (EmbeddedQuotaStore, ScratchDirectory) throws -> T
) throws -> T {
    let scratch = try directory ?? ScratchDirectory()
    defer { if directory == nil { scratch.remove() } }
    let fixed: @Sendable () -> Int64 = { june15 }
    let configuration = EmbeddedQuotaStore.Configuration(
        stateDirectory: scratch.file("state"), flushInterval: .milliseconds(20), compactAfterBytes: compactAfterBytes,
        clock: clock?.function ?? fixed)
    let store = EmbeddedQuotaStore(configuration: configuration, logger: quietLogger)
    try store.start()
    defer { store.shutdown() }
    return try body(store, scratch)
}

@Suite("Embedded quota store")
struct EmbeddedQuotaStoreTests {
    @Test("exactness: 16 threads racing for one hard limit get exactly max")
    func exactness() throws {
        try withEmbeddedStore { store, _ in try QuotaSemantics.exactness([store], max: 500, perThread: 100) }
    }

    @Test("several limits all apply; a refusal counts in none")
    func severalLimits() throws { try withEmbeddedStore { store, _ in try QuotaSemantics.severalLimits(store) } }

    @Test("tenant and user scopes")
    func scopes() throws { try withEmbeddedStore { store, _ in try QuotaSemantics.scopes(store) } }

    @Test("soft limits allow and say so; shadow limits count and never deny")
    func softAndShadow() throws { try withEmbeddedStore { store, _ in try QuotaSemantics.softAndShadow(store) } }

    @Test("idempotency keys: the first answer again, counted once, forgotten after 24 hours")
    func idempotency() throws { try withEmbeddedStore { store, _ in try QuotaSemantics.idempotency(store) } }

    @Test("windows in a time zone, across a daylight-saving change")
    func windows() throws { try withEmbeddedStore { store, _ in try QuotaSemantics.windows(store) } }

    @Test("bad input is refused with a coded error and nothing is counted")
    func badInput() throws { try withEmbeddedStore { store, _ in try QuotaSemantics.badInput(store) } }

    @Test("reset forgets one user's or every count of a tenant's feature")
    func reset() throws { try withEmbeddedStore { store, _ in try QuotaSemantics.resetCounts(store) } }

    @Test("a store not started, or shut down, refuses with `stopped`")
    func stopped() throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let store = EmbeddedQuotaStore(configuration: .init(stateDirectory: scratch.file("s")), logger: quietLogger)
        let request = consumeRequest([QuotaLimit(per: .day, max: 1)], now: june15)
        #expect { try store.consume(request) } throws: { ($0 as? QuotaStoreError)?.code == .stopped }
        try store.start()
        #expect(try store.consume(request).allowed)
        store.shutdown()
        store.shutdown()
        #expect { try store.consume(request) } throws: { ($0 as? QuotaStoreError)?.code == .stopped }
    }

    @Test("a clean stop loses nothing: counts, idempotency keys and resets come back")
    func cleanStop() throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let limits = [QuotaLimit(per: .day, max: 100, scope: .user), QuotaLimit(per: .month, max: 1000)]
        let first = try withEmbeddedStore(directory: scratch) { store, _ in
            for i in 0..<50 { _ = try store.consume(consumeRequest(limits, tenant: "t\(i % 5)", user: "u\(i % 3)", now: june15)) }
            _ = try store.reset(QuotaSubject(feature: "video", tenant: "t4"))
            return try store.consume(consumeRequest(limits, tenant: "t0", user: "u0", key: "k1", now: june15))
        }
        // Everything was in the snapshot: the log is empty after a clean stop.
        let logSize = (try FileManager.default.attributesOfItem(atPath: scratch.file("state/quota.log"))[.size] as? Int) ?? -1
        #expect(logSize == 0)
        try withEmbeddedStore(directory: scratch) { store, _ in
            let t0 = try store.usage(QuotaUsageRequest(subject: QuotaSubject(feature: "video", tenant: "t0", user: "u0"), limits: limits, now: june15))
            #expect(first.used == 5)
            #expect(t0.map(\.used) == [5, 11])
            let t4 = try store.usage(QuotaUsageRequest(subject: QuotaSubject(feature: "video", tenant: "t4", user: "u0"), limits: limits, now: june15))
            #expect(t4.map(\.used) == [0, 0])
            let replay = try store.consume(consumeRequest(limits, tenant: "t0", user: "u0", key: "k1", now: june15))
            #expect(replay.replayed && replay.used == first.used)
        }
    }

    @Test("recovery: from the log alone, with a torn tail cut off; expired windows dropped")
    func recovery() throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let clock = ManualClock(june15)
        let limits = [QuotaLimit(per: .hour, max: 100), QuotaLimit(per: .month, max: 1000)]
        try withEmbeddedStore(directory: scratch, clock: clock) { store, _ in
            for _ in 0..<7 { _ = try store.consume(consumeRequest(limits, now: june15)) }
            store.flushNow()
            // Take a copy of the log as a crash would leave it (no snapshot yet), plus half a frame.
            var log = try #require(FileManager.default.contents(atPath: scratch.file("state/quota.log")))
            #expect(!log.isEmpty)
            log.append(contentsOf: Array("GQL1".utf8) + [200, 0, 0, 0, 1, 2, 3, 4] + [9, 9])
            try FileManager.default.createDirectory(atPath: scratch.file("crashed"), withIntermediateDirectories: true)
            #expect(FileManager.default.createFile(atPath: scratch.file("crashed/quota.log"), contents: log))
        }
        let crashed = ScratchDirectory(existing: scratch.file("crashed-root"))
        try FileManager.default.createDirectory(atPath: crashed.path, withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: scratch.file("crashed"), toPath: crashed.file("state"))
        // Two hours later: the hour's count is gone, the month's is not.
        clock.set(june15 + 2 * 3600 + 120)
        try withEmbeddedStore(directory: crashed, clock: clock) { store, _ in
            let state = try store.usage(QuotaUsageRequest(subject: QuotaSubject(feature: "video", tenant: "t1"), limits: limits, now: june15))
            #expect(state.map(\.used) == [0, 7])
        }
        // The torn tail was cut off: the log is whole frames again.
        let log = try #require(FileManager.default.contents(atPath: crashed.file("state/quota.log")))
        #expect(log.count == 0 || !log.suffix(2).elementsEqual([9, 9]))
    }

    @Test("expired windows are dropped from memory while running")
    func expiryWhileRunning() throws {
        let clock = ManualClock(june15)
        try withEmbeddedStore(clock: clock) { store, _ in
            _ = try store.consume(consumeRequest([QuotaLimit(per: .minute, max: 5)], now: june15))
            _ = try store.consume(consumeRequest([QuotaLimit(per: .day, max: 5)], now: june15))
            #expect(store.countsInMemory == 2)
            clock.set(june15 + 600)
            // The flusher drops expired windows every 5 s of its clock; move past that.
            store.flushNow()
            clock.set(june15 + 606)
            store.flushNow()
            #expect(store.countsInMemory == 1)
        }
    }

    @Test("compaction rewrites the snapshot and empties the log; a restart reads it back")
    func compaction() throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let limits = [QuotaLimit(per: .day, max: 1_000_000)]
        try withEmbeddedStore(directory: scratch, compactAfterBytes: 2048) { store, _ in
            for i in 0..<400 {
                _ = try store.consume(consumeRequest(limits, tenant: "t\(i % 40)", now: june15))
                if i % 50 == 0 { store.flushNow() }
            }
            store.flushNow()
            #expect(FileManager.default.fileExists(atPath: scratch.file("state/quota.snapshot")))
        }
        try withEmbeddedStore(directory: scratch) { store, _ in
            for t in 0..<40 {
                let state = try store.usage(QuotaUsageRequest(subject: QuotaSubject(feature: "video", tenant: "t\(t)"), limits: limits, now: june15))
                #expect(state[0].used == 10)
            }
        }
    }

    @Test("a damaged snapshot refuses to start, saying which file")
    func damagedSnapshot() throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        try withEmbeddedStore(directory: scratch) { store, _ in _ = try store.consume(consumeRequest([QuotaLimit(per: .day, max: 9)], now: june15)) }
        let path = scratch.file("state/quota.snapshot")
        var bytes = try #require(FileManager.default.contents(atPath: path))
        bytes[bytes.count - 1] ^= 0xFF
        #expect(FileManager.default.createFile(atPath: path, contents: bytes))
        let store = EmbeddedQuotaStore(configuration: .init(stateDirectory: scratch.file("state")), logger: quietLogger)
        #expect { try store.start() } throws: { error in
            guard let error = error as? QuotaStoreError else { return false }
            return error.code == .stateUnreadable && error.message.contains(path)
        }
    }
}


@Suite("Quota configuration")
struct QuotaConfigurationTests {
    @Test("--quota-store: absent is the embedded store under the state directory; Redis addresses parse; others are refused")
    func parse() throws {
        #expect(try QuotaConfiguration(quotaStore: nil, stateDirectory: "/var/lib/guidon").store == .embedded(stateDirectory: "/var/lib/guidon/quota"))
        #expect(try QuotaConfiguration(quotaStore: "redis://10.0.0.5:6380", stateDirectory: "/s").store == .redis(.tcp(host: "10.0.0.5", port: 6380)))
        #expect(try QuotaConfiguration(quotaStore: "redis+unix:///run/redis.sock", stateDirectory: "/s").store == .redis(.unix(path: "/run/redis.sock")))
        #expect {
            try QuotaConfiguration(quotaStore: "memcached://x", stateDirectory: "/s")
        } throws: { ($0 as? QuotaStoreError)?.code == .invalidAddress && "\($0)".contains("--quota-store") }
    }

    @Test("the embedded backend answers on the caller's thread and keeps its counts across a restart")
    func embeddedBackend() throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let configuration = try QuotaConfiguration(quotaStore: nil, stateDirectory: scratch.path)
        for expected: Int64 in [1, 2] {
            let backend = try QuotaBackend.start(configuration, logger: quietLogger)
            guard case .immediate(let store) = backend else { Issue.record("not immediate"); return }
            let answer = try store.consume(consumeRequest([QuotaLimit(per: .month, max: 5)], now: EmbeddedQuotaStore.wallClock()))
            #expect(answer.used == expected)
            backend.shutdown()
            backend.shutdown()
        }
    }
}
