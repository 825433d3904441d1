import GuidonJSON

/// Evaluates compiled rules for one flag and one context.
///
/// `var` is resolved lazily against the context: the first path segment picks the
/// targeting key, `$flagd` (flag key and timestamp) or an attribute, so no merged data
/// object is ever built on the hot path.
struct Evaluator {
    let context: EvaluationContext
    /// The flag evaluated (`nil` while the compiler folds constants). Not retained: its caller
    /// holds it for the evaluation, and its key is read only by rules that use it. (Copying the
    /// key, a string every thread shares, would count a reference to it on every evaluation.)
    private unowned(unsafe) let flag: CompiledFlag?
    let now: Int64

    init(context: EvaluationContext, flag: CompiledFlag?, now: Int64) {
        self.context = context
        self.flag = flag
        self.now = now
    }

    var flagKey: String { flag?.key ?? "" }

    /// What `var` reads: the evaluation context, or (inside `map`, `filter`, `reduce`,
    /// `all`, `none`, `some`, and for bare rules) a plain JSON value.
    enum Scope {
        case root
        case value(JSONValue)
    }

    /// Evaluation failed the way the reference evaluator fails (PARSE_ERROR).
    struct Failure: Error {
        let message: String
    }

    static let targetingKeyPath = VarPath("targetingKey")
    static let flagKeyPath = VarPath("$flagd.flagKey")

    // MARK: Variables

    func lookup(_ path: VarPath, in scope: Scope) -> JSONValue? {
        let found: JSONValue?
        switch scope {
        case .value(let data):
            found = Self.descend(data, path.segments[...])
        case .root:
            switch path.root {
            case .whole:
                found = rootObject()
            case .targetingKey:
                guard let key = context.targetingKey else { return nil }
                found = path.segments.count == 1 ? .string(key) : Self.descend(.string(key), path.segments.dropFirst())
            case .flagd:
                let segments = path.segments
                if segments.count == 1 {
                    found = .object(flagdObject())
                } else if segments[1] == "flagKey" {
                    found = Self.descend(.string(flagKey), segments.dropFirst(2))
                } else if segments[1] == "timestamp" {
                    found = Self.descend(.int(now), segments.dropFirst(2))
                } else {
                    found = nil
                }
            case .tenant:
                let segments = path.segments
                guard segments.count > 1, let directory = context.tenantDirectory, let tenant = context.tenant,
                    let value = directory.attribute(segments[1], ofTenant: tenant, now: now)
                else { return nil }
                found = segments.count == 2 ? value : Self.descend(value, segments.dropFirst(2))
            case .attribute:
                guard let value = context.attributes[path.segments[0]] else { return nil }
                // Usually the attribute itself, with no path into it.
                found = path.segments.count == 1 ? value : Self.descend(value, path.segments.dropFirst())
            }
        }
        if case .null? = found { return nil }
        return found
    }

    static func descend(_ value: JSONValue, _ segments: ArraySlice<String>) -> JSONValue? {
        var current = value
        for segment in segments {
            switch current {
            case .object(let o):
                guard let next = o[segment] else { return nil }
                current = next
            case .array(let a):
                guard let i = arrayIndex(segment) else {
                    // JavaScript's `length` of an array (both references read it).
                    guard segment == "length" else { return nil }
                    current = .int(Int64(a.count))
                    continue
                }
                guard i < a.count else { return nil }
                current = a[i]
            case .string(let s):
                guard let i = arrayIndex(segment) else {
                    // A string's `length`, in code points as its indexes are (see FLAG-FORMAT.md).
                    guard segment == "length" else { return nil }
                    current = .int(Int64(s.unicodeScalars.count))
                    continue
                }
                let scalars = s.unicodeScalars
                guard let at = scalars.index(scalars.startIndex, offsetBy: i, limitedBy: scalars.endIndex),
                    at < scalars.endIndex
                else { return nil }
                current = .string(String(scalars[at]))
            default:
                return nil
            }
        }
        return current
    }

