public import GuidonEngine
public import GuidonJSON

/// What an edit made.
public struct FlagEdit: Sendable {
    /// The whole new document.
    public var document: [UInt8]
    public var flag: String
    /// What changed, for people: `search-v2: rollout 10 % → 50 %`.
    public var summary: String
    /// The flag's definition before (`nil` when created) and after (`nil` when deleted).
    public var before: JSONValue?
    public var after: JSONValue?
    /// Whether the document's bytes changed (enabling an enabled flag changes nothing).
    public var changed: Bool
    /// The new document, compiled: it validates.
    public var snapshot: Snapshot
}

/// A change made to a document's text, not yet validated (see `FlagEditor.draft`).
public struct FlagDraft: Sendable {
    public var document: [UInt8]
    public var flag: String
    public var summary: String
    public var before: JSONValue?
    public var after: JSONValue?
    public var changed: Bool
}

/// Edits flag documents as bytes: (document, operation) → a new document that differs only in
/// the changed flag's text, validated by compiling it, or an `EditError` and nothing.
///
/// Pure: no I/O. The daemon's writer and `guidon flags --file` both go through it, and both
/// validate with the compiler and mode they serve with.
public struct FlagEditor: Sendable {
    public var options: CompileOptions

    public init(options: CompileOptions = CompileOptions()) {
        self.options = options
    }

    /// Applies `operation` to the document `bytes`. `previous`, the snapshot compiled from
    /// (nearly) the same bytes, makes the validating compile reuse every unchanged flag.
    public func apply(_ operation: FlagOperation, to bytes: [UInt8], reusing previous: Snapshot? = nil) throws(EditError) -> FlagEdit {
        try validate(try draft(operation, to: bytes, reusing: previous), reusing: previous)
    }

    /// The first half of `apply`: the new document, not yet validated (a writer can start writing
    /// it out while `validate` compiles it, and drop it if it does not validate).
    public func draft(_ operation: FlagOperation, to bytes: [UInt8], reusing previous: Snapshot? = nil) throws(EditError) -> FlagDraft {
        let key = operation.flag
        switch operation.action {
        case .create, .delete:
            break
        default:
            // The usual case: the bytes are those the served snapshot was compiled from, which knows
            // where every definition is. (Otherwise the document is delimited, below.)
            if let range = previous?.definitionRange(of: key, in: bytes) {
                let located = try FlagDocument.definition(of: key, in: bytes, at: range)
                return try modify(operation, located, in: bytes, style: TextStyle.detect(bytes), reusing: previous)
            }
        }
        let document = try FlagDocument(bytes)
        var splicer = Splicer(bytes: bytes, style: document.style)
        let index = document.flags.members.firstIndex { $0.key == key }
        let before: JSONValue?
        let after: JSONValue?
        let summary: String
        switch operation.action {
        case .create(let definition):
            guard index == nil else {
                throw EditError(.flagExists, "flag \(quoted(key)) already exists; change it with the other verbs, or replace its definition")
            }
            guard key.utf8.count > 0 else { throw EditError(.invalidArgument, "a flag key must not be empty") }
            guard case .object(var object) = definition else {
                throw EditError(.invalidArgument, "a flag definition must be an object (\"state\", \"variants\", …), not \(article(definition.typeName))")
            }
            attribute(&object, operation)
            splicer.appendMember(key, .object(object), toObject: document.flags.range, items: document.items)
            before = nil
            after = .object(object)
            let variants = object["variants"]?.object?.keys ?? []
            let defaultText = object["defaultVariant"]?.string.map { "; default \($0)" } ?? ""
            summary = "\(key): created (variants \(variants.joined(separator: ", "))\(defaultText))"
        case .delete:
            guard let index else { throw noSuchFlag(key, in: document) }
            let located = try document.definition(at: index)
            splicer.remove(index, of: document.flags.range, items: document.items)
            before = located.value
            after = nil
            summary = "\(key): deleted"
        default:
            guard let index else { throw noSuchFlag(key, in: document) }
            return try modify(operation, try document.definition(at: index), in: bytes, style: document.style, reusing: previous)
        }
        return try finish(key, splicer.edits, in: bytes, summary: summary, before: before, after: after, reusing: previous)
    }

