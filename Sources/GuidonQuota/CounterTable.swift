/// One stripe's counts, found on the request path without building a `CounterKey`.
///
/// A `CounterKey` holds three strings; building one to look a count up, and the dictionary's
/// copies of it while probing, cost about thirty reference-count operations per `consume`
/// (callgrind). Counts are therefore filed under a `CounterID` of plain integers (the key's
/// seeded digest, its unit and its window) and the key is kept beside the count, to be compared
/// with the request's strings on the way out. Two keys whose 64-bit digests are equal (for n
/// counts, a chance of about n²/2⁶⁵) cannot share an entry: the second is filed in `overflow`
/// under its whole key, which is looked at only when it holds something.
struct CounterTable {
    struct Entry {
        var key: CounterKey
        var counter: Counter
    }

    /// Where a count is, valid until the table next changes shape (an insertion or removal).
    enum Handle: Equatable {
        case main(Dictionary<CounterID, Entry>.Index)
        case overflow(Dictionary<CounterKey, Counter>.Index)
    }

    private var main: [CounterID: Entry] = [:]
    private var overflow: [CounterKey: Counter] = [:]

    var count: Int { main.count + overflow.count }

    mutating func reserveCapacity(_ capacity: Int) { main.reserveCapacity(capacity) }

    /// The count of (`feature`, `tenant`, `user`) in `unit`'s window starting at `windowStart`,
    /// whose digest is `digest` (`SubjectHash`), without copying a string.
    @inline(__always)
    func find(digest: Int, unit: WindowUnit, windowStart: Int64, feature: String, tenant: String, user: String) -> Handle? {
        if let index = main.index(forKey: CounterID(digest: digest, unit: unit, windowStart: windowStart)) {
            let key = main.values[index].key
            if key.feature == feature && key.tenant == tenant && key.user == user { return .main(index) }
        }
        guard !overflow.isEmpty else { return nil }
        return overflow.index(forKey: CounterKey(feature: feature, tenant: tenant, user: user, unit: unit, windowStart: windowStart, digest: digest))
            .map(Handle.overflow)
    }

    subscript(handle: Handle) -> Counter {
        get {
            switch handle {
            case .main(let index): main.values[index].counter
            case .overflow(let index): overflow.values[index]
            }
        }
        set {
            switch handle {
            case .main(let index): main.values[index].counter = newValue
            case .overflow(let index): overflow.values[index] = newValue
            }
        }
    }

    /// Changes the count at `handle` in place.
    @inline(__always)
    mutating func update<R>(_ handle: Handle, _ body: (inout Counter) -> R) -> R {
        switch handle {
        case .main(let index): body(&main.values[index].counter)
        case .overflow(let index): body(&overflow.values[index])
        }
    }

    func key(_ handle: Handle) -> CounterKey {
        switch handle {
        case .main(let index): main.values[index].key
        case .overflow(let index): overflow.keys[index]
        }
    }

    /// The count under `key`, by its whole key (recovery, `usage`, tests).
    subscript(key: CounterKey) -> Counter? {
        get {
            find(digest: key.digest, unit: key.unit, windowStart: key.windowStart, feature: key.feature, tenant: key.tenant, user: key.user)
                .map { self[$0] }
        }
        set {
            if let newValue { insert(key, newValue) } else { removeValue(forKey: key) }
        }
    }

    /// Sets the count under `key`, adding it when missing.
    mutating func insert(_ key: CounterKey, _ counter: Counter) {
        let id = CounterID(key)
        if let index = main.index(forKey: id) {
            if main.values[index].key == key {
                main.values[index].counter = counter
                return
            }
            // Another key with the same digest holds the entry.
            overflow[key] = counter
            return
        }
        if !overflow.isEmpty && overflow[key] != nil {
            overflow[key] = counter
            return
        }
        main[id] = Entry(key: key, counter: counter)
    }

    mutating func removeValue(forKey key: CounterKey) {
        let id = CounterID(key)
        if let index = main.index(forKey: id), main.values[index].key == key {
            main.remove(at: index)
        } else if !overflow.isEmpty {
            overflow.removeValue(forKey: key)
        }
    }

    /// Every key (a copy: the caller may remove them meanwhile).
    var keys: [CounterKey] { Array(main.values.lazy.map(\.key)) + Array(overflow.keys) }
}

/// A count's place in `CounterTable`: integers only, hashed as one word.
struct CounterID: Hashable {
    var digest: Int
    var unit: WindowUnit
    var windowStart: Int64

    init(digest: Int, unit: WindowUnit, windowStart: Int64) {
        self.digest = digest
        self.unit = unit
        self.windowStart = windowStart
    }

    init(_ key: CounterKey) {
        self.init(digest: key.digest, unit: key.unit, windowStart: key.windowStart)
    }

    func hash(into hasher: inout Hasher) {
        // `digest` is already a seeded hash of the strings, and the window's start times an odd
        // constant is one-to-one (the unit adds its record code): one word for the hasher.
        hasher.combine(digest ^ Int(truncatingIfNeeded: UInt64(bitPattern: windowStart) &* 0x9E37_79B9_7F4A_7C15) &+ Int(unit.code))
    }
}
