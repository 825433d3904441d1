#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a reload added, changed and removed (each sorted): for a reload's log line and a `watch`
/// event. A tenant is changed when its definition's text changed; tenants whose answers change
/// because a plan or feature did are not listed (the plan or feature is).
public struct EntitlementsDiff: Sendable, Hashable {
    public struct Changes: Sendable, Hashable {
        public var added: [String] = []
        public var changed: [String] = []
        public var removed: [String] = []
        public var isEmpty: Bool { added.isEmpty && changed.isEmpty && removed.isEmpty }
    }

    public var features = Changes()
    public var plans = Changes()
    public var tenants = Changes()
    /// Whether `timezone` changed.
    public var timezoneChanged = false

    public var isEmpty: Bool { features.isEmpty && plans.isEmpty && tenants.isEmpty && !timezoneChanged }
}

extension Entitlements {
    /// What changed between `old` and this value.
    public func diff(from old: Entitlements) -> EntitlementsDiff {
        var diff = EntitlementsDiff()
        diff.timezoneChanged = timezone != old.timezone
        diff.features = Self.changes(new: features.map { ($0.key, $0) }, old: old.features.map { ($0.key, $0) })
        diff.plans = Self.changes(new: plans.map { ($0.name, $0) }, old: old.plans.map { ($0.name, $0) })

        let newIndex = tenants.index
        let oldIndex = old.tenants.index
        var changes = EntitlementsDiff.Changes()
        // Tenants reused from `old` by the compile have its ids and definitions: not compared again.
        let reused = reusedFrom === old ? memo.reused : []
        // A compile that kept the ids (an edit of tenants' definitions) shares the previous index:
        // each tenant is then at its old position, and nothing is looked up.
        let sameIndex = newIndex.lookup.slots == oldIndex.lookup.slots && newIndex.count == oldIndex.count
        for t in 0..<newIndex.count {
            if t < reused.count && reused[t] >= 0 { continue }
            let j: Int
            if sameIndex {
                j = t
            } else {
                guard let found = oldIndex.lookup.position(of: newIndex.lookup.key(at: t)) else {
                    changes.added.append(newIndex.key(at: t))
                    continue
                }
                j = found
            }
            if !sameDefinition(t, old, j) { changes.changed.append(newIndex.key(at: t)) }
        }
        if !(newIndex.count == oldIndex.count && changes.added.isEmpty) {
            for j in 0..<oldIndex.count where newIndex.lookup.position(of: oldIndex.lookup.key(at: j)) == nil {
                changes.removed.append(oldIndex.key(at: j))
            }
        }
        changes.added.sort()
        changes.changed.sort()
        changes.removed.sort()
        diff.tenants = changes
        return diff
    }

    private func sameDefinition(_ t: Int, _ old: Entitlements, _ j: Int) -> Bool {
        guard t < memo.spans.count, j < old.memo.spans.count else { return false }
        let a = memo.spans[t]
        let b = old.memo.spans[j]
        guard a.end - a.start == b.end - b.start else { return false }
        return memo.source.withUnsafeBytes { x in
            old.memo.source.withUnsafeBytes { y in
                memcmp(x.baseAddress! + Int(a.start), y.baseAddress! + Int(b.start), Int(a.end - a.start)) == 0
            }
        }
    }

    private static func changes<T: Equatable>(new: [(String, T)], old: [(String, T)]) -> EntitlementsDiff.Changes {
        var changes = EntitlementsDiff.Changes()
        var before: [String: T] = [:]
        for (key, value) in old { before[key] = value }
        var now: Set<String> = []
        for (key, value) in new {
            now.insert(key)
            if let previous = before[key] {
                if previous != value { changes.changed.append(key) }
            } else {
                changes.added.append(key)
            }
        }
        changes.removed = old.map(\.0).filter { !now.contains($0) }
        changes.added.sort()
        changes.changed.sort()
        changes.removed.sort()
        return changes
    }
}
