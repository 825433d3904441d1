import GuidonJSON

/// What targeting produced, in terms of the flag's variants.
enum Resolution: Sendable {
    case variant(Int)
    /// `null`: serve the default variant.
    case none
    /// Something that names no variant (ERROR / GENERAL).
    case invalid(JSONValue)
    /// No evaluation can succeed (lenient mode: targeting that is not a rule, PARSE_ERROR).
    case error(ErrorCode, String)
}

/// A flag's targeting seen from its result: `if` chains whose branches are literal
/// variant names are resolved to variant indexes at compile time.
indirect enum Outcome: Sendable {
    case resolved(Resolution)
    /// One condition of an `if` chain (the rest of the chain is `otherwise`). Held as a
    /// chain rather than a list, so that resolving it reads each node straight from its
    /// case: counting references to a list and its elements would cost atomic operations on
    /// objects that every thread shares.
    case choose(condition: Node, then: Outcome, otherwise: Outcome)
    /// An `if` chain longer than `chainLimit` conditions, as a list (resolving a chain
    /// recurses once per condition).
    case chooseFirst([(condition: Node, then: Outcome)], otherwise: Outcome)
    case dynamic(Node)

    static let chainLimit = 8
}

/// Variant name → index, byte-wise.
struct VariantTable: Sendable {
    let names: [String]
    let values: [JSONValue]
    /// Only for more than `scanLimit` names: fewer are scanned.
    private let index: [String: Int]
    private static let scanLimit = 8

    /// Whether a variant's value is `null` (lenient mode): targeting cannot name such a variant.
    private let hasNullValues: Bool

    init(names: [String], values: [JSONValue]) {
        self.names = names
        self.values = values
        hasNullValues = values.contains { $0.isNull }
        var index: [String: Int] = [:]
        if names.count > Self.scanLimit {
            index.reserveCapacity(names.count)
            for (i, n) in names.enumerated() where index[n] == nil { index[n] = i }
        }
        self.index = index
    }

    @inline(__always)
    func index(of name: String) -> Int? {
        if names.count <= Self.scanLimit {
            for i in names.indices where JS.same(names[i], name) { return i }
            return nil
        }
        if let i = index[name], JS.same(names[i], name) { return i }
        // Swift hashes canonically equivalent strings alike; fall back to a scan.
        return names.firstIndex { JS.same($0, name) }
    }

    /// How the reference evaluator turns a targeting result into a variant. An empty name
    /// names no variant (even one called `""`), nor does the name of a variant whose value is
    /// `null`: the reference looks a variant up by name and takes a missing name or value for none.
    func resolve(_ value: JSONValue) -> Resolution {
        let name: String
        switch value {
        case .null: return .none
        case .string(let s):
            if s.utf8.isEmpty { return .invalid(value) }
            name = s
        case .bool(let b): name = b ? "true" : "false"
        case .int(let i): name = String(i)
        case .double(let d): name = JS.numberString(d)
        case .array, .object: return .invalid(value)
        }
        guard let i = index(of: name), !hasNullValues || !values[i].isNull else { return .invalid(value) }
        return .variant(i)
    }

    func outcome(for node: Node) -> Outcome {
        switch node {
        case .constant(let v):
            return .resolved(resolve(v))
        case .choose(let args):
            let pairs = (0..<args.count / 2).map { (condition: args[2 * $0], then: outcome(for: args[2 * $0 + 1])) }
            let otherwise = args.count % 2 == 1 ? outcome(for: args[args.count - 1]) : .resolved(.none)
            guard pairs.count <= Outcome.chainLimit else { return .chooseFirst(pairs, otherwise: otherwise) }
            // From the last condition back: each one's `otherwise` is the rest of the chain.
            return pairs.reversed().reduce(otherwise) { .choose(condition: $1.condition, then: $1.then, otherwise: $0) }
        default:
            return .dynamic(node)
        }
    }
}

