import GuidonJSON

/// Validates a flagd flag-definition document and compiles it into a `Snapshot`.
///
/// Every problem is collected before deciding: a rejected document comes back with all
/// of them, each with its JSON path and, where it can be found, its line and column.
struct Compiler {
    let options: CompileOptions

    /// The members of a flag (checked for every flag: a switch, not a hashed set).
    static func isKnownFlagMember(_ name: String) -> Bool {
        switch name {
        case "state", "variants", "defaultVariant", "targeting", "metadata": true
        default: false
        }
    }
    static let knownTopLevelMembers: Set<String> = ["flags", "$schema", "$evaluators", "metadata"]

    /// Compiles `bytes`, taking the flags that did not change from `previous` (see `CompileMemo`).
    ///
    /// The flag definitions are not parsed with the rest of the document: the parse only
    /// delimits them, and each is parsed when it is compiled and freed right after, so that the
    /// parsed tree of a large file never lives next to the snapshot being served (a tree takes
    /// several times the bytes of its text).
    func compile(_ bytes: [UInt8], reusing previous: Snapshot?) throws(ValidationReport) -> Snapshot {
        var session = Session(bytes: bytes)
        session.features = options.features
        let previous = previous?.features == options.features ? previous : nil
        var spans: [Range<Int>] = []
        do {
            let parser = JSONParser(duplicateKeys: .reject)
            // Flags that can be taken from `previous` are not parsed at all: their text is the
            // text that parsed there.
            let reuse = previous.flatMap { previous in previous.memo.map { Reuse(snapshot: previous, memo: $0, bytes: bytes) } }
            var mayReuse = false
            var reused: [Int?] = []
            let shouldSkip = { (before: JSONObject) in
                mayReuse = reuse.map { !$0.memo.contextDiffers(from: before) } ?? false
                return true
            }
            (session.root, spans) = try parser.parse(bytes, skippingIn: "flags", when: shouldSkip) { position, key, start in
                let match = mayReuse ? reuse?.flag(key, at: start) : nil
                reused.append(match?.old)  // members come in order: `position` is `reused.count`
                return match?.end ?? JSONParser.objectEnd(in: bytes, from: start)
            }
            if let reuse, reuse.memo.sharesContext(with: session.root) {
                session.reuse = reuse
                session.reused = reused
            }
            session.spans = spans
        } catch {
            throw Self.report(error)
        }
        let context = CompileMemo.context(of: session.root)
        let snapshotParts: (flags: [CompiledFlag], infos: [FlagInfo], metadata: JSONObject)?
        do {
            snapshotParts = try session.run()
        } catch {
            throw Self.report(error)
        }
        let strict = options.mode == .strict
        var errors: [Problem] = []
        var warnings: [Problem] = []
        for problem in session.problems + session.logic.problems {
            switch problem.kind {
            case .structural: errors.append(problem)
            case .tolerated: if strict { errors.append(problem) } else { warnings.append(problem) }
            case .warning: warnings.append(problem)
            }
        }
        let locator = SourceLocator(bytes: bytes)
        func diagnostics(_ problems: [Problem], _ severity: Diagnostic.Severity) -> [Diagnostic] {
            problems.map { p in
                let position = locator.lineColumn(of: p.path)
                return Diagnostic(severity: severity, path: renderPath(p.path), line: position?.line,
                    column: position?.column, message: p.message)
            }
        }
        if !errors.isEmpty || snapshotParts == nil {
            throw ValidationReport(errors: diagnostics(errors, .error), warnings: diagnostics(warnings, .warning))
        }
        let (flags, infos, metadata) = snapshotParts!
        let memo = spans.count == flags.count
            ? CompileMemo(source: Self.compact(bytes), definitions: spans, evaluators: context.evaluators,
                metadata: context.metadata, problems: session.flagProblems)
            : nil
        // With the same keys in the same order, the previous key → position table is this one.
        let lookup = session.reuse.flatMap { reuse in Self.sameKeys(flags, reuse.snapshot.compiled) ? reuse.snapshot.lookup : nil }
        return Snapshot(flags: flags, infos: infos, metadata: metadata, warnings: diagnostics(warnings, .warning),
            clock: options.clock, memo: memo, compiledCount: session.compiledCount, lookup: lookup, features: options.features)
    }
}