    /// A canonical non-negative decimal index ("0", "17"), as JavaScript property keys index arrays.
    static func arrayIndex(_ segment: String) -> Int? {
        let utf8 = segment.utf8
        guard let first = utf8.first, JS.isDigit(first), utf8.count <= 18 else { return nil }
        if first == UInt8(ascii: "0") && utf8.count > 1 { return nil }
        var value = 0
        for b in utf8 {
            guard JS.isDigit(b) else { return nil }
            value = value * 10 + Int(b - 0x30)
        }
        return value
    }

    private func flagdObject() -> JSONObject {
        ["flagKey": .string(flagKey), "timestamp": .int(now)]
    }

    /// The data object the reference evaluator would build (only for `{"var": ""}`).
    private func rootObject() -> JSONValue {
        var data = context.attributes
        data["targetingKey"] = context.targetingKey.map(JSONValue.string) ?? .null
        data["$flagd"] = .object(flagdObject())
        return .object(data)
    }

    // MARK: Evaluation

    func evaluate(_ node: Node, _ scope: Scope) throws(Failure) -> JSONValue {
        switch node {
        case .constant(let value):
            return value
        case .array(let elements):
            var out: [JSONValue] = []
            out.reserveCapacity(elements.count)
            for e in elements { out.append(try evaluate(e, scope)) }
            return .array(out)
        case .variable(let path, let fallback):
            if let found = lookup(path, in: scope) { return found }
            return try fallback.map { (n: Node) throws(Failure) in try evaluate(n, scope) } ?? .null
        case .computedVariable(let pathNode, let fallback):
            let p = try evaluate(pathNode, scope)
            let path = VarPath(key: p)
            if let found = lookup(path, in: scope) { return found }
            return try fallback.map { (n: Node) throws(Failure) in try evaluate(n, scope) } ?? .null
        case .missing(let args):
            var keys: [JSONValue] = []
            for (i, a) in args.enumerated() {
                let v = try evaluate(a, scope)
                if i == 0, case .array(let list) = v {
                    keys = list
                    break
                }
                keys.append(v)
            }
            return .array(missing(keys, scope))
        case .missingKeys(let keys, let paths):
            var absent: [JSONValue] = []
            for i in paths.indices where isMissing(paths[i], scope) { absent.append(keys[i]) }
            return .array(absent)
        case .missingSome(let needNode, let optionsNode):
            let need = JS.number(try evaluate(needNode, scope))
            guard case .array(let options) = try evaluate(optionsNode, scope) else { return .array([]) }
            let absent = missing(options, scope)
            return Double(options.count - absent.count) >= need ? .array([]) : .array(absent)
        case .choose(let args):
            var i = 0
            while i + 1 < args.count {
                if JS.truthy(try evaluate(args[i], scope)) { return try evaluate(args[i + 1], scope) }
                i += 2
            }
            return i < args.count ? try evaluate(args[i], scope) : .null
        case .equals(let a, let b, let strict, let negated):
            let x = try evaluate(a, scope)
            let y = try evaluate(b, scope)
            let equal = strict ? JS.strictEquals(x, y) : JS.looseEquals(x, y)
            return .bool(equal != negated)
        case .order(let op, let a, let b, let c):
            let x = try evaluate(a, scope)
            let y = try evaluate(b, scope)
            guard Self.holds(op, x, y) else { return .bool(false) }
            guard let c else { return .bool(true) }
            return .bool(Self.holds(op, y, try evaluate(c, scope)))
        case .not(let a):
            return .bool(!JS.truthy(try evaluate(a, scope)))
        case .truthy(let a):
            return .bool(JS.truthy(try evaluate(a, scope)))
        case .and(let args):
            var last = JSONValue.null
            for a in args {
                last = try evaluate(a, scope)
                if !JS.truthy(last) { return last }
            }
            return last
        case .or(let args):
            var last = JSONValue.null
            for a in args {
                last = try evaluate(a, scope)
                if JS.truthy(last) { return last }
            }
            return last
        case .both(let a, let b):
            let first = try evaluate(a, scope)
            return JS.truthy(first) ? try evaluate(b, scope) : first
        case .either(let a, let b):
            let first = try evaluate(a, scope)
            return JS.truthy(first) ? first : try evaluate(b, scope)
        case .arithmetic(let op, let args):
            return try arithmetic(op, args, scope)
        case .minimum(let args):
            return try extremum(args, scope, wantMax: false)
        case .maximum(let args):
            return try extremum(args, scope, wantMax: true)
        case .contains(let needleNode, let haystackNode):
            let needle = try evaluate(needleNode, scope)
            switch try evaluate(haystackNode, scope) {
            // json-logic-js: `if (!b …) return false`, so nothing is in an empty string.
            case .string(let s): return .bool(!s.utf8.isEmpty && Self.contains(s, JS.string(needle)))
            case .array(let a): return .bool(a.contains { JS.strictEquals($0, needle) })
            default: return .bool(false)
            }
        case .containsString(let needleNode, let set):
            guard case .string(let s) = try evaluate(needleNode, scope) else { return .bool(false) }
            return .bool(set.contains(s))
        case .concat(let args):
            var out = ""
            for a in args {
                // `Array.prototype.join`, as json-logic-js uses it: `null` joins as nothing.
                let v = try evaluate(a, scope)
                if !v.isNull { out += JS.string(v) }
            }
            return .string(out)
        case .substring(let source, let start, let length):
            let s = JS.string(try evaluate(source, scope))
            let from = try start.map { (n: Node) throws(Failure) in JS.number(try evaluate(n, scope)) } ?? 0
            let count = try length.map { (n: Node) throws(Failure) in JS.number(try evaluate(n, scope)) }
            return .string(Self.substring(s, from, count))
        case .merge(let args):
            var out: [JSONValue] = []
            for a in args {
                let v = try evaluate(a, scope)
                if case .array(let inner) = v { out.append(contentsOf: inner) } else { out.append(v) }
            }
            return .array(out)
        case .map(let listNode, let logic):
            guard case .array(let list) = try evaluate(listNode, scope) else { return .array([]) }
            var out: [JSONValue] = []
            out.reserveCapacity(list.count)
            for element in list { out.append(try evaluate(logic, .value(element))) }
            return .array(out)
        case .filter(let listNode, let logic):
            guard case .array(let list) = try evaluate(listNode, scope) else { return .array([]) }
            var out: [JSONValue] = []
            for element in list where JS.truthy(try evaluate(logic, .value(element))) { out.append(element) }
            return .array(out)
        case .reduce(let listNode, let logic, let initial):
            var accumulator = try initial.map { (n: Node) throws(Failure) in try evaluate(n, scope) } ?? .null
            guard case .array(let list) = try evaluate(listNode, scope) else { return accumulator }
            for element in list {
                accumulator = try evaluate(logic, .value(.object(["current": element, "accumulator": accumulator])))
            }
            return accumulator
        case .quantifier(let kind, let listNode, let logic):
            let list: [JSONValue]
            if case .array(let a) = try evaluate(listNode, scope) { list = a } else { list = [] }
            switch kind {
            case .all:
                if list.isEmpty { return .bool(false) }
                for element in list where !JS.truthy(try evaluate(logic, .value(element))) { return .bool(false) }
                return .bool(true)
            case .some, .none:
                for element in list where JS.truthy(try evaluate(logic, .value(element))) {
                    return .bool(kind == .some)
                }
                return .bool(kind == .none)
            }
        case .affix(let subjectNode, let affixNode, let suffix):
            guard case .string(let subject) = try evaluate(subjectNode, scope),
                case .string(let affix) = try evaluate(affixNode, scope)
            else { return .null }
            return .bool(suffix ? Self.hasSuffix(subject, affix) : Self.hasPrefix(subject, affix))
        case .semVer(let a, let opNode, let b):
            let x = try evaluate(a, scope)
            let opValue = try evaluate(opNode, scope)
            let y = try evaluate(b, scope)
            guard case .string(let opText) = opValue, let op = SemVer.Operator(rawValue: opText),
                let v1 = SemVer(x), let v2 = SemVer(y)
            else { return .null }
            return .bool(v1.satisfies(op, v2))
        case .entitled(let featureNode):
            guard case .string(let feature) = try evaluate(featureNode, scope), let directory = context.tenantDirectory else {
                return .bool(false)
            }
            return .bool(directory.isEntitled(tenant: context.tenant, feature: feature, now: now))
        case .semVerLiteral(let a, let op, let v2):
            guard let v1 = SemVer(try evaluate(a, scope)) else { return .null }
            return .bool(v1.satisfies(op, v2))
        case .fractional(let rule):
            return try fractional(rule, scope)
        case .failure(let message):
            throw Failure(message: message)
        case .eager(let first, let node):
            for n in first { _ = try evaluate(n, scope) }
            return try evaluate(node, scope)
        }
    }

