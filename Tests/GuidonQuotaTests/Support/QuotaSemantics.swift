import Foundation
import GuidonQuota
import Testing

/// The behaviour every store must have, checked against a fresh store (the embedded and the
/// Redis suites run each of these). Tenants are unique per check so checks can share a Redis.
enum QuotaSemantics {
    static func tenant(_ name: String) -> String { "\(name)-\(UInt32.random(in: 0...UInt32.max))" }

    /// 16 threads race for one hard limit: exactly `max` are allowed.
    static func exactness(_ stores: [any QuotaStore], max: Int64 = 200, perThread: Int = 40) throws {
        let tenant = tenant("exact")
        let limits = [QuotaLimit(per: .day, max: max)]
        let allowed = onThreads(16) { i -> Int in
            var n = 0
            for _ in 0..<perThread {
                let store = stores[i % stores.count]
                if (try? consume(store, consumeRequest(limits, tenant: tenant, now: june15)))?.allowed == true { n += 1 }
            }
            return n
        }
        #expect(allowed.reduce(0, +) == Int(max), "allowed per thread: \(allowed)")
        let used = try usage(stores[0], QuotaUsageRequest(subject: QuotaSubject(feature: "video", tenant: tenant, user: "u1"), limits: limits, now: june15))
        #expect(used.first?.used == max)
    }

    /// 3 a day and 5 a month: both apply, a refusal counts in neither, and the answer names the limit.
    static func severalLimits(_ store: any QuotaStore) throws {
        let tenant = tenant("several")
        let limits = [QuotaLimit(per: .day, max: 3), QuotaLimit(per: .month, max: 5)]
        for i in 1...3 {
            let a = try consume(store, consumeRequest(limits, tenant: tenant, now: june15))
            #expect(a.allowed && a.used == Int64(i) && a.status.index == 0 && a.remaining == Int64(3 - i))
            #expect(a.resetAt == june15 + 12 * 3600 && a.window == .day && a.mode == .hard && !a.degraded)
        }
        let refused = try consume(store, consumeRequest(limits, tenant: tenant, now: june15))
        #expect(!refused.allowed && refused.status.index == 0 && refused.used == 3 && refused.remaining == 0 && refused.status.over)
        // The next day, the month's limit decides once it has the least left.
        let tomorrow = june15 + 86_400
        let a4 = try consume(store, consumeRequest(limits, tenant: tenant, now: tomorrow))
        #expect(a4.allowed && a4.status.index == 1 && a4.used == 4)  // day: 2 left; month: 1 left → month
        let a5 = try consume(store, consumeRequest(limits, tenant: tenant, now: tomorrow))
        #expect(a5.allowed && a5.status.index == 1 && a5.used == 5 && a5.remaining == 0)
        let a6 = try consume(store, consumeRequest(limits, tenant: tenant, now: tomorrow))
        #expect(!a6.allowed && a6.status.index == 1 && a6.used == 5)
        #expect(a6.resetAt == 1_782_864_000)  // 2026-07-01T00:00:00Z
        let state = try usage(store, QuotaUsageRequest(subject: QuotaSubject(feature: "video", tenant: tenant), limits: limits, now: tomorrow))
        #expect(state.map(\.used) == [2, 5] && state.map(\.remaining) == [1, 0])
        // Amounts: 2 more would pass the month; nothing counted.
        let big = try consume(store, consumeRequest(limits, tenant: tenant, amount: 2, now: tomorrow + 86_400))
        #expect(!big.allowed)
    }

    /// A user-scoped limit counts per user; a tenant-scoped one across them.
    static func scopes(_ store: any QuotaStore) throws {
        let tenant = tenant("scopes")
        let limits = [QuotaLimit(per: .hour, max: 2, scope: .user), QuotaLimit(per: .hour, max: 3, scope: .tenant)]
        #expect(try consume(store, consumeRequest(limits, tenant: tenant, user: "a", now: june15)).allowed)
        #expect(try consume(store, consumeRequest(limits, tenant: tenant, user: "a", now: june15)).allowed)
        let a3 = try consume(store, consumeRequest(limits, tenant: tenant, user: "a", now: june15))
        #expect(!a3.allowed && a3.status.index == 0)
        #expect(try consume(store, consumeRequest(limits, tenant: tenant, user: "b", now: june15)).allowed)
        let b2 = try consume(store, consumeRequest(limits, tenant: tenant, user: "b", now: june15))
        #expect(!b2.allowed && b2.status.index == 1 && b2.used == 3)
        // Two limits of one unit and scope read one count.
        let twins = [QuotaLimit(per: .minute, max: 5, mode: .soft), QuotaLimit(per: .minute, max: 2)]
        _ = try consume(store, consumeRequest(twins, tenant: tenant, now: june15))
        let t2 = try consume(store, consumeRequest(twins, tenant: tenant, now: june15))
        #expect(t2.allowed && t2.used == 2 && t2.status.index == 1)
        let t3 = try consume(store, consumeRequest(twins, tenant: tenant, now: june15))
        #expect(!t3.allowed && t3.used == 2)
    }

