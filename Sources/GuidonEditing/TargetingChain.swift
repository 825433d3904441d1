import GuidonJSON

/// A flag's targeting in the one shape the targeting verbs read, change and write back: an `if`
/// chain of rules, each a condition and the variant it serves, then what everyone else gets.
///
/// ```json
/// {"if": [
///   {"in": [{"var": "tenantId"}, ["tenant-0666"]]}, "off",                     ← a deny-list
///   {"and": [{">=": [{"var": "$flagd.timestamp"}, 1795737600]},
///            {"<": [{"var": "$flagd.timestamp"}, 1796083200]}]}, "on",        ← a schedule
///   {"in": [{"var": "targetingKey"}, ["user-1001", "user-2002"]]}, "on",        ← an allow-list
///   {"ends_with": [{"var": "email"}, "@acme.example"]}, "on",                   ← e-mail domains
///   {"fractional": [["on", 10], ["off", 90]]}                                   ← the rest: a rollout
/// ]}
/// ```
///
/// The final member is a variant name, a `fractional` (a rollout or an A/B/n split), or absent
/// (the default variant). With no rules the final stands alone (`{"fractional": …}`), as flag
/// files are written by hand. A condition the verbs do not write themselves (a `$ref`, a
/// `sem_ver` test…) is kept as it is, in its place: only targeting that is not a chain of
/// conditions and variant names at all is beyond the verbs (see `parse`).
///
/// Rules are never reordered: the first match wins, and a person reading the file reads them in
/// that order. New rules go where their kind belongs: deny-lists (subjects pinned to the flag's
/// "off" variant) first, then schedules, then allow-lists, so that an opt-out is never overridden
/// by a time window and a time window (a launch, a maintenance window) applies to everyone else.
struct TargetingChain: Equatable {
    enum Condition: Equatable {
        /// `{"in": [{"var": attribute}, [values…]]}`: the attribute is one of the values.
        case values(attribute: String, [JSONValue])
        /// `{"ends_with": [{"var": attribute}, suffix]}`, or an `or` of several with the same
        /// attribute: e-mail domains.
        case suffixes(attribute: String, [String])
        /// `$flagd.timestamp` in `[start, end)` (either bound may be missing).
        case window(start: Int64?, end: Int64?)
        /// Anything else, kept verbatim.
        case other(JSONValue)

        /// The kind of subject list this is, for values and suffixes.
        var list: SubjectList? {
            switch self {
            case .values(let attribute, _): SubjectList(attribute: attribute, suffixes: false)
            case .suffixes(let attribute, _): SubjectList(attribute: attribute, suffixes: true)
            default: nil
            }
        }

        var isWindow: Bool {
            if case .window = self { return true }
            return false
        }
    }

    /// A list of subjects: values of an attribute, or suffixes of it.
    struct SubjectList: Equatable {
        var attribute: String
        var suffixes: Bool
    }

    struct Rule: Equatable {
        var condition: Condition
        var variant: String
    }

    struct Bucket: Equatable {
        var variant: String
        var weight: Int64
    }

    enum Final: Equatable {
        /// Nothing: the default variant.
        case none
        case variant(String)
        /// `fractional`, with its bucketing value when one is given (else flagd's default:
        /// the flag key and the targeting key).
        case fractional(bucketBy: JSONValue?, [Bucket])
    }

    var rules: [Rule] = []
    var final: Final = .none

    static let timestamp = "$flagd.timestamp"

    // MARK: - Reading

    /// The chain `targeting` holds, or why it is not one (`nil` targeting: none).
    static func parse(_ targeting: JSONValue?) -> Result<TargetingChain, Unsupported> {
        guard let targeting else { return .success(TargetingChain()) }
        guard case .object(let object) = targeting else {
            return .failure(Unsupported(reason: "it is \(targeting.typeName == "array" ? "an" : "a") \(targeting.typeName), not a rule"))
        }
        if object.isEmpty { return .success(TargetingChain()) }
        guard object.count == 1, let op = object.keys.first, let arguments = object.values.first else {
            return .failure(Unsupported(reason: "it is an object of \(object.count) members, not one rule"))
        }
        switch op {
        case "fractional":
            guard let final = fractional(arguments) else {
                return .failure(Unsupported(reason: "its fractional split is not a list of [variant, integer weight] buckets"))
            }
            return .success(TargetingChain(rules: [], final: final))
        case "if":
            guard case .array(let items) = arguments, items.count >= 2 else {
                return .failure(Unsupported(reason: "its \"\(op)\" has fewer than two arguments"))
            }
            var chain = TargetingChain()
            var i = 0
            while i + 1 < items.count {
                guard case .string(let variant) = items[i + 1] else {
                    return .failure(Unsupported(reason: "rule \(i / 2 + 1) serves a computed value (\(items[i + 1])), not a variant name"))
                }
                chain.rules.append(Rule(condition: condition(items[i]), variant: variant))
                i += 2
            }
            if i < items.count {
                switch items[i] {
                case .null: chain.final = .none
                case .string(let name): chain.final = .variant(name)
                case .object(let last) where last.count == 1 && last["fractional"] != nil:
                    guard let final = fractional(last["fractional"]!) else {
                        return .failure(Unsupported(reason: "its last fractional split is not a list of [variant, integer weight] buckets"))
                    }
                    chain.final = final
                default:
                    return .failure(Unsupported(reason: "what it serves when no rule matches (\(items[i])) is neither a variant name nor a fractional split"))
                }
            }
            return .success(chain)
        default:
            return .failure(Unsupported(reason: "it is a \"\(op)\" rule, not an \"if\" chain of conditions and variants"))
        }
    }