    // MARK: Operators

    @inline(__always)
    static func holds(_ op: Node.Order, _ x: JSONValue, _ y: JSONValue) -> Bool {
        // a <= b is !(b < a), and false whenever the comparison is undefined (NaN).
        guard let c = JS.compare(x, y) else { return false }
        switch op {
        case .less: return c == .less
        case .lessOrEqual: return c != .greater
        case .greater: return c == .greater
        case .greaterOrEqual: return c != .less
        }
    }

    private func missing(_ keys: [JSONValue], _ scope: Scope) -> [JSONValue] {
        var absent: [JSONValue] = []
        for key in keys where isMissing(Self.path(forKey: key), scope) { absent.append(key) }
        return absent
    }

    /// `missing` counts absent, `null` and `""` values as missing.
    private func isMissing(_ path: VarPath, _ scope: Scope) -> Bool {
        switch lookup(path, in: scope) {
        case nil, .string("")?: true
        default: false
        }
    }

    static func path(forKey key: JSONValue) -> VarPath {
        VarPath(key: key)
    }

    /// A number as arithmetic sees it: integers (and null/booleans) stay integral so that
    /// computed `fractional` weights remain integers; anything else becomes a double.
    private enum Operand {
        case int(Int64)
        case double(Double)

        /// JavaScript's `ToNumber`, as `-`, `/` and `%` convert.
        init(_ v: JSONValue) {
            switch v {
            case .int(let i): self = .int(i)
            case .null: self = .int(0)
            case .bool(let b): self = .int(b ? 1 : 0)
            default: self = .double(JS.number(v))
            }
        }