    static func softAndShadow(_ store: any QuotaStore) throws {
        let tenant = tenant("modes")
        let soft = [QuotaLimit(per: .day, max: 2, mode: .soft)]
        _ = try consume(store, consumeRequest(soft, tenant: tenant, now: june15))
        let s2 = try consume(store, consumeRequest(soft, tenant: tenant, now: june15))
        #expect(s2.allowed && !s2.status.over && s2.remaining == 0)
        let s3 = try consume(store, consumeRequest(soft, tenant: tenant, now: june15))
        #expect(s3.allowed && s3.status.over && s3.used == 3 && s3.remaining == 0 && s3.mode == .soft)

        let shadowTenant = tenant + "-shadow"
        let mixed = [QuotaLimit(per: .day, max: 10), QuotaLimit(per: .hour, max: 1, mode: .shadow)]
        let m1 = try consume(store, consumeRequest(mixed, tenant: shadowTenant, now: june15))
        #expect(m1.allowed && !m1.shadowOver)
        let m2 = try consume(store, consumeRequest(mixed, tenant: shadowTenant, now: june15))
        #expect(m2.allowed && m2.shadowOver && m2.status.index == 0 && m2.remaining == 8)
        let state = try usage(store, QuotaUsageRequest(subject: QuotaSubject(feature: "video", tenant: shadowTenant), limits: mixed, now: june15))
        #expect(state[1].used == 2 && state[1].over)

        let onlyShadow = [QuotaLimit(per: .day, max: 1, mode: .shadow)]
        let o1 = try consume(store, consumeRequest(onlyShadow, tenant: shadowTenant + "-only", now: june15))
        let o2 = try consume(store, consumeRequest(onlyShadow, tenant: shadowTenant + "-only", now: june15))
        #expect(o1.allowed && !o1.status.over && o2.allowed && o2.status.over && o2.shadowOver && o2.mode == .shadow)
    }

    static func idempotency(_ store: any QuotaStore) throws {
        let tenant = tenant("idem")
        let limits = [QuotaLimit(per: .day, max: 2)]
        let first = try consume(store, consumeRequest(limits, tenant: tenant, key: "order-1", now: june15))
        let again = try consume(store, consumeRequest(limits, tenant: tenant, key: "order-1", now: june15 + 60))
        #expect(first.allowed && first.used == 1 && !first.replayed)
        #expect(again.replayed && again.allowed == first.allowed && again.used == first.used && again.resetAt == first.resetAt)
        // Another key counts; a third is refused, and its refusal is replayed as such.
        #expect(try consume(store, consumeRequest(limits, tenant: tenant, key: "order-2", now: june15)).used == 2)
        let refused = try consume(store, consumeRequest(limits, tenant: tenant, key: "order-3", now: june15))
        let refusedAgain = try consume(store, consumeRequest(limits, tenant: tenant, key: "order-3", now: june15 + 1))
        #expect(!refused.allowed && !refusedAgain.allowed && refusedAgain.replayed)
        // The same key for another user is another request.
        let other = try consume(store, consumeRequest([QuotaLimit(per: .day, max: 5)], tenant: tenant, user: "u2", key: "order-1", now: june15))
        #expect(!other.replayed)
        // After 24 hours the key is forgotten: counted again, in the new day's window.
        let later = try consume(store, consumeRequest(limits, tenant: tenant, key: "order-1", now: june15 + 86_400 + 1))
        #expect(!later.replayed && later.allowed && later.used == 1)
        // Concurrent repeats of one key count once.
        let raceTenant = tenant + "-race"
        let answers = onThreads(8) { _ in
            try? consume(store, consumeRequest([QuotaLimit(per: .day, max: 100)], tenant: raceTenant, key: "same", now: june15))
        }
        #expect(answers.allSatisfy { $0?.used == 1 })
        let state = try usage(store, QuotaUsageRequest(subject: QuotaSubject(feature: "video", tenant: raceTenant), limits: [QuotaLimit(per: .day, max: 100)], now: june15))
        #expect(state[0].used == 1)
    }