    struct Unsupported: Error {
        var reason: String
    }

    private static func fractional(_ arguments: JSONValue) -> Final? {
        guard case .array(var items) = arguments, !items.isEmpty else { return nil }
        var bucketBy: JSONValue?
        if items[0].array == nil {
            bucketBy = items.removeFirst()
        }
        var buckets: [Bucket] = []
        for item in items {
            guard case .array(let pair) = item, pair.count == 1 || pair.count == 2, case .string(let name) = pair[0] else { return nil }
            if pair.count == 1 {
                buckets.append(Bucket(variant: name, weight: 1))
            } else if case .int(let weight) = pair[1] {
                buckets.append(Bucket(variant: name, weight: weight))
            } else {
                return nil
            }
        }
        return buckets.isEmpty ? nil : .fractional(bucketBy: bucketBy, buckets)
    }

    /// `{"var": name}` → name.
    private static func variable(_ value: JSONValue) -> String? {
        guard case .object(let o) = value, o.count == 1, case .string(let name)? = o["var"] else { return nil }
        return name
    }

    private static func condition(_ value: JSONValue) -> Condition {
        guard case .object(let o) = value, o.count == 1, let op = o.keys.first, case .array(let args)? = o.values.first
        else { return .other(value) }
        switch op {
        case "in":
            guard args.count == 2, let attribute = variable(args[0]), case .array(let values) = args[1],
                values.allSatisfy({ $0.string != nil || $0.number != nil })
            else { return .other(value) }
            return .values(attribute: attribute, values)
        case "ends_with":
            guard let test = endsWith(args) else { return .other(value) }
            return .suffixes(attribute: test.attribute, [test.suffix])
        case "or":
            var attribute: String?
            var suffixes: [String] = []
            for arg in args {
                guard case .object(let inner) = arg, inner.count == 1, case .array(let innerArgs)? = inner["ends_with"],
                    let test = endsWith(innerArgs), attribute == nil || attribute == test.attribute
                else { return .other(value) }
                attribute = test.attribute
                suffixes.append(test.suffix)
            }
            guard let attribute, suffixes.count >= 2 else { return .other(value) }
            return .suffixes(attribute: attribute, suffixes)
        case ">=":
            guard let start = bound(args) else { return .other(value) }
            return .window(start: start, end: nil)
        case "<":
            guard let end = bound(args) else { return .other(value) }
            return .window(start: nil, end: end)
        case "and":
            guard args.count == 2, case .object(let a) = args[0], case .object(let b) = args[1],
                case .array(let startArgs)? = a[">="], a.count == 1, let start = bound(startArgs),
                case .array(let endArgs)? = b["<"], b.count == 1, let end = bound(endArgs)
            else { return .other(value) }
            return .window(start: start, end: end)
        default:
            return .other(value)
        }
    }

    private static func endsWith(_ args: [JSONValue]) -> (attribute: String, suffix: String)? {
        guard args.count == 2, let attribute = variable(args[0]), case .string(let suffix) = args[1] else { return nil }
        return (attribute, suffix)
    }

    /// `[{"var": "$flagd.timestamp"}, N]` → N.
    private static func bound(_ args: [JSONValue]) -> Int64? {
        guard args.count == 2, variable(args[0]) == timestamp, case .int(let n) = args[1] else { return nil }
        return n
    }

    // MARK: - Writing

    /// The targeting rule for this chain; `nil` for none. A chain of no rules whose final is the
    /// default variant needs no targeting at all.
    func json(defaultVariant: String?) -> JSONValue? {
        if rules.isEmpty {
            switch final {
            case .none: return nil
            case .variant(let name) where name == defaultVariant: return nil
            case .variant(let name): return ["if": [true, .string(name)]]
            case .fractional: return Self.json(final)
            }
        }
        var items: [JSONValue] = []
        for rule in rules {
            items.append(Self.json(rule.condition))
            items.append(.string(rule.variant))
        }
        if let last = Self.json(final) { items.append(last) }
        return ["if": .array(items)]
    }

    static func json(_ final: Final) -> JSONValue? {
        switch final {
        case .none: return nil
        case .variant(let name): return .string(name)
        case .fractional(let bucketBy, let buckets):
            var items: [JSONValue] = bucketBy.map { [$0] } ?? []
            items += buckets.map { [.string($0.variant), .int($0.weight)] }
            return ["fractional": .array(items)]
        }
    }

    static func json(_ condition: Condition) -> JSONValue {
        func timestampTest(_ op: String, _ bound: Int64) -> JSONValue {
            let arguments: JSONValue = [["var": .string(timestamp)], .int(bound)]
            return .object(JSONObject([(op, arguments)]))
        }
        switch condition {
        case .values(let attribute, let values):
            return ["in": [["var": .string(attribute)], .array(values)]]
        case .suffixes(let attribute, let suffixes):
            let tests: [JSONValue] = suffixes.map { ["ends_with": [["var": .string(attribute)], .string($0)]] }
            return tests.count == 1 ? tests[0] : ["or": .array(tests)]
        case .window(let start?, let end?):
            return ["and": [timestampTest(">=", start), timestampTest("<", end)]]
        case .window(let start?, nil):
            return timestampTest(">=", start)
        case .window(nil, let end?):
            return timestampTest("<", end)
        case .window(nil, nil):
            return true
        case .other(let value):
            return value
        }
    }
}