        /// `parseFloat`, as json-logic-js's `+` and `*` convert: booleans and text that does not
        /// begin with a number are NaN, `"12abc"` is 12, `"0x10"` is 0. Except `null`, which is 0
        /// as in the reference evaluator (the conformance suite holds that case; json-logic-js
        /// would make it NaN).
        init(parsingFloat v: JSONValue) {
            switch v {
            case .int(let i): self = .int(i)
            case .double(let d): self = .double(d)
            case .null: self = .int(0)
            default: self = .double(JS.parseFloat(v))
            }
        }

        var double: Double {
            switch self {
            case .int(let i): Double(i)
            case .double(let d): d
            }
        }

        var json: JSONValue {
            switch self {
            case .int(let i): .int(i)
            case .double(let d): .double(d)
            }
        }
    }

    private func arithmetic(_ op: Node.Arithmetic, _ args: [Node], _ scope: Scope) throws(Failure) -> JSONValue {
        func operand(_ i: Int) throws(Failure) -> Operand? {
            i < args.count ? Operand(try evaluate(args[i], scope)) : nil
        }
        switch op {
        case .add, .multiply:
            guard !args.isEmpty else { return op == .add ? .int(0) : .null }
            var acc = Operand(parsingFloat: try evaluate(args[0], scope))
            for i in 1..<args.count {
                let next = Operand(parsingFloat: try evaluate(args[i], scope))
                if case .int(let a) = acc, case .int(let b) = next {
                    let (r, overflow) = op == .add ? a.addingReportingOverflow(b) : a.multipliedReportingOverflow(by: b)
                    acc = overflow ? .double(op == .add ? Double(a) + Double(b) : Double(a) * Double(b)) : .int(r)
                } else {
                    acc = .double(op == .add ? acc.double + next.double : acc.double * next.double)
                }
            }
            return acc.json
        case .subtract:
            guard let a = try operand(0) else { return .double(.nan) }
            guard let b = try operand(1) else {
                if case .int(let i) = a, i != .min { return .int(-i) }
                return .double(-a.double)
            }
            if case .int(let x) = a, case .int(let y) = b {
                let (r, overflow) = x.subtractingReportingOverflow(y)
                if !overflow { return .int(r) }
            }
            return .double(a.double - b.double)
        case .divide:
            guard let a = try operand(0), let b = try operand(1) else { return .double(.nan) }
            return .double(a.double / b.double)
        case .remainder:
            guard let a = try operand(0), let b = try operand(1) else { return .double(.nan) }
            if case .int(let x) = a, case .int(let y) = b, y != 0, !(x == .min && y == -1) { return .int(x % y) }
            return .double(a.double.truncatingRemainder(dividingBy: b.double))
        }
    }