    /// A change to an existing flag, whose definition is `located`.
    private func modify(
        _ operation: FlagOperation, _ located: LocatedJSON, in bytes: [UInt8], style: TextStyle, reusing previous: Snapshot?
    ) throws(EditError) -> FlagDraft {
        let key = operation.flag
        guard case .object(let old) = located.value else {
            throw EditError(.invalidDocument, "flags.\(key) is \(article(located.value.typeName)), not a flag definition (an object); fix it by hand or replace it")
        }
        var changes = FlagChanges(key: key, definition: old)
        let summary = try changes.apply(operation.action)
        attribute(&changes.definition, operation)
        var splicer = Splicer(bytes: bytes, style: style)
        splicer.change(located, to: .object(changes.definition))
        return try finish(key, splicer.edits, in: bytes, summary: summary, before: located.value, after: .object(changes.definition), reusing: previous)
    }

    /// Makes the edits.
    private func finish(
        _ key: String, _ edits: [TextEdit], in bytes: [UInt8], summary: String, before: JSONValue?, after: JSONValue?,
        reusing previous: Snapshot?
    ) throws(EditError) -> FlagDraft {
        let edited = TextEdit.apply(edits, to: bytes)
        return FlagDraft(document: edited, flag: key, summary: summary, before: before, after: after, changed: edited != bytes)
    }

    /// The second half of `apply`: compiles the draft's document with the editor's options; the
    /// result, or every problem that keeps it from validating.
    public func validate(_ draft: FlagDraft, reusing previous: Snapshot? = nil) throws(EditError) -> FlagEdit {
        let snapshot: Snapshot
        do {
            snapshot = try Snapshot.compile(json: draft.document, options: options, reusing: previous)
        } catch {
            let count = error.errors.count
            throw EditError(
                .invalidDocument,
                "flag \(quoted(draft.flag)): the change (\(draft.summary.dropFirst(draft.flag.count + 2))) would make a document that does not validate (\(count) error\(count == 1 ? "" : "s")); nothing was changed",
                report: error)
        }
        return FlagEdit(
            document: draft.document, flag: draft.flag, summary: draft.summary, before: draft.before, after: draft.after,
            changed: draft.changed, snapshot: snapshot)
    }

    /// The definition of `flag` in the document `bytes`.
    public static func definition(of flag: String, in bytes: [UInt8]) throws(EditError) -> JSONValue {
        let document = try FlagDocument(bytes)
        guard let index = document.flags.members.firstIndex(where: { $0.key == flag }) else {
            throw noSuchFlag(flag, in: document)
        }
        return try document.definition(at: index).value
    }

    /// The flag keys of the document `bytes`, in document order.
    public static func keys(in bytes: [UInt8]) throws(EditError) -> [String] {
        try FlagDocument(bytes).flags.members.map(\.key)
    }

    /// `updatedBy` and `notes` from the caller, as the example file keeps them by hand.
    private func attribute(_ definition: inout JSONObject, _ operation: FlagOperation) {
        guard operation.by != nil || operation.reason != nil else { return }
        var metadata = definition["metadata"]?.object ?? JSONObject()
        if let by = operation.by { metadata["updatedBy"] = .string(by) }
        if let reason = operation.reason { metadata["notes"] = .string(reason) }
        FlagChanges.set(&definition, "metadata", .object(metadata))
    }
}

private func noSuchFlag(_ key: String, in document: FlagDocument) -> EditError {
    var message = "no flag \(quoted(key)) in the document"
    let keys = document.flags.members.map(\.key)
    if let close = closest(key, among: keys) { message += "; did you mean \(quoted(close))?" }
    return EditError(.noSuchFlag, message)
}

/// A flag document, delimited: where its `flags` object and each flag definition are, without
/// parsing the definitions (one pass over the text, whatever the number of flags).
struct FlagDocument {
    let bytes: [UInt8]
    let style: TextStyle
    let flags: ObjectSpans

