import GuidonJSON

/// A problem found while compiling a document.
struct Problem: Sendable {
    enum Kind: Sendable {
        /// Rejects the document in every mode (structure).
        case structural
        /// Rejects the document in strict mode; a warning in lenient mode: what the reference
        /// evaluator loads anyway (targeting that cannot work, a flag with mixed-type variants,
        /// a default variant that names none, …), compiled to answer as the reference does.
        case tolerated
        /// Never rejects the document.
        case warning
    }

    var kind: Kind
    var path: [PathSegment]
    var message: String
}

/// Compiles JSON Logic into `Node` trees, checking operators, argument counts and
/// `$ref`s statically. Every rule compiles to something runnable: where the rule is
/// broken, the node behaves as the reference evaluator does at run time (a failure for
/// an unknown operator, `null` for a misused custom operator) and a problem is recorded.
final class LogicCompiler {
    private let evaluatorDefinitions: JSONObject
    private var evaluators: [String: Node] = [:]
    private var evaluatorRefs: [String: Set<String>] = [:]
    private var inProgress: Set<String> = []
    private(set) var problems: [Problem] = []
    /// How many `failure` nodes were made or reused through a `$ref` (see `Node.eager`).
    private var failures = 0
    /// Evaluators whose rule holds a `failure`.
    private var failingEvaluators: Set<String> = []
    /// Evaluators referenced (transitively) since the last `beginRule()`.
    private(set) var referenced: Set<String> = []
    private var path: [PathSegment] = []

    /// The features `entitled` may name (`CompileOptions.features`).
    private let features: Set<String>?

    init(evaluators: JSONObject, features: Set<String>? = nil) {
        evaluatorDefinitions = evaluators
        self.features = features
    }

    /// Compiles every `$evaluators` entry once, so that problems in them are reported at
    /// their own path, even when no flag uses them.
    func compileEvaluators() {
        for name in evaluatorDefinitions.keys {
            _ = evaluator(named: name)
        }
    }

    /// Compiles a rule found at `location`.
    func compileRule(_ rule: JSONValue, at location: [PathSegment]) -> Node {
        referenced = []
        path = location
        return compile(rule)
    }

    // MARK: Problems

    /// Adds problems that an earlier compile of the same rule reported (see `CompileMemo`).
    func replay(_ earlier: [Problem]) {
        problems += earlier
    }

    private func report(_ kind: Problem.Kind, _ message: String) {
        problems.append(Problem(kind: kind, path: path, message: message))
    }

    private func at<T>(_ segment: PathSegment, _ body: () -> T) -> T {
        path.append(segment)
        defer { path.removeLast() }
        return body()
    }

    // MARK: Compilation

    private func compile(_ value: JSONValue) -> Node {
        switch value {
        case .object(let object) where object.count == 1:
            let op = object.keys[0]
            return at(.key(op)) { compileOperation(op, object.values[0]) }
        case .array(let elements):
            var nodes: [Node] = []
            nodes.reserveCapacity(elements.count)
            for (i, e) in elements.enumerated() { nodes.append(at(.index(i)) { compile(e) }) }
            return Self.foldArray(nodes)
        default:
            // Scalars, and objects that are not a single-operator rule, are data.
            return .constant(value)
        }
    }

    private static func foldArray(_ nodes: [Node]) -> Node {
        var values: [JSONValue] = []
        values.reserveCapacity(nodes.count)
        for n in nodes {
            guard let v = n.constantValue else { return .array(nodes) }
            values.append(v)
        }
        return .constant(.array(values))
    }

    /// The operands of an operation: an array is the operand list, anything else a single operand.
    private func operands(_ raw: JSONValue) -> [JSONValue] {
        if case .array(let a) = raw { return a }
        return [raw]
    }

    private func compileOperands(_ raw: JSONValue) -> [Node] {
        if case .array(let a) = raw {
            var nodes: [Node] = []
            nodes.reserveCapacity(a.count)
            for (i, e) in a.enumerated() { nodes.append(at(.index(i)) { compile(e) }) }
            return nodes
        }
        return [compile(raw)]
    }

