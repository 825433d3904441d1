import GuidonJSON
import PropertyBased
import Testing

@testable import GuidonEngine

/// A flag document as the tests edit it: every part is kept as JSON text, so that "unchanged"
/// means the same bytes, as it does for the compiler.
private struct Document {
    var evaluators: String?
    var metadata: String?
    var flags: [(key: String, text: String)] = []
    /// Whether `$evaluators` and `metadata` come after the flags (the compiler then learns
    /// whether they changed only after it has skimmed the flags).
    var contextLast = false

    var json: String {
        var context: [String] = []
        if let evaluators { context.append("\"$evaluators\": \(evaluators)") }
        if let metadata { context.append("\"metadata\": \(metadata)") }
        let flagMembers = flags.map { "    \(JSONWriter.string(.string($0.key))): \($0.text)" }
        let flagsMember = "\"flags\": {\n" + flagMembers.joined(separator: ",\n") + "\n  }"
        let members = contextLast ? [flagsMember] + context : context + [flagsMember]
        return "{\n  " + members.joined(separator: ",\n  ") + "\n}\n"
    }

    var bytes: [UInt8] { Array(json.utf8) }
}

/// Random documents and edits, in the shapes that matter to reuse: `$ref`s, set and flag
/// metadata, warnings, targeting that only lenient mode loads, structural errors.
private struct Edits {
    var rng: SplitMix

    mutating func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
    mutating func chance(_ percent: Int) -> Bool { pick(100) < percent }

    mutating func key() -> String {
        ["beta", "checkout", "dark-mode", "limit", "eu-banner", "caf\u{E9}", "cafe\u{301}", "x y", "new-\(pick(1000))"][pick(9)]
    }

    mutating func evaluators() -> String? {
        switch pick(6) {
        case 0: return nil
        case 1: return #"{"is-staff": {"ends_with": [{"var": "email"}, "@staff.example"]}}"#
        case 2: return #"{"is-admin": {"ends_with": [{"var": "email"}, "@staff.example"]}}"#
        case 3: return #"{"is-eu": {"in": [{"var": "country"}, ["DE", "FR"]]}, "broken": {"nope": [1]}}"#
        default:
            let countries = ["\"DE\"", "\"FR\"", "\"IT\"", "\"ES\""].prefix(1 + pick(4)).joined(separator: ", ")
            return #"{"is-staff": {"ends_with": [{"var": "email"}, "@staff.example"]}, "is-eu": {"in": [{"var": "country"}, [\#(countries)]]}}"#
        }
    }

    mutating func metadata() -> String? {
        switch pick(5) {
        case 0: return nil
        case 1: return #"{"flagSetId": "shop", "version": \#(pick(3))}"#
        case 2: return #"{"version": \#(pick(3)), "flagSetId": "shop"}"#
        case 3: return #"{"flagSetId": "shop", "owner": "core", "version": -0.0}"#
        default: return #"{"flagSetId": "shop", "owner": "core", "version": 0.0}"#
        }
    }

    mutating func flag() -> String {
        let n = pick(4)
        switch pick(10) {
        case 0: return #"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "\#(n % 2 == 0 ? "on" : "off")"}"#
        case 1: return #"{"state": "ENABLED", "variants": {"low": \#(n), "high": 50}, "defaultVariant": "low", "targeting": {"if": [{"$ref": "is-staff"}, "high", null]}, "metadata": {"version": 8, "owner": "team-\#(n)"}}"#
        case 2: return #"{"state": "ENABLED", "variants": {"eu": "EU", "row": "World"}, "defaultVariant": "row", "targeting": {"if": [{"$ref": "is-eu"}, "eu", "row"]}}"#
        case 3: return #"{"state": "ENABLED", "variants": {"a": "control", "b": "treatment"}, "defaultVariant": "a", "targeting": {"fractional": [["a", \#(50 + n)], ["b", \#(50 - n)]]}}"#
        case 4: return #"{"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "owner": "typo \#(n)"}"#
        case 5: return #"{"state": "ENABLED", "variants": {"a": 1, "b": 2}, "targeting": {"if": [{"==": [{"var": "tier"}, "gold"]}, "a", "zzz\#(n)"]}}"#
        case 6: return #"{"state": "DISABLED", "variants": {"on": {"color": "teal", "n": \#(n)}, "off": {}}, "defaultVariant": "off"}"#
        case 7: return #"{"state": "ENABLED", "variants": {"x": -0.0, "y": 0.0}, "defaultVariant": "x", "targeting": {"nope\#(n)": []}}"#
        case 8: return #"{"state": "ENABLED", "variants": {"x": 1, "y": 2}, "defaultVariant": "y", "targeting": {"if": [{"$ref": "missing"}, "x", "y"]}}"#
        default: return #"{"variants": {"on": true, "off": false}, "state": "ENABLED", "defaultVariant": "on", "metadata": {"flagSetId": "own"}}"#
        }
    }