    private func extremum(_ args: [Node], _ scope: Scope, wantMax: Bool) throws(Failure) -> JSONValue {
        guard !args.isEmpty else { return .null }
        var best: JSONValue = .null
        var bestNumber = 0.0
        for (i, a) in args.enumerated() {
            let v = try evaluate(a, scope)
            let n = JS.number(v)
            if n.isNaN { return .double(.nan) }
            let numeric: JSONValue = if case .int = v { v } else { .double(n) }
            if i == 0 || (wantMax ? n > bestNumber : n < bestNumber) {
                best = numeric
                bestNumber = n
            }
        }
        return best
    }

    static func contains(_ haystack: String, _ needle: String) -> Bool {
        let h = haystack.utf8
        let n = needle.utf8
        if n.isEmpty { return true }
        guard n.count <= h.count else { return false }
        var start = h.startIndex
        let last = h.index(h.endIndex, offsetBy: -n.count)
        while start <= last {
            if h[start...].starts(with: n) { return true }
            start = h.index(after: start)
        }
        return false
    }

    @inline(__always)
    static func hasPrefix(_ s: String, _ prefix: String) -> Bool {
        let n = prefix.utf8.count
        guard s.utf8.count >= n else { return false }
        let result = withBytes(s) { x in withBytes(prefix) { p in sameBytes(UnsafeBufferPointer(rebasing: x[..<n]), p) } }
        return (result ?? nil) ?? s.utf8.starts(with: prefix.utf8)
    }

    @inline(__always)
    static func hasSuffix(_ s: String, _ suffix: String) -> Bool {
        let n = suffix.utf8.count
        let count = s.utf8.count
        guard count >= n else { return false }
        let result = withBytes(s) { x in withBytes(suffix) { p in sameBytes(UnsafeBufferPointer(rebasing: x[(count - n)...]), p) } }
        return (result ?? nil) ?? s.utf8.reversed().starts(with: suffix.utf8.reversed())
    }