    private func checkCount(_ op: String, _ count: Int, _ allowed: ClosedRange<Int>, _ shape: String) {
        guard !allowed.contains(count) else { return }
        report(.tolerated, "\"\(op)\" takes \(shape), but has \(count) argument\(count == 1 ? "" : "s")")
    }

    private func compileOperation(_ op: String, _ raw: JSONValue) -> Node {
        switch op {
        case "if", "?:", "and", "or", "map", "filter", "all", "none", "some", "reduce":
            return compileSpecialForm(op, raw)
        case "fractional":
            return compileFractional(raw)
        case "$ref":
            return compileReference(raw)
        default:
            break
        }
        guard Self.operators.contains(op) else { return unknownOperator(op) }
        let failuresBefore = failures
        let args = compileOperands(raw)
        let node = compileOperator(op, args, raw)
        // Both references evaluate these operands first, so a failure among them fails the
        // operation even where Guidon's node would not evaluate it (`var`'s default, the third
        // operand of a comparison, a misused flagd operator compiled to null, …).
        return failures > failuresBefore ? .eager(args, node) : node
    }

    private func compileSpecialForm(_ op: String, _ raw: JSONValue) -> Node {
        let null = Node.constant(.null)
        let args = compileOperands(raw)
        switch op {
        case "if", "?:":
            return fold(.choose(args))
        case "and", "or":
            checkCount(op, args.count, 1...Int.max, "at least 1 argument")
            let folded = fold(op == "and" ? .and(args) : .or(args))
            return folded.constantValue != nil ? folded : .chain(args, and: op == "and")
        case "reduce":
            checkCount(op, args.count, 2...3, "a list, a rule and an optional initial value")
            // The initial value is taken as written, not evaluated (as the reference evaluator and
            // json-logic-js up to 2.0.2 do): `{"reduce": [[], …, {"+": [1, 1]}]}` is that object.
            let initial: Node? = args.count > 2 ? .constant(operands(raw)[2]) : nil
            return fold(.reduce(args.first ?? null, args.count > 1 ? args[1] : null, initial))
        default:
            checkCount(op, args.count, 2...2, "2 arguments (a list, and the rule applied to each item)")
            let list = args.first ?? null
            let logic = args.count > 1 ? args[1] : null
            let node: Node =
                switch op {
                case "map": .map(list, logic)
                case "filter": .filter(list, logic)
                case "all": .quantifier(.all, list, logic)
                case "none": .quantifier(.none, list, logic)
                default: .quantifier(.some, list, logic)
                }
            return fold(node)
        }
    }

    private func unknownOperator(_ op: String) -> Node {
        var message = "unknown operator \"\(op)\""
        let tolerance = max(1, min(2, op.count / 3))
        let close = Self.operators.filter { editDistance($0, op) <= tolerance }
        if !close.isEmpty { message += "; did you mean " + close.map { "\"\($0)\"" }.joined(separator: " or ") + "?" }
        report(.tolerated, message)
        failures += 1
        return .failure("unknown operator '\(op)' at \(renderPath(path))")
    }