    static func windows(_ store: any QuotaStore) throws {
        let tenant = tenant("windows")
        let berlin = try TimeZoneRules.load("Europe/Berlin")
        let limits = [QuotaLimit(per: .day, max: 1)]
        // 2026-03-29 (23 hours in Berlin): 23:30 local is still that day; 00:30 the next.
        let late = instant("2026-03-29T23:30:00+02:00")
        let a = try consume(store, consumeRequest(limits, tenant: tenant, now: late, zone: berlin))
        #expect(a.allowed && a.resetAt == instant("2026-03-30T00:00:00+02:00"))
        #expect(try !consume(store, consumeRequest(limits, tenant: tenant, now: late + 60, zone: berlin)).allowed)
        let next = try consume(store, consumeRequest(limits, tenant: tenant, now: late + 3600, zone: berlin))
        #expect(next.allowed && next.used == 1 && next.resetAt == instant("2026-03-31T00:00:00+02:00"))
    }

    static func badInput(_ store: any QuotaStore) throws {
        let tenant = tenant("bad")
        let limits = [QuotaLimit(per: .day, max: 10)]
        func refused(_ request: QuotaRequest, _ code: QuotaStoreError.Code, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(sourceLocation: sourceLocation) { try consume(store, request) } throws: { error in
                guard let error = error as? QuotaStoreError else { return false }
                return error.code == code && error.message.contains(fragment)
            }
        }
        refused(consumeRequest(limits, tenant: tenant, amount: 0, now: june15), .invalidAmount, "amount 0")
        refused(consumeRequest(limits, tenant: tenant, amount: -5, now: june15), .invalidAmount, "amount -5")
        refused(consumeRequest(limits, tenant: tenant, amount: QuotaLimit.maximumValue + 1, now: june15), .invalidAmount, "outside 1…")
        refused(consumeRequest([QuotaLimit(per: .day, max: -1)], tenant: tenant, now: june15), .invalidLimit, "max -1")
        refused(consumeRequest([], tenant: tenant, now: june15), .invalidLimit, "0 limits")
        refused(consumeRequest([QuotaLimit(per: .day, max: 1, scope: .user)], tenant: tenant, user: nil, now: june15), .invalidKey, "targeting key")
        refused(consumeRequest(limits, tenant: "", now: june15), .invalidKey, "tenant is empty")
        refused(consumeRequest(limits, tenant: tenant, key: String(repeating: "k", count: 600), now: june15), .invalidKey, "idempotency key is 600 bytes")
        // Past a soft limit the count may grow to the largest value, and not past it.
        let soft = [QuotaLimit(per: .day, max: 1, mode: .soft)]
        #expect(try consume(store, consumeRequest(soft, tenant: tenant, amount: QuotaLimit.maximumValue - 1, now: june15)).allowed)
        refused(consumeRequest(soft, tenant: tenant, amount: 2, now: june15), .overflow, "would pass")
        // Nothing of the refused requests was counted.
        let state = try usage(store, QuotaUsageRequest(subject: QuotaSubject(feature: "video", tenant: tenant), limits: limits + soft, now: june15))
        #expect(state.map(\.used) == [QuotaLimit.maximumValue - 1, QuotaLimit.maximumValue - 1])
        #expect(try consume(store, consumeRequest(soft, tenant: tenant, amount: 1, now: june15)).used == QuotaLimit.maximumValue)
    }

    static func resetCounts(_ store: any QuotaStore) throws {
        let tenant = tenant("reset")
        let limits = [QuotaLimit(per: .day, max: 5, scope: .user), QuotaLimit(per: .month, max: 50)]
        for user in ["a", "b"] { _ = try consume(store, consumeRequest(limits, tenant: tenant, user: user, now: june15)) }
        _ = try consume(store, consumeRequest(limits, tenant: tenant, user: "a", feature: "other", now: june15))
        // One user's counts only (its day count); the tenant's month count stays.
        #expect(try reset(store, QuotaSubject(feature: "video", tenant: tenant, user: "a")) == 1)
        var a = try usage(store, QuotaUsageRequest(subject: QuotaSubject(feature: "video", tenant: tenant, user: "a"), limits: limits, now: june15))
        #expect(a.map(\.used) == [0, 2])
        // Everything of the tenant's feature.
        #expect(try reset(store, QuotaSubject(feature: "video", tenant: tenant)) == 2)
        a = try usage(store, QuotaUsageRequest(subject: QuotaSubject(feature: "video", tenant: tenant, user: "b"), limits: limits, now: june15))
        #expect(a.map(\.used) == [0, 0])
        let other = try usage(store, QuotaUsageRequest(subject: QuotaSubject(feature: "other", tenant: tenant, user: "a"), limits: limits, now: june15))
        #expect(other.map(\.used) == [1, 1])
    }
}