extension Compiler {
    /// A document that is not JSON: the one problem reported.
    static func report(_ error: JSONSyntaxError) -> ValidationReport {
        ValidationReport(errors: [Diagnostic(severity: .error, path: "$", line: error.line, column: error.column, message: error.reason)])
    }

    static func sameKeys(_ a: [CompiledFlag], _ b: [CompiledFlag]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0 === $1 || $0.key.utf8.elementsEqual($1.key.utf8) }
    }

    /// `bytes`, without spare capacity worth copying to drop (a snapshot keeps them).
    static func compact(_ bytes: [UInt8]) -> [UInt8] {
        guard bytes.capacity - bytes.count > 4096 + bytes.count / 16 else { return bytes }
        return bytes.withUnsafeBufferPointer { Array($0) }
    }
}

/// A previous snapshot whose flags may be reused, when its `$evaluators` and set metadata are
/// those of the document being compiled.
private struct Reuse {
    let snapshot: Snapshot
    let memo: CompileMemo
    /// The document being compiled.
    let bytes: [UInt8]

    /// The previous snapshot's flag `key` and where its definition ends, if the text at `start`
    /// begins with that definition, byte for byte.
    func flag(_ key: String, at start: Int) -> (old: Int, end: Int)? {
        guard let old = snapshot.lookup[key],
            snapshot.compiled[old].key.utf8.elementsEqual(key.utf8),  // the lookup equates canonically equal keys
            let end = memo.definitionEnd(of: old, at: start, in: bytes)
        else { return nil }
        return (old, end)
    }
}

/// One compilation: the document, the problems found so far, the logic compiler.
private struct Session {
    /// The document, and where each flag's definition is in it (when `flags` is an object).
    let bytes: [UInt8]
    var spans: [Range<Int>] = []
    var root: JSONValue = .null
    var problems: [Problem] = []
    var logic = LogicCompiler(evaluators: JSONObject())
    /// `CompileOptions.features`.
    var features: Set<String>?
    var evaluatorDefinitions = JSONObject()
    var reuse: Reuse?
    /// Flags taken from `reuse`: by position in this document, the position in the previous one.
    /// Like every definition `JSONParser.objectEnd` delimits, they are `null` in `root`.
    var reused: [Int?] = []
    /// What compiling each flag reported, by position (flags without problems are left out).
    var flagProblems: [Int: FlagProblems] = [:]
    /// How many flags were compiled rather than reused.
    var compiledCount = 0

