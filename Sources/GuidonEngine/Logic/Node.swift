import GuidonJSON

/// A compiled JSON Logic rule: built once at load, evaluated per request without
/// looking at JSON again. Constant sub-trees are folded into `.constant`.
indirect enum Node: Sendable {
    case constant(JSONValue)
    /// An array literal with at least one computed element.
    case array([Node])
    /// `var` with a literal path (pre-split) and an optional default.
    case variable(VarPath, fallback: Node?)
    /// `var` whose path is computed.
    case computedVariable(Node, fallback: Node?)
    case missing([Node])
    /// `missing` with literal keys, their paths split in advance.
    case missingKeys([JSONValue], [VarPath])
    case missingSome(Node, Node)
    /// `if` / `?:`: condition, value, condition, value, …, [else].
    case choose([Node])
    case equals(Node, Node, strict: Bool, negated: Bool)
    case order(Order, Node, Node, Node?)
    case not(Node)
    case truthy(Node)
    case and([Node])
    case or([Node])
    /// `and` / `or` of two operands. The compiler makes an `and` or `or` of a few operands a
    /// chain of these (`a and (b and c)`, which has the same value), so that evaluating it
    /// reads each operand straight from its case: counting references to a list and its
    /// elements would cost atomic operations on objects that every thread shares.
    case both(Node, Node)
    case either(Node, Node)
    case arithmetic(Arithmetic, [Node])
    case minimum([Node])
    case maximum([Node])
    /// `in` with any haystack.
    case contains(Node, Node)
    /// `in` with a literal array of strings as the haystack.
    case containsString(Node, StringSet)
    case concat([Node])
    case substring(Node, Node?, Node?)
    case merge([Node])
    case map(Node, Node)
    case filter(Node, Node)
    case reduce(Node, Node, Node?)
    case quantifier(Quantifier, Node, Node)
    case affix(Node, Node, suffix: Bool)
    case semVer(Node, Node, Node)
    /// `sem_ver` with a literal operator and a literal (pre-parsed) second version.
    case semVerLiteral(Node, SemVer.Operator, SemVer)
    case fractional(Fractional)
    /// `{"entitled": feature}`: whether the context's tenant is entitled to the feature.
    case entitled(Node)
    /// An operator the evaluator does not know (or a `$ref` to nothing): evaluating it
    /// fails with PARSE_ERROR, as the reference evaluator does.
    case failure(String)
    /// Evaluates the first nodes for their failures only, then the last. Both references
    /// evaluate an operator's arguments before the operator; where Guidon's node would skip
    /// an argument that can fail (a misused flagd operator compiled to `null`, a `var` default
    /// not needed, a `fractional` bucket not chosen), the compiler wraps it in this so that
    /// it fails as they do. Only rules holding a `failure` (lenient mode) get one.
    case eager([Node], Node)

    enum Order: Sendable { case less, lessOrEqual, greater, greaterOrEqual }
    enum Arithmetic: Sendable { case add, subtract, multiply, divide, remainder }
    enum Quantifier: Sendable { case all, none, some }

    /// Longer chains would deepen the evaluator's recursion by as many calls.
    static let chainLimit = 4

    /// `and` (or `or`) of `operands`, at least one: a chain of `both` (`either`) for two up
    /// to `chainLimit`, else a list.
    static func chain(_ operands: [Node], and: Bool) -> Node {
        guard var chain = operands.last, (2...chainLimit).contains(operands.count) else {
            return and ? .and(operands) : .or(operands)
        }
        for operand in operands.dropLast().reversed() {
            chain = and ? .both(operand, chain) : .either(operand, chain)
        }
        return chain
    }

    var constantValue: JSONValue? {
        if case .constant(let v) = self { return v }
        return nil
    }
}

/// A literal `var` path, split once at compile time.
struct VarPath: Sendable {
    enum Root: Sendable {
        /// `""`: the whole data object.
        case whole
        /// `targetingKey…`: the context's targeting key.
        case targetingKey
        /// `$flagd…`: the injected flag key and timestamp.
        case flagd
        /// `$tenant.NAME…`: an attribute of the context's tenant (entitlements).
        case tenant
        /// Any other first segment: a context attribute.
        case attribute
    }

    let text: String
    let segments: [String]
    let root: Root

    /// The path a `var` key names: `null` and `""` name the whole data; anything else is
    /// read as text and split at dots, so that a key whose text is empty (`[]`) names the
    /// member `""`, as in both references.
    init(key: JSONValue) {
        switch key {
        case .null, .string(""): self.init("")
        default: self.init(JS.string(key), whole: false)
        }
    }

    init(_ text: String, whole: Bool? = nil) {
        self.text = text
        if whole ?? text.isEmpty {
            segments = []
            root = .whole
        } else {
            segments = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            switch segments[0] {
            case "targetingKey": root = .targetingKey
            case "$flagd": root = .flagd
            case "$tenant": root = .tenant
            default: root = .attribute
            }
        }
    }
}

/// A set of strings for `in` against a literal list: linear for short lists,
/// hashed (and verified byte-wise) for long ones.
struct StringSet: Sendable {
    let members: [String]
    private let index: [String: Int]?

    init(_ members: [String]) {
        self.members = members
        guard members.count > 8 else {
            index = nil
            return
        }
        var index = [String: Int](minimumCapacity: members.count)
        for (i, m) in members.enumerated() {
            // Swift hashes canonically equivalent strings alike; keep the linear scan if two collide.
            if let j = index[m], !JS.same(members[j], m) {
                self.index = nil
                return
            }
            if index[m] == nil { index[m] = i }
        }
        self.index = index
    }

    func contains(_ s: String) -> Bool {
        if let index {
            guard let i = index[s] else { return false }
            return JS.same(members[i], s)
        }
        for m in members where JS.same(m, s) { return true }
        return false
    }
}