    init(_ bytes: [UInt8]) throws(EditError) {
        self.bytes = bytes
        var start = 0
        while start < bytes.count, TextStyle.isWhitespace(bytes[start]) { start += 1 }
        let parser = JSONParser(duplicateKeys: .reject)
        do {
            guard start < bytes.count, bytes[start] == UInt8(ascii: "{") else {
                throw EditError(.invalidDocument, "the document is not a JSON object with a \"flags\" member")
            }
            let root = try parser.members(ofObjectAt: start, in: bytes)
            guard let member = root.member("flags") else {
                throw EditError(.invalidDocument, "the document has no \"flags\" object")
            }
            guard bytes[member.valueRange.lowerBound] == UInt8(ascii: "{") else {
                throw EditError(.invalidDocument, "the document's \"flags\" is not an object")
            }
            flags = try parser.members(ofObjectAt: member.valueRange.lowerBound, in: bytes)
        } catch let error as EditError {
            throw error
        } catch let error as JSONSyntaxError {
            throw EditError(
                .invalidDocument, "the document is not valid JSON (line \(error.line), column \(error.column): \(error.reason))",
                report: ValidationReport(errors: [Diagnostic(severity: .error, path: "$", line: error.line, column: error.column, message: error.reason)]))
        } catch {
            throw EditError(.invalidDocument, "\(error)")
        }
        style = TextStyle.detect(bytes)
    }

    var items: [Splicer.Item] {
        flags.members.map { Splicer.Item(range: $0.range, colon: $0.keyRange.upperBound..<$0.valueRange.lowerBound) }
    }

    func definition(at index: Int) throws(EditError) -> LocatedJSON {
        let member = flags.members[index]
        return try Self.definition(of: member.key, in: bytes, at: member.valueRange)
    }

    /// The definition of flag `key`, whose text is `bytes[range]`, located.
    static func definition(of key: String, in bytes: [UInt8], at range: Range<Int>) throws(EditError) -> LocatedJSON {
        do {
            return try JSONParser(duplicateKeys: .reject).parseLocated(bytes, valueIn: range, depth: 2)
        } catch {
            throw EditError(
                .invalidDocument, "flags.\(key) is not valid JSON (line \(error.line), column \(error.column): \(error.reason))",
                report: ValidationReport(errors: [Diagnostic(severity: .error, path: "flags.\(key)", line: error.line, column: error.column, message: error.reason)]))
        }
    }
}

// MARK: - The changes to one definition

/// Applies an action to a flag's definition (a JSON object) and says what it did.
struct FlagChanges {
    let key: String
    var definition: JSONObject

    /// The members of a flag, in the order flag files write them: a member an edit adds goes
    /// where a person would have put it.
    static let order = ["state", "variants", "defaultVariant", "targeting", "metadata"]

    /// Sets (or, with `nil`, removes) a member, keeping the others where they are and putting a
    /// new one in its usual place.
    static func set(_ object: inout JSONObject, _ key: String, _ value: JSONValue?) {
        place(&object, key, value, order: order)
    }

    var variants: JSONObject { definition["variants"]?.object ?? JSONObject() }
    var defaultVariant: String? { definition["defaultVariant"]?.string.flatMap { $0.isEmpty ? nil : $0 } }
    var isBoolean: Bool { !variants.isEmpty && variants.allSatisfy { $0.value.bool != nil } }
    var onVariant: String? { variants.first { $0.value == .bool(true) }?.key }
    var offVariant: String? { variants.first { $0.value == .bool(false) }?.key }
    /// The variant a deny-list pins its subjects to: "off" for a boolean flag, else the default.
    var denyVariant: String? { isBoolean ? offVariant : defaultVariant }

    func require(_ variant: String) throws(EditError) {
        guard !variants.contains(variant) else { return }
        var message = "flag \(quoted(key)) has no variant \(quoted(variant)) (its variants: \(variants.keys.map(quoted).joined(separator: ", ")))"
        if let close = closest(variant, among: variants.keys) { message += "; did you mean \(quoted(close))?" }
        throw EditError(.noSuchVariant, message)
    }

    func chain() throws(EditError) -> TargetingChain {
        switch TargetingChain.parse(definition["targeting"]) {
        case .success(let chain): return chain
        case .failure(let unsupported):
            throw EditError(
                .unsupportedTargeting,
                "flag \(quoted(key))'s targeting is not a chain the targeting verbs can change: \(unsupported.reason). "
                    + "Edit it by hand, or replace the whole definition (guidon flags set \(key) --definition …, op flags.replace)")
        }
    }