    mutating func report(_ kind: Problem.Kind, _ path: [PathSegment], _ message: String) {
        problems.append(Problem(kind: kind, path: path, message: message))
    }

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// Throws when a flag's definition, parsed only now, is not JSON after all.
    mutating func run() throws(JSONSyntaxError) -> (flags: [CompiledFlag], infos: [FlagInfo], metadata: JSONObject)? {
        guard case .object(var document) = root else {
            report(.structural, [], "a flag document must be a JSON object with a \"flags\" member, not \(article(root.typeName))")
            return nil
        }
        // From here on `document` holds the only reference to the parsed tree, so that each
        // flag's definition can be freed once it is compiled (see below).
        root = .null
        for key in document.keys where !Compiler.knownTopLevelMembers.contains(key) {
            report(.warning, [.key(key)], "unknown member \"\(key)\" is ignored (known: \"flags\", \"$evaluators\", \"metadata\", \"$schema\")")
        }
        if let schema = document["$schema"], schema.string == nil {
            report(.tolerated, [.key("$schema")], "must be a string (a schema URL), not \(article(schema.typeName))")
        }
        let setMetadata = checkMetadata(document["metadata"], at: [.key("metadata")])

        if let evaluators = document["$evaluators"] {
            if case .object(let definitions) = evaluators {
                evaluatorDefinitions = definitions
            } else {
                // flagd ignores a false-like `$evaluators` (and fails on any other).
                report(JS.truthy(evaluators) ? .structural : .tolerated, [.key("$evaluators")],
                    "must be an object mapping names to JSON Logic rules, not \(article(evaluators.typeName))")
            }
        }
        logic = LogicCompiler(evaluators: evaluatorDefinitions, features: features)
        logic.compileEvaluators()

        var flagDefinitions: JSONObject
        switch document["flags"] {
        case nil:
            // flagd loads such a document, with no flags.
            report(.tolerated, [], "missing \"flags\": a flag document needs a \"flags\" object (flag key → flag definition)")
            flagDefinitions = JSONObject()
        case .object(let definitions)?:
            flagDefinitions = definitions
        case let other?:
            report(.structural, [.key("flags")], "must be an object mapping flag keys to flag definitions, not \(article(other.typeName))")
            return nil
        }
        document = JSONObject()  // `flagDefinitions` is now the only reference to the flags

        var flags: [CompiledFlag] = []
        var infos: [FlagInfo] = []
        flags.reserveCapacity(flagDefinitions.count)
        infos.reserveCapacity(flagDefinitions.count)
        var failed = false
        for position in 0..<flagDefinitions.count {
            let key = flagDefinitions.keys[position]
            if position < reused.count, let old = reused[position], let reuse {
                flags.append(reuse.snapshot.compiled[old])
                infos.append(reuse.snapshot.flags[old])
                if let earlier = reuse.memo.problems[old] {
                    // Reported where a fresh compile would report them.
                    problems += earlier.document
                    logic.replay(earlier.logic)
                    flagProblems[position] = earlier
                }
                continue
            }
            // Parsed here (unless the document parse had to), the definition is freed once compiled.
            var definition = flagDefinitions.values[position]
            if case .null = definition, position < spans.count {
                definition = try JSONParser(duplicateKeys: .reject).parse(bytes, valueIn: spans[position], depth: 2)
            }
            flagDefinitions.replaceValue(at: position, with: .null)
            let problemsBefore = problems.count
            let logicProblemsBefore = logic.problems.count
            let compiled = compileFlag(key, definition, setMetadata: setMetadata)
            compiledCount += 1
            if problems.count > problemsBefore || logic.problems.count > logicProblemsBefore {
                flagProblems[position] = FlagProblems(
                    document: Array(problems[problemsBefore...]), logic: Array(logic.problems[logicProblemsBefore...]))
            }
            if let (flag, info) = compiled {
                flags.append(flag)
                infos.append(info)
            } else {
                failed = true
            }
        }
        return failed ? nil : (flags, infos, setMetadata)
    }

    /// Metadata: an object whose values are strings, numbers or booleans.
    mutating func checkMetadata(_ value: JSONValue?, at path: [PathSegment]) -> JSONObject {
        guard let value else { return JSONObject() }
        guard case .object(let object) = value else {
            report(.structural, path, "must be an object of strings, numbers and booleans, not \(article(value.typeName))")
            return JSONObject()
        }
        for (key, member) in object {
            if key.isEmpty {
                report(.structural, path + [.key(key)], "a metadata key must not be empty")
                continue
            }
            switch member {
            case .string, .int, .double, .bool: continue
            default:
                report(.structural, path + [.key(key)],
                    "metadata values must be strings, numbers or booleans, not \(article(member.typeName))")
            }
        }
        return object
    }