/// One flag, ready to evaluate. A class so that looking it up costs one reference count,
/// not one per member.
final class CompiledFlag: Sendable {
    let key: String
    let enabled: Bool
    let variants: VariantTable
    let defaultIndex: Int?
    /// The default variant's name when it names no variant (lenient mode): serving the
    /// default fails with GENERAL, as it does in the reference evaluator.
    let unknownDefault: String?
    let targeting: Outcome?
    /// What every result of this flag carries: its metadata and pre-encoded members.
    let resultText: ResultText
    var metadata: JSONObject { resultText.metadata }

    init(
        key: String, enabled: Bool, variants: VariantTable, defaultIndex: Int?, unknownDefault: String? = nil,
        targeting: Outcome?, metadata: JSONObject
    ) {
        self.key = key
        self.enabled = enabled
        self.variants = variants
        self.defaultIndex = defaultIndex
        self.unknownDefault = unknownDefault
        self.targeting = targeting
        self.resultText = ResultText.make(flagKey: key, variants: variants, metadata: metadata)
    }

    /// The result for `context`, which is asked for only when targeting reads it.
    func evaluate(context: () -> EvaluationContext, type: ValueType?, now: Int64) -> EvaluationResult {
        result(of: decide(context: context, type: type, now: now))
    }

    /// Lends `body` the reply members of the result for `context` (see `EncodedResult`);
    /// `position` is this flag's in its snapshot.
    func withEncoded(
        context: () -> EvaluationContext, type: ValueType?, now: Int64, position: Int, _ body: (EncodedResult) -> Void
    ) {
        let verdict = decide(context: context, type: type, now: now)
        // A converted value has no text written for it.
        if verdict.converted { return result(of: verdict).withEncoded(position: position, variant: verdict.variant, body) }
        resultText.withMembers(flag: true, variant: verdict.variant) { flag, served, metadata in
            // Every compiled flag's members are written; without them, the result writes its own.
            guard let flag else { return result(of: verdict).withEncoded(position: position, variant: verdict.variant, body) }
            body(EncodedResult(
                flag: flag, served: served, reason: verdict.reason, errorCode: verdict.errorCode,
                errorMessage: verdict.errorMessage, metadata: metadata, flagPosition: position,
                variantIndex: verdict.variant))
        }
    }

    // MARK: Deciding

    /// What an evaluation decided, in terms of this flag. It holds no reference to the flag's
    /// parts (only a failure holds its own message), so that making and dropping one costs no
    /// atomic reference counting: the parts are shared by every thread.
    struct Verdict {
        /// The variant served, when one is: as defined unless `converted`.
        var variant: Int?
        var converted = false
        var reason: Reason
        var errorCode: ErrorCode?
        var errorMessage: String?

        /// The variant whose text the flag wrote and a reply can lend.
        var served: Int? { converted ? nil : variant }
    }

    func decide(context: () -> EvaluationContext, type: ValueType?, now: Int64) -> Verdict {
        guard enabled else { return Verdict(reason: .disabled) }
        return decide(targeting, context: context, type: type, now: now)
    }

    /// The verdict by `targeting`, this flag's, which is passed rather than read so that it is
    /// borrowed: binding the stored property would count a reference to its (shared) outcome.
    private func decide(_ targeting: Outcome?, context: () -> EvaluationContext, type: ValueType?, now: Int64) -> Verdict {
        switch targeting {
        case nil:
            return serveDefault(type, reason: .static)
        case .resolved(let resolution)?:
            return verdict(for: resolution, type)
        case let outcome?:
            let evaluator = Evaluator(context: context(), flag: self, now: now)
            let resolution: Resolution
            do {
                resolution = try resolve(outcome, evaluator)
            } catch {
                return failure(.parseError, "flag '\(key)': \(error.message)")
            }
            return verdict(for: resolution, type)
        }
    }