    mutating func store(_ chain: TargetingChain) {
        Self.set(&definition, "targeting", chain.json(defaultVariant: defaultVariant))
    }

    /// Applies `action`; returns the summary.
    mutating func apply(_ action: FlagOperation.Action) throws(EditError) -> String {
        switch action {
        case .create, .delete:
            preconditionFailure("handled by the editor")
        case .setState(let enabled):
            let before = definition["state"]?.string ?? "(none)"
            let after = enabled ? "ENABLED" : "DISABLED"
            Self.set(&definition, "state", .string(after))
            return before == after ? "\(key): already \(after)" : "\(key): state \(before) → \(after)"
        case .setDefault(let variant):
            try require(variant)
            let before = defaultVariant ?? "(none)"
            Self.set(&definition, "defaultVariant", .string(variant))
            return "\(key): default variant \(before) → \(variant)"
        case .rollout(let percentage, let variant, let otherVariant):
            return try rollout(percentage, variant, otherVariant)
        case .target(let subjects, let variant, let deny):
            return try target(subjects, variant, deny: deny)
        case .untarget(let subjects, let variant):
            return try untarget(subjects, variant)
        case .split(let weights):
            return try split(weights)
        case .schedule(let variant, let start, let end):
            return try schedule(variant, start, end)
        case .clearSchedule:
            var chain = try self.chain()
            let before = chain.rules.count
            chain.rules.removeAll { $0.condition.isWindow }
            guard chain.rules.count < before else {
                throw EditError(.invalidArgument, "flag \(quoted(key)) has no schedule to remove")
            }
            store(chain)
            return "\(key): schedule removed"
        case .replace(let new):
            guard case .object(let object) = new else {
                throw EditError(.invalidArgument, "a flag definition must be an object (\"state\", \"variants\", …), not \(article(new.typeName))")
            }
            definition = object
            return "\(key): definition replaced"
        case .setMetadata(let name, let value):
            guard !name.isEmpty else { throw EditError(.invalidArgument, "a metadata name must not be empty") }
            switch value {
            case .string, .int, .double, .bool: break
            default:
                throw EditError(.invalidArgument, "metadata values are strings, numbers or booleans, not \(article(value.typeName))")
            }
            var metadata = definition["metadata"]?.object ?? JSONObject()
            let before = metadata[name]
            metadata[name] = value
            Self.set(&definition, "metadata", .object(metadata))
            return before.map { "\(key): metadata \(name) \($0) → \(value)" } ?? "\(key): metadata \(name) = \(value)"
        case .removeMetadata(let name):
            var metadata = definition["metadata"]?.object ?? JSONObject()
            guard metadata.contains(name) else {
                throw EditError(.invalidArgument, "flag \(quoted(key)) has no metadata \(quoted(name))")
            }
            metadata[name] = nil
            Self.set(&definition, "metadata", metadata.isEmpty ? nil : .object(metadata))
            return "\(key): metadata \(name) removed"
        }
    }

    // MARK: Rollouts and splits