    mutating func compileFlag(_ key: String, _ definition: JSONValue, setMetadata: JSONObject) -> (CompiledFlag, FlagInfo)? {
        let path: [PathSegment] = [.key("flags"), .key(key)]
        let firstProblem = problems.count
        guard case .object(let flag) = definition else {
            report(.structural, path, "a flag must be an object with \"state\" and \"variants\", not \(article(definition.typeName))")
            return brokenFlag(key, since: firstProblem, state: nil, metadata: setMetadata, definition: definition)
        }
        for member in flag.keys where !Compiler.isKnownFlagMember(member) {
            report(.warning, path + [.key(member)],
                "unknown member \"\(member)\" is ignored (a flag has \"state\", \"variants\", \"defaultVariant\", \"targeting\", \"metadata\")")
        }

        // state
        var enabled = true
        var state = FlagInfo.State.enabled
        switch flag["state"] {
        case nil:
            report(.structural, path, "missing \"state\" (\"ENABLED\" or \"DISABLED\")")
        case .string("ENABLED")?:
            enabled = true
        case .string("DISABLED")?:
            enabled = false
            state = .disabled
        case let other?:
            var message = "\(other) is not a valid state; use \"ENABLED\" or \"DISABLED\""
            if let s = other.string, ["ENABLED", "DISABLED"].contains(s.uppercased()) { message += " (states are upper-case)" }
            report(.structural, path + [.key("state")], message)
        }

        // variants
        var names: [String] = []
        var values: [JSONValue] = []
        switch flag["variants"] {
        case nil:
            report(.structural, path, "missing \"variants\": an object mapping variant names to values, e.g. {\"on\": true, \"off\": false}")
        case .object(let variants)?:
            if variants.isEmpty {
                report(.structural, path + [.key("variants")], "a flag needs at least one variant")
            }
            var first: (name: String, kind: String)?
            for (name, value) in variants {
                let kind: String
                switch value {
                case .bool: kind = "boolean"
                case .string: kind = "string"
                case .int, .double: kind = "number"
                case .object: kind = "object"
                case .null, .array:
                    // The reference serves them: a null value fails the type check (and cannot be
                    // named by targeting), an array passes as an object.
                    report(.tolerated, path + [.key("variants"), .key(name)],
                        "variant values must be booleans, strings, numbers or objects, not \(article(value.typeName))")
                    continue
                }
                if let first, first.kind != kind {
                    report(.tolerated, path + [.key("variants"), .key(name)],
                        "is \(article(kind)), but variant \"\(first.name)\" is \(article(first.kind)); all variants of a flag must have the same type")
                } else if first == nil {
                    first = (name, kind)
                }
            }
            names = variants.keys
            values = variants.values
        case let other?:
            report(.structural, path + [.key("variants")], "must be an object mapping variant names to values, not \(article(other.typeName))")
        }
        let table = VariantTable(names: names, values: values)

        // defaultVariant
        var defaultName: String?
        switch flag["defaultVariant"] {
        case nil, .null?, .string("")?:
            break
        case .string(let name)?:
            defaultName = name
        case .bool(let b)?:
            report(.tolerated, path + [.key("defaultVariant")],
                "must be a variant name (a string) or null, not a boolean (flagd reads \(b) as the variant \"\(b)\")")
            defaultName = b ? "true" : "false"
        case let other? where !JS.truthy(other) || other == .object(JSONObject()):
            report(.tolerated, path + [.key("defaultVariant")],
                "must be a variant name (a string) or null, not \(article(other.typeName)) (flagd reads \(other) as no default variant)")
        case let other?:
            report(.structural, path + [.key("defaultVariant")], "must be a variant name (a string) or null, not \(article(other.typeName))")
        }
        var defaultIndex: Int?
        var unknownDefault: String?
        if let name = defaultName, !names.isEmpty {
            if let i = table.index(of: name) {
                defaultIndex = i
            } else {
                var message = "\(JSONValue.string(name)) is not one of the variants (\(quotedList(names)))"
                if let close = names.min(by: { editDistance($0, name) < editDistance($1, name) }), editDistance(close, name) <= 2 {
                    message += "; did you mean \(JSONValue.string(close))?"
                }
                report(.tolerated, path + [.key("defaultVariant")], message + " (serving the default would fail with GENERAL)")
                unknownDefault = name
            }
        }

        // targeting
        var outcome: Outcome?
        var references: Set<String> = []
        switch flag["targeting"] {
        case nil, .object(JSONObject())?:
            break
        case .object(let rule)?:
            let node = logic.compileRule(.object(rule), at: path + [.key("targeting")])
            references = logic.referenced
            outcome = table.outcome(for: node)
            if let outcome { reportUnknownResults(outcome, table, path + [.key("targeting")]) }
        case let other? where !JS.truthy(other):
            report(.tolerated, path + [.key("targeting")],
                "must be a JSON Logic rule (an object), or {} for none, not \(article(other.typeName)) (flagd reads \(other) as no targeting)")
        case let other?:
            report(.tolerated, path + [.key("targeting")],
                "must be a JSON Logic rule (an object), or {} for none, not \(article(other.typeName)) (flagd answers PARSE_ERROR)")
            outcome = .resolved(.error(.parseError, "targeting \(other) is not a JSON Logic rule"))
        }

        // metadata
        var metadata = setMetadata
        switch flag["metadata"] {
        case .null?:
            report(.tolerated, path + [.key("metadata")],
                "must be an object of strings, numbers and booleans, not a null (flagd reads it as no metadata)")
        case let other? where other.object == nil && !JS.truthy(other):
            // The reference evaluator loads it and then fails every evaluation merging it.
            report(.tolerated, path + [.key("metadata")],
                "must be an object of strings, numbers and booleans, not \(article(other.typeName)) (flagd fails every evaluation of the flag with GENERAL)")
            enabled = true
            outcome = .resolved(.error(.general, "metadata \(other) is not an object"))
        default:
            let ownMetadata = checkMetadata(flag["metadata"], at: path + [.key("metadata")])
            for (k, v) in ownMetadata { metadata[k] = v }
        }

        guard !problems[firstProblem...].contains(where: { $0.kind == .structural }) else {
            return brokenFlag(key, since: firstProblem, state: flag["state"], metadata: metadata, definition: definition)
        }

        let compiled = CompiledFlag(key: key, enabled: enabled, variants: table, defaultIndex: defaultIndex,
            unknownDefault: unknownDefault, targeting: outcome, metadata: metadata)
        let info = FlagInfo(key: key, state: state, variants: names, defaultVariant: defaultName,
            metadata: metadata, hasTargeting: outcome != nil,
            fingerprint: fingerprint(definition, references: references, metadata: metadata))
        return (compiled, info)
    }