    /// json-logic-js `substr` (JavaScript's `String.prototype.substr`, counted in code points;
    /// a negative length drops that many characters from the end).
    static func substring(_ s: String, _ start: Double, _ length: Double?) -> String {
        let scalars = Array(s.unicodeScalars)
        let size = scalars.count
        func integer(_ d: Double) -> Int {
            if d.isNaN { return 0 }
            if d >= Double(Int.max / 2) { return Int.max / 2 }
            if d <= -Double(Int.max / 2) { return -(Int.max / 2) }
            return Int(d.rounded(.towardZero))
        }
        var from = integer(start)
        if from < 0 { from = max(size + from, 0) }
        from = min(from, size)
        var count: Int
        if let length {
            let l = integer(length)
            count = l < 0 ? max(size - from + l, 0) : min(l, size - from)
        } else {
            count = size - from
        }
        count = max(count, 0)
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars[from..<(from + count)])
        return String(out)
    }

    // MARK: fractional

    private func fractional(_ rule: Fractional, _ scope: Scope) throws(Failure) -> JSONValue {
        var hasher = Murmur3()
        var extraBucket: JSONValue?
        var shorthand = true
        if let first = rule.first {
            let v = try evaluate(first, scope)
            if case .array = v {
                extraBucket = v
            } else {
                if v.isNull { return .null }
                shorthand = false
                CBOR.encode(v, into: &hasher)
            }
        }
        if shorthand {
            let key: JSONValue?
            let flag: JSONValue
            switch scope {
            case .root:
                key = context.targetingKey.map(JSONValue.string)
                flag = .string(flagKey)
            case .value:
                key = lookup(Self.targetingKeyPath, in: scope)
                // As the reference reads it from the data: "" when the data has no flag key.
                flag = lookup(Self.flagKeyPath, in: scope) ?? .string("")
            }
            guard case .string(let targetingKey) = key, !targetingKey.utf8.isEmpty else { return .null }
            CBOR.head(4, 2, into: &hasher)
            CBOR.encode(flag, into: &hasher)
            CBOR.text(targetingKey, into: &hasher)
        }
        let hash = hasher.finalize()

        if extraBucket == nil, let weights = rule.literalWeights {
            let total = rule.literalTotal
            guard total >= 1, total <= Fractional.maxTotalWeight else { return .null }
            let target = Fractional.scale(hash, total: total)
            var running: UInt64 = 0
            for (i, w) in weights.enumerated() {
                running += w
                if running > target {
                    guard case .literal(let name, _) = rule.buckets[i] else { return .null }
                    return try evaluate(name, scope)
                }
            }
            return .null
        }

        // General case: weights may be computed; walk twice (total, then pick).
        var total: UInt64 = 0
        if let extraBucket {
            guard let (_, w) = Self.bucket(extraBucket) else { return .null }
            total += w
        }
        for bucket in rule.buckets {
            guard let w = try weight(of: bucket, scope) else { return .null }
            total = min(total + w, Fractional.maxTotalWeight + 1)
        }
        guard total >= 1, total <= Fractional.maxTotalWeight else { return .null }
        let target = Fractional.scale(hash, total: total)
        var running: UInt64 = 0
        if let extraBucket, let (name, w) = Self.bucket(extraBucket) {
            running += w
            if running > target { return name }
        }
        for bucket in rule.buckets {
            guard let w = try weight(of: bucket, scope) else { return .null }
            running += w
            if running > target {
                switch bucket {
                case .literal(let name, _): return try evaluate(name, scope)
                case .computed(let node): return Self.bucket(try evaluate(node, scope))?.name ?? .null
                }
            }
        }
        return .null
    }

    private func weight(of bucket: Fractional.Bucket, _ scope: Scope) throws(Failure) -> UInt64? {
        switch bucket {
        case .literal(_, let weightNode):
            guard let weightNode else { return 1 }
            return Fractional.weight(try evaluate(weightNode, scope))
        case .computed(let node):
            return Self.bucket(try evaluate(node, scope))?.weight
        }
    }

    private static func bucket(_ value: JSONValue) -> (name: JSONValue, weight: UInt64)? {
        guard case .array(let a) = value, a.count == 1 || a.count == 2 else { return nil }
        guard a.count == 2 else { return (a[0], 1) }
        guard let w = Fractional.weight(a[1]) else { return nil }
        return (a[0], w)
    }
}