    private mutating func rollout(_ percentage: Double, _ variant: String?, _ otherVariant: String?) throws(EditError) -> String {
        guard percentage.isFinite, percentage >= 0, percentage <= 100 else {
            throw EditError(.invalidArgument, "a rollout percentage is between 0 and 100, not \(format(percentage))")
        }
        let hundredths = (percentage * 100).rounded()
        guard abs(percentage * 100 - hundredths) < 1e-6 else {
            throw EditError(.invalidArgument, "a rollout percentage has at most two decimals (\(format(percentage)))")
        }
        var chain = try self.chain()
        if let variant { try require(variant) }
        if let otherVariant { try require(otherVariant) }
        var existing: (bucketBy: JSONValue?, buckets: [TargetingChain.Bucket])?
        if case .fractional(let bucketBy, let buckets) = chain.final { existing = (bucketBy, buckets) }

        let twoBuckets = existing.flatMap { $0.buckets.count == 2 ? $0.buckets.map(\.variant) : nil }
        let rolled: String
        if let variant {
            rolled = variant
        } else if let twoBuckets, let on = onVariant, twoBuckets.contains(on) {
            rolled = on
        } else if let twoBuckets {
            rolled = twoBuckets[0]
        } else if let on = onVariant {
            rolled = on
        } else {
            throw EditError(.invalidArgument, "name the variant to roll out (variant): flag \(quoted(key))'s variants are not true and false")
        }
        let rest: String
        if let otherVariant {
            rest = otherVariant
        } else if let twoBuckets, twoBuckets.contains(rolled), let other = twoBuckets.first(where: { $0 != rolled }) {
            rest = other
        } else if let off = offVariant, off != rolled, isBoolean {
            rest = off
        } else if let defaultVariant, defaultVariant != rolled {
            rest = defaultVariant
        } else {
            throw EditError(.invalidArgument, "name the variant everyone else gets (otherVariant): flag \(quoted(key)) has no other obvious one")
        }
        guard rest != rolled else {
            throw EditError(.invalidArgument, "the rolled-out variant and the other one must differ (both are \(quoted(rolled)))")
        }
        let before = share(of: rolled, in: chain.final)

        func weight(_ total: Int64) -> Int64? {
            let exact = percentage * Double(total) / 100
            return abs(exact - exact.rounded()) < 1e-6 ? Int64(exact.rounded()) : nil
        }
        if let existing, existing.buckets.count == 2, let position = existing.buckets.firstIndex(where: { $0.variant == rolled }) {
            // Keep the buckets in their order and the bucketing value: whoever was in stays in.
            let oldTotal = existing.buckets.reduce(0) { $0 + max(0, $1.weight) }
            let total = oldTotal > 0 && weight(oldTotal) != nil ? oldTotal : (weight(100) != nil ? 100 : 10_000)
            var buckets = existing.buckets
            buckets[position] = TargetingChain.Bucket(variant: rolled, weight: weight(total)!)
            buckets[1 - position] = TargetingChain.Bucket(variant: rest, weight: total - weight(total)!)
            chain.final = .fractional(bucketBy: existing.bucketBy, buckets)
        } else if let existing {
            let names = existing.buckets.map(\.variant)
            throw EditError(
                .unsupportedTargeting,
                "flag \(quoted(key)) already splits everyone else between \(names.map(quoted).joined(separator: ", ")); change the weights with a split (op flags.split, guidon flags split), or name one of its two variants")
        } else {
            // The variant rolled out takes the first bucket, so that raising the percentage only adds subjects.
            let total: Int64 = weight(100) != nil ? 100 : 10_000
            chain.final = .fractional(bucketBy: nil, [
                TargetingChain.Bucket(variant: rolled, weight: weight(total)!),
                TargetingChain.Bucket(variant: rest, weight: total - weight(total)!),
            ])
        }
        store(chain)
        let of = variant != nil || !isBoolean ? " of \(rolled)" : ""
        return "\(key): rollout\(of) \(format(before)) % → \(format(percentage)) %"
    }

    /// The percentage of subjects (not matched by a rule) that `final` serves `variant`.
    private func share(of variant: String, in final: TargetingChain.Final) -> Double {
        switch final {
        case .none: return defaultVariant == variant ? 100 : 0
        case .variant(let name): return name == variant ? 100 : 0
        case .fractional(_, let buckets):
            let total = buckets.reduce(0) { $0 + max(0, $1.weight) }
            guard total > 0 else { return 0 }
            let mine = buckets.filter { $0.variant == variant }.reduce(0) { $0 + max(0, $1.weight) }
            return (Double(mine) * 100 / Double(total) * 100).rounded() / 100
        }
    }

