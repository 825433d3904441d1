@testable import GuidonQuota
import Testing

/// The pieces that keep `consume` cheap: a connection's memo of windows, and the stripe's table
/// that finds a count without building its key. Each must answer exactly what the plain
/// computation answers.
@Suite("Quota request path")
struct RequestPathTests {
    @Test("A window memo answers what the zone computes, across boundaries and a clock change")
    func memoMatchesTheZone() throws {
        for rules in [TimeZoneRules.utc, try zone("Europe/Berlin"), try zone("Australia/Lord_Howe")] {
            var memo = WindowMemo()
            // Every 7 minutes 13 seconds over the 2026 spring-forward weekend in Berlin, and
            // Lord Howe's half-hour change, then jumps back and forth across months.
            var instants = Array(stride(from: instant("2026-03-27T00:00:00Z"), to: instant("2026-03-31T00:00:00Z"), by: 433))
            instants += Array(stride(from: instant("2026-04-03T12:00:00Z"), to: instant("2026-04-06T00:00:00Z"), by: 433))
            instants += [instant("2026-12-31T23:59:59Z"), instant("2027-01-01T00:00:00Z"), instant("2026-12-31T23:59:59Z"), 0, -1, 1]
            for t in instants {
                for unit in WindowUnit.allCases {
                    #expect(memo.window(unit, containing: t, in: rules) == rules.window(unit, containing: t), "\(rules.name) \(unit) at \(t)")
                }
            }
        }
    }

    @Test("A memo reset for another zone forgets the first zone's windows")
    func memoReset() throws {
        let berlin = try zone("Europe/Berlin")
        let t = instant("2026-06-15T12:00:00Z")
        var memo = WindowMemo()
        #expect(memo.window(.day, containing: t, in: .utc) == TimeZoneRules.utc.window(.day, containing: t))
        memo.reset()
        #expect(memo.window(.day, containing: t, in: berlin) == berlin.window(.day, containing: t))
        #expect(berlin.window(.day, containing: t) != TimeZoneRules.utc.window(.day, containing: t))
        var windows: [CalendarWindow] = []
        let limits = [QuotaLimit(per: .day, max: 1), QuotaLimit(per: .month, max: 1), QuotaLimit(per: .day, max: 2, scope: .user)]
        memo.windows(of: limits, at: t, in: berlin, into: &windows)
        #expect(windows == limits.map { berlin.window($0.per, containing: t) })
        memo.windows(of: Array(limits.prefix(1)), at: t, in: berlin, into: &windows)
        #expect(windows == [berlin.window(.day, containing: t)])
    }

    @Test("Counts whose digests collide stay apart, are found, changed and removed")
    func collidingDigests() {
        var table = CounterTable()
        // The same digest for four different keys: as if SipHash had collided.
        let keys = [
            CounterKey(feature: "video", tenant: "t1", user: "", unit: .day, windowStart: 86_400, digest: 42),
            CounterKey(feature: "video", tenant: "t2", user: "", unit: .day, windowStart: 86_400, digest: 42),
            CounterKey(feature: "video", tenant: "t1", user: "u1", unit: .day, windowStart: 86_400, digest: 42),
            CounterKey(feature: "export", tenant: "t1", user: "", unit: .day, windowStart: 86_400, digest: 42),
        ]
        for (i, key) in keys.enumerated() { table.insert(key, Counter(used: Int64(i + 1), resetAt: 172_800)) }
        #expect(table.count == 4)
        for (i, key) in keys.enumerated() {
            let handle = table.find(digest: 42, unit: .day, windowStart: 86_400, feature: key.feature, tenant: key.tenant, user: key.user)
            #expect(handle.map { table[$0].used } == Int64(i + 1))
            #expect(handle.map { table.key($0) } == key)
            #expect(table[key]?.used == Int64(i + 1))
        }
        // Another window or unit of the same digest is another count.
        #expect(table.find(digest: 42, unit: .day, windowStart: 172_800, feature: "video", tenant: "t1", user: "") == nil)
        #expect(table.find(digest: 42, unit: .month, windowStart: 86_400, feature: "video", tenant: "t1", user: "") == nil)
        // Changed in place through a handle, in the main table and in the overflow.
        for key in [keys[0], keys[2]] {
            let handle = table.find(digest: 42, unit: .day, windowStart: 86_400, feature: key.feature, tenant: key.tenant, user: key.user)!
            table.update(handle) { $0.used += 100 }
        }
        #expect(table[keys[0]]?.used == 101)
        #expect(table[keys[2]]?.used == 103)
        #expect(table[keys[1]]?.used == 2)
        // Removing the key that holds the main entry leaves the others found.
        table.removeValue(forKey: keys[0])
        #expect(table[keys[0]] == nil)
        #expect(table.count == 3)
        for key in keys.dropFirst() { #expect(table[key] != nil) }
        // A key set again after its entry went to the overflow is updated, not duplicated.
        table[keys[1]] = Counter(used: 7, resetAt: 172_800)
        #expect(table.count == 3)
        #expect(table[keys[1]]?.used == 7)
        #expect(Set(table.keys) == Set(keys.dropFirst()))
        for key in keys.dropFirst() { table[key] = nil }
        #expect(table.count == 0)
        #expect(table.keys.isEmpty)
    }

    @Test("Many keys folded onto eight digests are each counted exactly")
    func manySubjects() throws {
        var table = CounterTable()
        var expected: [CounterKey: Int64] = [:]
        // Digests folded to 3 bits: collisions everywhere.
        for n in 0..<200 {
            let user = n % 3 == 0 ? "" : "u\(n % 7)"
            let key = CounterKey(
                feature: "f\(n % 5)", tenant: "t\(n % 11)", user: user, unit: .hour, windowStart: 3_600 * Int64(n % 2), digest: n % 8)
            let used = (expected[key] ?? 0) + 1
            if let handle = table.find(digest: key.digest, unit: key.unit, windowStart: key.windowStart, feature: key.feature, tenant: key.tenant, user: key.user) {
                table.update(handle) { $0.used = used }
            } else {
                table.insert(key, Counter(used: used, resetAt: 7_200))
            }
            expected[key] = used
        }
        #expect(table.count == expected.count)
        for (key, used) in expected { #expect(table[key]?.used == used, "\(key)") }
    }
}