    /// `op` (a known operator other than a special form, `fractional` and `$ref`) of `args`.
    private func compileOperator(_ op: String, _ args: [Node], _ raw: JSONValue) -> Node {
        let null = Node.constant(.null)
        switch op {
        case "var":
            checkCount(op, args.count, 0...2, "a path and an optional default")
            let fallback = args.count > 1 ? args[1] : nil
            guard let pathNode = args.first else { return .variable(VarPath(""), fallback: nil) }
            if let p = pathNode.constantValue {
                let path = VarPath(key: p)
                if path.root == .tenant { checkTenantAttribute(path) }
                return .variable(path, fallback: fallback)
            }
            return .computedVariable(pathNode, fallback: fallback)
        case "missing":
            var keys: [JSONValue] = []
            for (i, a) in args.enumerated() {
                guard let v = a.constantValue else { return .missing(args) }
                if i == 0, case .array(let list) = v {
                    keys = list
                    break
                }
                keys.append(v)
            }
            return .missingKeys(keys, keys.map(Evaluator.path(forKey:)))
        case "missing_some":
            checkCount(op, args.count, 2...2, "2 arguments (how many are needed, and a list of keys)")
            return .missingSome(args.first ?? null, args.count > 1 ? args[1] : .constant(.array([])))
        case "==", "===", "!=", "!==":
            checkCount(op, args.count, 2...2, "2 arguments")
            let strict = op.utf8.count == 3
            let negated = op.hasPrefix("!")
            // A missing operand is JavaScript's `undefined`: loosely equal to null only, strictly
            // equal to nothing (but another `undefined`).
            if strict, args.count == 1 { return .constant(.bool(negated)) }
            return fold(.equals(args.first ?? null, args.count > 1 ? args[1] : null, strict: strict, negated: negated))
        case "<", "<=", ">", ">=":
            checkCount(op, args.count, 2...3, "2 arguments (or 3, for a range)")
            // With fewer than 2 operands, one is `undefined`: the comparison is false.
            guard args.count >= 2 else { return .constant(.bool(false)) }
            let order: Node.Order =
                switch op {
                case "<": .less
                case "<=": .lessOrEqual
                case ">": .greater
                default: .greaterOrEqual
                }
            return fold(.order(order, args[0], args[1], args.count > 2 ? args[2] : nil))
        case "!", "!!":
            checkCount(op, args.count, 1...1, "1 argument")
            let operand = args.first ?? null
            return fold(op == "!" ? .not(operand) : .truthy(operand))
        case "+", "*":
            checkCount(op, args.count, 1...Int.max, "at least 1 argument")
            // json-logic-js folds `*` without a start value: one operand is the product as it is.
            if op == "*", args.count == 1 { return args[0] }
            return fold(.arithmetic(op == "+" ? .add : .multiply, args))
        case "-":
            checkCount(op, args.count, 1...2, "1 or 2 arguments (further ones would be ignored)")
            return fold(.arithmetic(.subtract, args))
        case "/", "%":
            checkCount(op, args.count, 2...2, "2 arguments")
            return fold(.arithmetic(op == "/" ? .divide : .remainder, args))
        case "min", "max":
            checkCount(op, args.count, 1...Int.max, "at least 1 argument")
            return fold(op == "min" ? .minimum(args) : .maximum(args))
        case "in":
            checkCount(op, args.count, 2...2, "2 arguments (what to look for, and a string or list to look in)")
            let needle = args.first ?? null
            let haystack = args.count > 1 ? args[1] : null
            if case .constant(.array(let list)) = haystack, needle.constantValue == nil {
                var strings: [String] = []
                for item in list {
                    guard case .string(let s) = item else { return .contains(needle, haystack) }
                    strings.append(s)
                }
                return .containsString(needle, StringSet(strings))
            }
            return fold(.contains(needle, haystack))
        case "cat":
            return fold(.concat(args))
        case "substr":
            checkCount(op, args.count, 2...3, "a string, a start and an optional length")
            return fold(.substring(args.first ?? null, args.count > 1 ? args[1] : nil, args.count > 2 ? args[2] : nil))
        case "merge":
            return fold(.merge(args))
        case "log":
            // json-logic-js logs its first operand and returns it; the reference evaluator prints
            // it. Guidon returns it (a daemon does not print evaluations).
            return args.first ?? null
        case "starts_with", "ends_with":
            return compileAffix(op, args)
        case "sem_ver":
            return compileSemVer(args)
        case "entitled":
            return compileEntitled(args)
        default:
            preconditionFailure("no operator \(op)")
        }
    }

    static let operators: Set<String> = [
        "var", "missing", "missing_some", "if", "?:", "==", "===", "!=", "!==", "<", "<=", ">", ">=", "!", "!!",
        "and", "or", "+", "-", "*", "/", "%", "min", "max", "in", "cat", "substr", "merge", "map", "filter",
        "reduce", "all", "none", "some", "log", "starts_with", "ends_with", "sem_ver", "fractional", "$ref",
        "entitled",
    ]