    private func verdict(for resolution: Resolution, _ type: ValueType?) -> Verdict {
        switch resolution {
        case .variant(let i):
            return serve(i, type, reason: .targetingMatch)
        case .none:
            return serveDefault(type, reason: .default)
        case .invalid(let value):
            return failure(.general,
                "flag '\(key)': targeting returned \(value), which is not one of the variants (\(quotedList(variants.names)))")
        case .error(let code, let message):
            return failure(code, "flag '\(key)': \(message)")
        }
    }

    private func resolve(_ outcome: Outcome, _ evaluator: Evaluator) throws(Evaluator.Failure) -> Resolution {
        switch outcome {
        case .resolved(let r):
            return r
        case .choose(let condition, let then, let otherwise):
            if JS.truthy(try evaluator.evaluate(condition, .root)) { return try resolve(then, evaluator) }
            return try resolve(otherwise, evaluator)
        case .chooseFirst(let pairs, let otherwise):
            for pair in pairs where JS.truthy(try evaluator.evaluate(pair.condition, .root)) {
                return try resolve(pair.then, evaluator)
            }
            return try resolve(otherwise, evaluator)
        case .dynamic(let node):
            return variants.resolve(try evaluator.evaluate(node, .root))
        }
    }

    private func serveDefault(_ type: ValueType?, reason: Reason) -> Verdict {
        guard let d = defaultIndex else {
            guard let unknownDefault else { return Verdict(reason: .default) }
            return failure(.general,
                "flag '\(key)': the default variant \(JSONValue.string(unknownDefault)) is not one of the variants (\(quotedList(variants.names)))")
        }
        return serve(d, type, reason: reason)
    }

    @inline(__always)
    private func serve(_ i: Int, _ type: ValueType?, reason: Reason) -> Verdict {
        guard let type else { return Verdict(variant: i, reason: reason) }
        switch Self.conversion(of: variants.values[i], to: type) {
        case .same:
            return Verdict(variant: i, reason: reason)
        case .converted:
            return Verdict(variant: i, converted: true, reason: reason)
        case .impossible:
            return failure(.typeMismatch,
                "flag '\(key)': variant \"\(variants.names[i])\" is \(article(variants.values[i].typeName)), not \(article(type.rawValue))")
        }
    }

    private func failure(_ code: ErrorCode, _ message: String) -> Verdict {
        Verdict(reason: .error, errorCode: code, errorMessage: message)
    }

    // MARK: Results

    /// The public result of `verdict`.
    func result(of verdict: Verdict) -> EvaluationResult {
        guard let i = verdict.variant else {
            return EvaluationResult(
                flagKey: key, value: nil, variant: nil, reason: verdict.reason, errorCode: verdict.errorCode,
                errorMessage: verdict.errorMessage, shared: resultText)
        }
        var value = variants.values[i]
        if verdict.converted, case .int(let n) = value { value = .double(Double(n)) }
        return EvaluationResult(
            flagKey: key, value: value, variant: variants.names[i], reason: verdict.reason, shared: resultText,
            servedVariant: verdict.served)
    }

    enum Conversion { case same, converted, impossible }

    /// Whether a value serves as the requested type: integers are not floats, floats accept
    /// integers (converted).
    @inline(__always)
    static func conversion(of value: JSONValue, to type: ValueType) -> Conversion {
        switch (type, value) {
        // An array variant is loaded only in lenient mode; the reference serves it as an object.
        case (.boolean, .bool), (.string, .string), (.integer, .int), (.float, .double), (.object, .object), (.object, .array):
            return .same
        case (.float, .int):
            return .converted
        default:
            return .impossible
        }
    }
}

func quotedList(_ names: [String]) -> String {
    names.map { JSONWriter.string(.string($0)) }.joined(separator: ", ")
}

func article(_ typeName: String) -> String {
    switch typeName.first {
    case "a", "e", "i", "o", "u": "an \(typeName)"
    default: "a \(typeName)"
    }
}