    mutating func document() -> Document {
        var document = Document(evaluators: evaluators(), metadata: metadata(), contextLast: chance(50))
        for _ in 0..<(3 + pick(8)) { add(to: &document) }
        return document
    }

    mutating func add(to document: inout Document) {
        let key = key()
        guard !document.flags.contains(where: { $0.key == key }) else { return }
        document.flags.insert((key, flag()), at: pick(document.flags.count + 1))
    }

    /// One random edit; most keep the document valid.
    mutating func edit(_ document: inout Document) {
        let count = document.flags.count
        switch pick(12) {
        case 0, 1, 2:
            if count > 0 { document.flags[pick(count)].text = flag() }
        case 3:
            add(to: &document)
        case 4:
            if count > 1 { document.flags.remove(at: pick(count)) }
        case 5:
            if count > 1 { document.flags.insert(document.flags.remove(at: pick(count)), at: pick(count)) }
        case 6:
            // The same definition, written differently.
            if count > 0 {
                let i = pick(count)
                document.flags[i].text = document.flags[i].text.replacing(", ", with: ",  ")
            }
        case 7:
            document.evaluators = evaluators()
        case 8:
            document.metadata = metadata()
            if chance(20) { document.contextLast.toggle() }
        case 9:
            if count > 0, chance(50) { document.flags.append(document.flags[pick(count)]) }  // duplicate key
        case 10:
            if count > 0, chance(50) {
                document.flags[pick(count)].text = #"{"state": "enabled", "variants": {"on": true}}"#
            }
        default:
            if chance(20) { document.evaluators = "[]" }
        }
    }
}

/// Everything a snapshot shows, rendered byte-exactly (member order and number forms count).
private func render(_ snapshot: Snapshot) -> [String] {
    let contexts = [
        EvaluationContext(),
        EvaluationContext(targetingKey: "user-1", attributes: ["email": "ana@staff.example", "country": "IT", "tier": "gold"]),
        EvaluationContext(targetingKey: "user-2", attributes: ["email": "bo@example.com", "country": "DE"]),
    ]
    var lines = snapshot.warnings.map(\.description)
    lines.append(JSONWriter.string(.object(snapshot.metadata)))
    for info in snapshot.flags {
        lines.append(
            "\(Array(info.key.utf8)) \(info.state) \(info.variants.map { Array($0.utf8) }) \(info.defaultVariant ?? "-") "
                + "\(JSONWriter.string(.object(info.metadata))) \(info.hasTargeting) \(info.fingerprint)")
    }
    for context in contexts {
        // By key (through the key table) as well as all at once.
        let byKey = snapshot.evaluate(snapshot.flags.map(\.key) + ["missing"], context: context, now: 1_750_000_000)
        for r in snapshot.evaluateAll(context: context, now: 1_750_000_000) + byKey {
            lines.append(
                "\(Array(r.flagKey.utf8)) \(r.value.map { JSONWriter.string($0) } ?? "-") \(r.variant ?? "-") "
                    + "\(r.reason) \(String(describing: r.errorCode)) \(r.errorMessage ?? "-") \(JSONWriter.string(.object(r.metadata)))")
        }
    }
    return lines
}

private func compile(_ document: Document, _ mode: CompileOptions.Mode, reusing previous: Snapshot? = nil) -> Result<Snapshot, ValidationReport> {
    Result { () throws(ValidationReport) in try Snapshot.compile(json: document.bytes, options: CompileOptions(mode: mode), reusing: previous) }
}