    /// A flag whose definition has structural problems (`problems[first...]`), compiled to
    /// answer every evaluation with ERROR / PARSE_ERROR naming its first problem. Its problems
    /// become `tolerated`: strict mode still rejects the document, naming each; lenient mode
    /// serves every other flag and this one broken, so one sloppy flag does not take a flagd
    /// file down. (The reference evaluator refuses such a document whole: one of the documented
    /// differences.) The messages are the strict ones, so that a compile reusing this flag
    /// reports exactly what a fresh compile reports, in either mode.
    mutating func brokenFlag(
        _ key: String, since first: Int, state: JSONValue?, metadata: JSONObject, definition: JSONValue
    ) -> (CompiledFlag, FlagInfo) {
        var firstMessage = ""
        for i in first..<problems.count where problems[i].kind == .structural {
            if firstMessage.isEmpty { firstMessage = "\(renderPath(problems[i].path)): \(problems[i].message)" }
            problems[i].kind = .tolerated
        }
        let message = "flag '\(key)' could not be loaded: \(firstMessage)"
        let compiled = CompiledFlag(key: key, enabled: true, variants: VariantTable(names: [], values: []), defaultIndex: nil,
            unknownDefault: nil, targeting: .resolved(.error(.parseError, message)), metadata: metadata)
        let info = FlagInfo(key: key, state: state == .string("DISABLED") ? .disabled : .enabled, variants: [],
            defaultVariant: nil, metadata: metadata, hasTargeting: true,
            fingerprint: fingerprint(definition, references: [], metadata: metadata))
        return (compiled, info)
    }