    /// `$tenant.NAME` names one of a closed set of attributes: a misspelt one would read null
    /// for every tenant, so strict mode refuses it (as the reference refuses nothing here, lenient
    /// mode warns and reads null).
    private func checkTenantAttribute(_ path: VarPath) {
        guard path.segments.count >= 2 else {
            report(.tolerated, "\"$tenant\" is read by attribute: use \"$tenant.NAME\" with NAME one of \(Self.tenantAttributeList)")
            return
        }
        let name = path.segments[1]
        guard !TenantAttributes.names.contains(name) else { return }
        let hint = TenantAttributes.names.min { editDistance($0, name) < editDistance($1, name) }.flatMap {
            editDistance($0, name) <= 2 ? "; did you mean \"$tenant.\($0)\"?" : nil
        } ?? ""
        report(.tolerated, "\"$tenant.\(name)\" is not a tenant attribute (one of \(Self.tenantAttributeList))\(hint)")
    }

    private static let tenantAttributeList = TenantAttributes.names.joined(separator: ", ")

    // MARK: Custom operators

    /// `{"entitled": "feature"}` (Guidon's: not in flagd): true when the context's tenant is
    /// entitled to the feature of the entitlements file served with the flags.
    private func compileEntitled(_ args: [Node]) -> Node {
        guard args.count == 1 else {
            checkCount("entitled", args.count, 1...1, "1 argument (a feature of the entitlements file)")
            return .constant(.bool(false))
        }
        if case .constant(let value) = args[0] {
            guard case .string(let feature) = value else {
                report(.tolerated, "\"entitled\" takes a feature's key (a string), not \(article(value.typeName))")
                return .constant(.bool(false))
            }
            guard let features else {
                report(.tolerated, "\"entitled\": no entitlements file is served with these flags (guidond --entitlements), so \"\(feature)\" is never entitled")
                return .constant(.bool(false))
            }
            guard features.contains(feature) else {
                let known = features.sorted()
                let hint = known.min { editDistance($0, feature) < editDistance($1, feature) }.flatMap {
                    editDistance($0, feature) <= 2 ? "; did you mean \"\($0)\"?" : nil
                } ?? ""
                report(.tolerated, "\"entitled\": \"\(feature)\" is not a feature of the entitlements file\(hint)")
                return .constant(.bool(false))
            }
        }
        return .entitled(args[0])
    }

    private func compileAffix(_ op: String, _ args: [Node]) -> Node {
        guard args.count == 2 else {
            checkCount(op, args.count, 2...2, "2 arguments (a string and a \(op == "starts_with" ? "prefix" : "suffix"))")
            return .constant(.null)
        }
        for (i, a) in args.enumerated() {
            if let v = a.constantValue, v.string == nil {
                at(.index(i)) { report(.tolerated, "\"\(op)\" compares strings, but this argument is \(article(v.typeName)); the result would always be null") }
                return .constant(.null)
            }
        }
        return fold(.affix(args[0], args[1], suffix: op == "ends_with"))
    }

