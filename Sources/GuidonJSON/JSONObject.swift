/// A JSON object that keeps its members in document order.
///
/// Lookups are linear for small objects (the common case for evaluation contexts,
/// where that beats hashing) and go through a hash index built once at
/// construction for larger ones. Keys are unique: building from pairs with a
/// repeated key keeps the last value in the first key's position.
public struct JSONObject: Sendable {
    public private(set) var keys: [String]
    public private(set) var values: [JSONValue]
    @usableFromInline var index: [String: Int]?

    @usableFromInline static let indexThreshold = 12

    public init() {
        keys = []
        values = []
        index = nil
    }

    public init<S: Sequence>(_ pairs: S) where S.Element == (String, JSONValue) {
        self.init()
        for (key, value) in pairs { self[key] = value }
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    @inlinable
    func position(of key: String) -> Int? {
        if let index { return index[key] }
        for i in keys.indices where keys[i] == key { return i }
        return nil
    }

    public subscript(key: String) -> JSONValue? {
        get {
            guard let i = position(of: key) else { return nil }
            return values[i]
        }
        set {
            if let i = position(of: key) {
                if let newValue {
                    values[i] = newValue
                } else {
                    keys.remove(at: i)
                    values.remove(at: i)
                    rebuildIndex()
                }
            } else if let newValue {
                append(key, newValue)
            }
        }
    }

    /// Whether `key` is present (possibly with a `null` value).
    public func contains(_ key: String) -> Bool { position(of: key) != nil }

    /// Adds a member after the others, unless `key` is already present: then nothing changes
    /// and the result is `false`. One lookup where `contains` and then the subscript take two.
    public mutating func insertNew(_ key: String, _ value: JSONValue) -> Bool {
        guard position(of: key) == nil else { return false }
        append(key, value)
        return true
    }

    /// Adds a member after the others, without looking for `key`: for a decoder that has already
    /// made sure that no two keys of the object are equal. (Checked in debug builds only: a
    /// repeated key would leave the object with two members so named.)
    public mutating func appendUnique(_ key: String, _ value: JSONValue) {
        assert(position(of: key) == nil, "duplicate key \(key)")
        append(key, value)
    }

    /// Replaces the value of the member at `index` (in document order), keeping its key.
    public mutating func replaceValue(at index: Int, with value: JSONValue) {
        values[index] = value
    }

    /// Removes every member; with `keepingCapacity`, the storage stays for the members to come
    /// (a decoder that fills one object per request then allocates nothing once it has grown).
    public mutating func removeAll(keepingCapacity: Bool = false) {
        if keepingCapacity {
            // A few members, usually: popping is cheaper than the general range removal.
            while keys.popLast() != nil {}
            while values.popLast() != nil {}
        } else {
            keys = []
            values = []
        }
        index = nil
    }

    /// Appends a member whose key is known to be absent.
    private mutating func append(_ key: String, _ value: JSONValue) {
        keys.append(key)
        values.append(value)
        if index != nil {
            index![key] = keys.count - 1
        } else if keys.count > Self.indexThreshold {
            rebuildIndex()
        }
    }

    private mutating func rebuildIndex() {
        guard keys.count > Self.indexThreshold else {
            index = nil
            return
        }
        var built = [String: Int](minimumCapacity: keys.count)
        for (i, key) in keys.enumerated() { built[key] = i }
        index = built
    }
}

extension JSONObject: Sequence {
    public struct Iterator: IteratorProtocol {
        var i = 0
        let object: JSONObject
        public mutating func next() -> (key: String, value: JSONValue)? {
            guard i < object.keys.count else { return nil }
            defer { i += 1 }
            return (object.keys[i], object.values[i])
        }
    }

    public func makeIterator() -> Iterator { Iterator(object: self) }
    public var underestimatedCount: Int { keys.count }
}

extension JSONObject: Hashable {
    /// Objects are equal when they hold the same members, in any order.
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for (key, value) in lhs {
            guard rhs[key] == value else { return false }
        }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        // Order-independent: combine per-member hashes commutatively.
        var combined = 0
        for (key, value) in self {
            var h = Hasher()
            h.combine(key)
            h.combine(value)
            combined ^= h.finalize()
        }
        hasher.combine(count)
        hasher.combine(combined)
    }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init(elements)
    }
}