    /// Warns about literal targeting results that name no variant (they would be errors at run time).
    mutating func reportUnknownResults(_ outcome: Outcome, _ table: VariantTable, _ path: [PathSegment]) {
        switch outcome {
        case .resolved(.invalid(.string(""))):
            report(.warning, path, "targeting can return \"\", which names no variant; that evaluation would fail with GENERAL")
        case .resolved(.invalid(.string(let name))) where table.index(of: name) != nil:
            report(.warning, path, "targeting can return \(JSONValue.string(name)), a variant whose value is null; that evaluation would fail with GENERAL")
        case .resolved(.invalid(let value)):
            report(.warning, path, "targeting can return \(value), which is not one of the variants (\(quotedList(table.names))); that evaluation would fail with GENERAL")
        case .choose(_, let then, let otherwise):
            reportUnknownResults(then, table, path)
            reportUnknownResults(otherwise, table, path)
        case .chooseFirst(let pairs, let otherwise):
            for pair in pairs { reportUnknownResults(pair.then, table, path) }
            reportUnknownResults(otherwise, table, path)
        default:
            break
        }
    }

    /// A stable digest of everything that decides a flag's answers: its definition (with
    /// object members in sorted order), the evaluators it uses, and its merged metadata.
    func fingerprint(_ definition: JSONValue, references: Set<String>, metadata: JSONObject) -> UInt64 {
        var hasher = FNV1a()
        hasher.combine(definition)
        for name in references.sorted() {
            hasher.combine(.string(name))
            hasher.combine(evaluatorDefinitions[name] ?? .null)
        }
        hasher.combine(.object(metadata))
        return hasher.value
    }
}

/// 64-bit FNV-1a over a canonical serialisation of JSON values (deterministic across runs).
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func combine(_ byte: UInt8) {
        value = (value ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
    }

    mutating func combine(text: String) {
        for b in text.utf8 { combine(b) }
        combine(UInt8(0))
    }

    mutating func combine(_ json: JSONValue) {
        switch json {
        case .null: combine(UInt8(ascii: "n"))
        case .bool(let b): combine(b ? UInt8(ascii: "t") : UInt8(ascii: "f"))
        case .int(let i):
            combine(UInt8(ascii: "i"))
            withUnsafeBytes(of: i.littleEndian) { for b in $0 { combine(b) } }
        case .double(let d):
            combine(UInt8(ascii: "d"))
            withUnsafeBytes(of: d.bitPattern.littleEndian) { for b in $0 { combine(b) } }
        case .string(let s):
            combine(UInt8(ascii: "s"))
            combine(text: s)
        case .array(let a):
            combine(UInt8(ascii: "["))
            for e in a { combine(e) }
            combine(UInt8(ascii: "]"))
        case .object(let o):
            combine(UInt8(ascii: "{"))
            let keys = o.keys
            guard keys.count <= 16 else {
                for i in keys.indices.sorted(by: { keys[$0].utf8.lexicographicallyPrecedes(keys[$1].utf8) }) {
                    combine(text: keys[i])
                    combine(o.values[i])
                }
                combine(UInt8(ascii: "}"))
                return
            }
            // Members in key order. Most objects are small: an insertion sort of their indexes
            // in scratch space beats allocating a sorted array.
            withUnsafeTemporaryAllocation(of: Int.self, capacity: keys.count) { order in
                for i in keys.indices {
                    var j = i
                    while j > 0, keys[i].utf8.lexicographicallyPrecedes(keys[order[j - 1]].utf8) {
                        order[j] = order[j - 1]
                        j -= 1
                    }
                    order[j] = i
                }
                for i in order {
                    combine(text: keys[i])
                    combine(o.values[i])
                }
            }
            combine(UInt8(ascii: "}"))
        }
    }
}