    private mutating func split(_ weights: [SplitWeight]) throws(EditError) -> String {
        guard weights.count >= 2 else {
            throw EditError(.invalidArgument, "a split needs at least two variants, each with a weight")
        }
        var seen: Set<String> = []
        for entry in weights {
            try require(entry.variant)
            guard seen.insert(entry.variant).inserted else {
                throw EditError(.invalidArgument, "variant \(quoted(entry.variant)) appears twice in the split")
            }
            guard entry.weight >= 0 else {
                throw EditError(.invalidArgument, "weights must not be negative (\(entry.variant): \(entry.weight))")
            }
        }
        let total = weights.reduce(Int64(0)) { $0 &+ $1.weight }
        guard total > 0 else { throw EditError(.invalidArgument, "the weights are all zero: nobody would get any variant") }
        guard total < Int64(Int32.max) else {
            throw EditError(.invalidArgument, "the weights add up to \(total); they must add up to less than 2147483647")
        }
        var chain = try self.chain()
        var bucketBy: JSONValue?
        var before = "none"
        if case .fractional(let by, let buckets) = chain.final {
            bucketBy = by
            before = buckets.map { "\($0.variant) \($0.weight)" }.joined(separator: " / ")
        }
        chain.final = .fractional(bucketBy: bucketBy, weights.map { TargetingChain.Bucket(variant: $0.variant, weight: $0.weight) })
        store(chain)
        return "\(key): split \(before) → \(weights.map { "\($0.variant) \($0.weight)" }.joined(separator: " / "))"
    }

    // MARK: Targeting lists

    /// The subjects' values, checked and normalised (e-mail domains lower-cased, with their `@`).
    private func values(_ subjects: Subjects) throws(EditError) -> [JSONValue] {
        guard !subjects.attribute.isEmpty else { throw EditError(.invalidArgument, "the attribute name must not be empty") }
        guard !subjects.values.isEmpty else { throw EditError(.invalidArgument, "name at least one value to target") }
        var values: [JSONValue] = []
        for value in subjects.values {
            var value = value
            switch value {
            case .string(let text):
                guard !text.isEmpty else { throw EditError(.invalidArgument, "target values must not be empty strings") }
                if subjects.bySuffix {
                    let lower = text.lowercased()
                    value = .string(lower.hasPrefix("@") ? lower : "@" + lower)
                }
            case .int, .double:
                guard !subjects.bySuffix else { throw EditError(.invalidArgument, "e-mail domains are strings, not \(value)") }
            default:
                throw EditError(.invalidArgument, "target values are strings or numbers, not \(article(value.typeName))")
            }
            if !values.contains(where: { Splicer.identical($0, value) }) { values.append(value) }
        }
        return values
    }

    private func describe(_ values: [JSONValue]) -> String {
        values.map { $0.string ?? $0.description }.joined(separator: ", ")
    }

    private mutating func target(_ subjects: Subjects, _ variant: String?, deny: Bool) throws(EditError) -> String {
        let values = try self.values(subjects)
        let served: String
        if let variant {
            try require(variant)
            served = variant
        } else if deny, let off = denyVariant {
            served = off
        } else if !deny, isBoolean, let on = onVariant {
            served = on
        } else {
            throw EditError(.invalidArgument, "name the variant these subjects get (variant): flag \(quoted(key)) has no obvious one")
        }
        var chain = try self.chain()
        let list = TargetingChain.SubjectList(attribute: subjects.attribute, suffixes: subjects.bySuffix)
        var moved: [String] = []
        var added: [JSONValue] = []
        // A subject is in one list per attribute: the newest decision wins.
        for i in chain.rules.indices where chain.rules[i].condition.list == list && chain.rules[i].variant != served {
            let before = members(chain.rules[i].condition)
            let after = before.filter { old in !values.contains { Splicer.identical($0, old) } }
            if after.count < before.count {
                chain.rules[i].condition = condition(list, after)
                moved.append(chain.rules[i].variant)
            }
        }
        if let i = chain.rules.firstIndex(where: { $0.condition.list == list && $0.variant == served }) {
            var current = members(chain.rules[i].condition)
            for value in values where !current.contains(where: { Splicer.identical($0, value) }) {
                current.append(value)
                added.append(value)
            }
            chain.rules[i].condition = condition(list, current)
        } else {
            added = values
            let rule = TargetingChain.Rule(condition: condition(list, values), variant: served)
            let position = deny ? leadingDenyRules(chain) : chain.rules.count
            chain.rules.insert(rule, at: position)
        }
        chain.rules.removeAll { $0.condition.list != nil && members($0.condition).isEmpty }
        store(chain)
        let what = "\(subjects.attribute)\(subjects.bySuffix ? " ending in" : "") \(describe(values))"
        if added.isEmpty && moved.isEmpty { return "\(key): \(what) already served \(served)" }
        let movedText = moved.isEmpty ? "" : " (was \(Set(moved).sorted().joined(separator: ", ")))"
        return "\(key): \(what) → \(served)\(deny ? " (deny-list)" : "")\(movedText)"
    }