@Suite struct IncrementalCompileTests {
    /// Chains of random edits: each version compiled reusing the last good one gives exactly
    /// what a fresh compile gives, and reuses precisely the flags whose text and context did not change.
    @Test func reusingGivesWhatAFreshCompileGives() async {
        await propertyCheck(count: 150, input: Gen<UInt64>.value()) { seed in
            var edits = Edits(rng: SplitMix(state: seed))
            var document = edits.document()
            var previousMode: CompileOptions.Mode = edits.chance(50) ? .strict : .lenient
            var previous: (document: Document, snapshot: Snapshot)? = (try? compile(document, previousMode).get()).map { (document, $0) }
            for _ in 0..<12 {
                for _ in 0...edits.pick(3) { edits.edit(&document) }
                let mode: CompileOptions.Mode = edits.chance(80) ? previousMode : (previousMode == .strict ? .lenient : .strict)
                let fresh = compile(document, mode)
                let incremental = compile(document, mode, reusing: previous?.snapshot)
                switch (fresh, incremental) {
                case (.failure(let a), .failure(let b)):
                    #expect(a.errors == b.errors)
                    #expect(a.warnings == b.warnings)
                case (.success(let a), .success(let b)):
                    #expect(render(a) == render(b), "seed \(seed)")
                    if let previous {
                        #expect(a.diff(from: previous.snapshot) == b.diff(from: previous.snapshot))
                        expectReuse(b, of: previous.snapshot, from: previous.document, in: document)
                    }
                    previous = (document, b)
                    previousMode = mode
                default:
                    Issue.record("seed \(seed): fresh \(fresh), incremental \(incremental)")
                }
                // Usually, the next edit starts from the last good version (as an operator would).
                if case .failure = fresh, let previous, edits.chance(70) { document = previous.document }
            }
        }
    }

    /// A flag is reused exactly when its key and text, the evaluators and the set metadata are unchanged.
    private func expectReuse(_ new: Snapshot, of old: Snapshot, from oldDocument: Document, in newDocument: Document) {
        let sameContext = oldDocument.evaluators == newDocument.evaluators && oldDocument.metadata == newDocument.metadata
        var reused = 0
        for (i, flag) in newDocument.flags.enumerated() {
            let before = oldDocument.flags.firstIndex { Array($0.key.utf8) == Array(flag.key.utf8) }
            let unchanged = sameContext && before.map { oldDocument.flags[$0].text == flag.text } == true
            let isReused = before.map { new.compiled[i] === old.compiled[$0] } ?? false
            #expect(isReused == unchanged, "flag \(flag.key)")
            if isReused { reused += 1 }
        }
        #expect(new.compiledCount == new.count - reused)
    }

    fileprivate static let base = Document(
        evaluators: #"{"is-staff": {"ends_with": [{"var": "email"}, "@staff.example"]}}"#,
        metadata: #"{"flagSetId": "shop", "version": 7}"#,
        flags: (0..<50).map { i in
            ("flag-\(i)", #"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {"if": [{"$ref": "is-staff"}, "on", null]}, "metadata": {"n": \#(i)}}"#)
        })

    @Test func onlyTheChangedFlagIsCompiled() throws {
        let old = try compile(Self.base, .strict).get()
        #expect(old.compiledCount == 50)
        var edited = Self.base
        edited.flags[17].text = edited.flags[17].text.replacing(#""defaultVariant": "off""#, with: #""defaultVariant": "on""#)
        let new = try compile(edited, .strict, reusing: old).get()
        #expect(new.compiledCount == 1)
        for i in 0..<50 { #expect((new.compiled[i] === old.compiled[i]) == (i != 17)) }
        #expect(new.diff(from: old) == SnapshotDiff(added: [], changed: ["flag-17"], removed: []))
        #expect(new.info("flag-17")?.defaultVariant == "on")
    }

    @Test func anEvaluatorOrMetadataChangeRecompilesEveryFlag() throws {
        let old = try compile(Self.base, .strict).get()
        var evaluators = Self.base
        evaluators.evaluators = evaluators.evaluators!.replacing("@staff.example", with: "@example.com")
        #expect(try compile(evaluators, .strict, reusing: old).get().compiledCount == 50)
        var metadata = Self.base
        metadata.metadata = #"{"flagSetId": "shop", "version": 8}"#
        let new = try compile(metadata, .strict, reusing: old).get()
        #expect(new.compiledCount == 50)
        #expect(new.diff(from: old).changed.count == 50)
    }

    @Test func reusedWarningsAreLocatedInTheNewText() throws {
        var document = Self.base
        document.flags[30].text = #"{"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "owner": "typo"}"#
        let old = try compile(document, .lenient).get()
        document.flags.insert(("first", #"{"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}"#), at: 0)
        let new = try compile(document, .lenient, reusing: old).get()
        #expect(new.compiledCount == 1)
        #expect(new.warnings.count == 1)
        #expect(new.warnings.first?.line == old.warnings.first.flatMap(\.line).map { $0 + 1 })
        #expect(new.warnings == (try compile(document, .lenient).get()).warnings)
    }
}