    private func compileSemVer(_ args: [Node]) -> Node {
        guard args.count == 3 else {
            checkCount("sem_ver", args.count, 3...3, "3 arguments (version, operator, version)")
            return .constant(.null)
        }
        var op: SemVer.Operator?
        if let v = args[1].constantValue {
            op = v.string.flatMap(SemVer.Operator.init(rawValue:))
            if op == nil {
                at(.index(1)) {
                    report(.tolerated, "\(v) is not a sem_ver operator; use one of " + SemVer.Operator.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))
                }
                return .constant(.null)
            }
        }
        var literal: SemVer?
        for i in [0, 2] {
            guard let v = args[i].constantValue else { continue }
            guard let version = SemVer(v) else {
                at(.index(i)) { report(.tolerated, "\(v) is not a semantic version (expected e.g. \"1.4.0\")") }
                return .constant(.null)
            }
            if i == 2 { literal = version }
        }
        if let op, let literal, args[0].constantValue == nil {
            return .semVerLiteral(args[0], op, literal)
        }
        return fold(.semVer(args[0], args[1], args[2]))
    }

    private func compileFractional(_ raw: JSONValue) -> Node {
        let failuresBefore = failures
        var parts: [Node] = []
        let node = compileFractional(raw, parts: &parts)
        // The reference evaluates every bucket (name and weight) before choosing one.
        return failures > failuresBefore ? .eager(parts, node) : node
    }

    /// `parts`: every node compiled for the rule, in order.
    private func compileFractional(_ raw: JSONValue, parts: inout [Node]) -> Node {
        let items = operands(raw)
        guard !items.isEmpty else {
            report(.tolerated, "\"fractional\" needs at least one bucket, e.g. [\"on\", 50]")
            return .constant(.null)
        }
        var first: Node?
        var bucketItems = items.indices
        if items[0].array == nil {
            first = at(.index(0)) { compile(items[0]) }
            parts.append(first!)
            bucketItems = items.indices.dropFirst()
            // A rule alone may evaluate to a bucket (the reference decides once it is evaluated).
            if bucketItems.isEmpty, items[0].object == nil {
                report(.tolerated, "\"fractional\" has a bucketing value but no buckets")
                return .constant(.null)
            }
        }
        var buckets: [Fractional.Bucket] = []
        var literalTotal: Int64? = 0
        for i in bucketItems {
            let item = items[i]
            let bucket: Fractional.Bucket = at(.index(i)) {
                guard case .array(let pair) = item else {
                    if case .object = item {
                        literalTotal = nil
                        let node = compile(item)
                        parts.append(node)
                        return .computed(node)
                    }
                    report(.tolerated, "a fractional bucket must be [name] or [name, weight], not a \(item.typeName)")
                    literalTotal = nil
                    return .computed(.constant(.null))
                }
                guard pair.count == 1 || pair.count == 2 else {
                    report(.tolerated, "a fractional bucket must be [name] or [name, weight], but this one has \(pair.count) elements")
                    for (k, element) in pair.enumerated() { parts.append(at(.index(k)) { compile(element) }) }
                    literalTotal = nil
                    return .computed(.constant(.null))
                }
                let name = at(.index(0)) { compile(pair[0]) }
                parts.append(name)
                guard pair.count == 2 else {
                    literalTotal = literalTotal.map { $0 + 1 }
                    return .literal(name: name, weight: nil)
                }
                let weight = at(.index(1)) { compile(pair[1]) }
                parts.append(weight)
                if let w = weight.constantValue {
                    at(.index(1)) {
                        switch w {
                        case .int(let n):
                            if n < 0 { report(.warning, "negative weight \(n) counts as 0") }
                            literalTotal = literalTotal.map { $0 + min(max(n, 0), 1 << 40) }
                        default:
                            report(.tolerated, "a fractional weight must be an integer, not \(w); the result would always be null")
                            literalTotal = nil
                        }
                    }
                } else {
                    literalTotal = nil
                }
                return .literal(name: name, weight: weight)
            }
            buckets.append(bucket)
        }
        if let total = literalTotal {
            if total == 0 {
                report(.tolerated, "every fractional weight is 0; the result would always be null")
            } else if total > Int64(Fractional.maxTotalWeight) {
                report(.tolerated, "fractional weights add up to \(total), more than the maximum 2147483647; the result would always be null")
            }
        }
        return .fractional(Fractional(first: first, buckets: buckets))
    }

    // MARK: $ref

    private func compileReference(_ raw: JSONValue) -> Node {
        guard case .string(let name) = raw else {
            report(.tolerated, "\"$ref\" must name an evaluator (a string), not \(article(raw.typeName))")
            failures += 1
            return .failure("invalid $ref at \(renderPath(path))")
        }
        guard evaluatorDefinitions.contains(name) else {
            var message = "no evaluator named \"\(name)\" in $evaluators"
            if evaluatorDefinitions.isEmpty {
                message += " (the document defines none)"
            } else {
                message += " (defined: " + evaluatorDefinitions.keys.map { "\"\($0)\"" }.joined(separator: ", ") + ")"
            }
            report(.tolerated, message)
            failures += 1
            return .failure("unknown operator '$ref' (no evaluator named '\(name)') at \(renderPath(path))")
        }
        if inProgress.contains(name) {
            report(.tolerated, "evaluator \"\(name)\" refers to itself through $ref")
            failures += 1
            return .failure("evaluator '\(name)' refers to itself")
        }
        let node = evaluator(named: name)
        if failingEvaluators.contains(name) { failures += 1 }
        referenced.insert(name)
        referenced.formUnion(evaluatorRefs[name] ?? [])
        return node
    }

    private func evaluator(named name: String) -> Node {
        if let node = evaluators[name] { return node }
        let outerPath = path
        let outerRefs = referenced
        inProgress.insert(name)
        path = [.key("$evaluators"), .key(name)]
        referenced = []
        let failuresBefore = failures
        let node = compile(evaluatorDefinitions[name]!)
        if failures > failuresBefore { failingEvaluators.insert(name) }
        inProgress.remove(name)
        evaluators[name] = node
        evaluatorRefs[name] = referenced
        path = outerPath
        referenced = outerRefs
        return node
    }

    // MARK: Folding

    /// Evaluates a node whose operands are all constant, once, at compile time.
    private func fold(_ node: Node) -> Node {
        guard Self.operandsAreConstant(node) else { return node }
        let evaluator = Evaluator(context: EvaluationContext(), flag: nil, now: 0)
        guard let value = try? evaluator.evaluate(node, .value(.null)) else { return node }
        return .constant(value)
    }

    private static func operandsAreConstant(_ node: Node) -> Bool {
        func c(_ n: Node?) -> Bool { n.map { $0.constantValue != nil } ?? true }
        func all(_ ns: [Node]) -> Bool { ns.allSatisfy { $0.constantValue != nil } }
        switch node {
        case .choose(let a), .and(let a), .or(let a), .arithmetic(_, let a), .minimum(let a), .maximum(let a),
            .concat(let a), .merge(let a):
            return all(a)
        case .equals(let a, let b, _, _), .contains(let a, let b), .affix(let a, let b, _), .both(let a, let b), .either(let a, let b):
            return c(a) && c(b)
        case .order(_, let a, let b, let x):
            return c(a) && c(b) && c(x)
        case .not(let a), .truthy(let a):
            return c(a)
        case .substring(let a, let b, let x):
            return c(a) && c(b) && c(x)
        case .map(let a, let b), .filter(let a, let b), .quantifier(_, let a, let b):
            return c(a) && c(b)
        case .reduce(let a, let b, let x):
            return c(a) && c(b) && c(x)
        case .semVer(let a, let b, let x):
            return c(a) && c(b) && c(x)
        default:
            return false
        }
    }
}

/// Levenshtein distance, for "did you mean" hints.
func editDistance(_ a: String, _ b: String) -> Int {
    let x = Array(a.unicodeScalars)
    let y = Array(b.unicodeScalars)
    if x.isEmpty { return y.count }
    if y.isEmpty { return x.count }
    var previous = Array(0...y.count)
    for i in 1...x.count {
        var current = [i] + Array(repeating: 0, count: y.count)
        for j in 1...y.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[y.count]
}

/// A bare JSON Logic rule (flagd's operator set), compiled leniently: what the
/// conformance suite's `jsonlogic-ops` cases and tools evaluate outside of a flag.
struct Rule {
    let node: Node
    let problems: [Problem]

    init(_ json: JSONValue) {
        let compiler = LogicCompiler(evaluators: JSONObject())
        node = compiler.compileRule(json, at: [])
        problems = compiler.problems
    }

    /// Evaluates against plain data (`var` reads `data`; `$flagd` and `targetingKey` too).
    func evaluate(data: JSONValue) throws(Evaluator.Failure) -> JSONValue {
        try Evaluator(context: EvaluationContext(), flag: nil, now: 0).evaluate(node, .value(data))
    }
}