    private mutating func untarget(_ subjects: Subjects, _ variant: String?) throws(EditError) -> String {
        let values = try self.values(subjects)
        if let variant { try require(variant) }
        var chain = try self.chain()
        let list = TargetingChain.SubjectList(attribute: subjects.attribute, suffixes: subjects.bySuffix)
        var removed = false
        for i in chain.rules.indices where chain.rules[i].condition.list == list && (variant == nil || chain.rules[i].variant == variant) {
            let before = members(chain.rules[i].condition)
            let after = before.filter { old in !values.contains { Splicer.identical($0, old) } }
            if after.count < before.count {
                removed = true
                chain.rules[i].condition = condition(list, after)
            }
        }
        guard removed else {
            throw EditError(
                .invalidArgument,
                "flag \(quoted(key)) does not target \(subjects.attribute)\(subjects.bySuffix ? " ending in" : "") \(describe(values))\(variant.map { " with \($0)" } ?? "")")
        }
        chain.rules.removeAll { $0.condition.list != nil && members($0.condition).isEmpty }
        store(chain)
        return "\(key): \(subjects.attribute)\(subjects.bySuffix ? " ending in" : "") \(describe(values)) no longer targeted"
    }

    private func members(_ condition: TargetingChain.Condition) -> [JSONValue] {
        switch condition {
        case .values(_, let values): values
        case .suffixes(_, let suffixes): suffixes.map(JSONValue.string)
        default: []
        }
    }

    private func condition(_ list: TargetingChain.SubjectList, _ values: [JSONValue]) -> TargetingChain.Condition {
        list.suffixes ? .suffixes(attribute: list.attribute, values.compactMap(\.string)) : .values(attribute: list.attribute, values)
    }

    /// How many rules at the start of the chain are deny-lists.
    private func leadingDenyRules(_ chain: TargetingChain) -> Int {
        chain.rules.prefix { $0.condition.list != nil && $0.variant == denyVariant }.count
    }

    // MARK: Schedules

    private mutating func schedule(_ variant: String?, _ start: Int64?, _ end: Int64?) throws(EditError) -> String {
        guard start != nil || end != nil else {
            throw EditError(.invalidArgument, "a schedule needs a start, an end, or both")
        }
        if let start, let end, end <= start {
            throw EditError(.invalidArgument, "the end (\(Instant.format(end))) is not after the start (\(Instant.format(start)))")
        }
        let served: String
        if let variant {
            try require(variant)
            served = variant
        } else if isBoolean, let on = onVariant {
            served = on
        } else {
            throw EditError(.invalidArgument, "name the variant to serve during the schedule (variant)")
        }
        var chain = try self.chain()
        let window = TargetingChain.Condition.window(start: start, end: end)
        if let i = chain.rules.firstIndex(where: { $0.condition == window }) {
            chain.rules[i].variant = served
        } else {
            let position = chain.rules.lastIndex { $0.condition.isWindow }.map { $0 + 1 } ?? leadingDenyRules(chain)
            chain.rules.insert(TargetingChain.Rule(condition: window, variant: served), at: position)
        }
        store(chain)
        let from = start.map { " from \(Instant.format($0))" } ?? ""
        let until = end.map { " until \(Instant.format($0))" } ?? ""
        return "\(key): schedule \(served)\(from)\(until)"
    }
}

// MARK: - Wording

func quoted(_ text: String) -> String { JSONWriter.string(.string(text)) }

func article(_ typeName: String) -> String {
    (["a", "e", "i", "o", "u"].contains(typeName.first.map(String.init) ?? "") ? "an " : "a ") + typeName
}

/// A percentage without needless decimals: `10`, `12.5`.
func format(_ value: Double) -> String {
    if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
    return String(value)
}

/// The candidate within two edits of `word`, if any (for "did you mean").
func closest(_ word: String, among candidates: [String]) -> String? {
    let scored = candidates.map { ($0, editDistance($0, word)) }.filter { $0.1 <= 2 }
    return scored.min { $0.1 < $1.1 }?.0
}

func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.unicodeScalars)
    let b = Array(b.unicodeScalars)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = previous
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}
