import GuidonEngine
public import GuidonEntitlements
public import GuidonJSON

/// A change made to an entitlements document's text, not yet validated (see `EntitlementsEditor.draft`).
public struct EntitlementsDraft: Sendable {
    /// The whole new document.
    public var document: [UInt8]
    /// What it is about: `tenant 5`, `plan growth`, `feature voice_ai`, `tenants 5, acme`.
    public var subject: String
    /// What changed, for people: `tenant 5: voice_ai on (override by sam.okafor)`.
    public var summary: String
    /// The changed entry before and after (a tenant's, plan's or feature's definition; for a
    /// change of several tenants, an object of tenant id → definition); `nil` when absent.
    public var before: JSONValue?
    public var after: JSONValue?
    /// Whether the document's bytes changed.
    public var changed: Bool
}

/// What an edit made: the draft, and the new document compiled (it validates).
public struct EntitlementsEdit: Sendable {
    public var draft: EntitlementsDraft
    public var entitlements: Entitlements
    public var document: [UInt8] { draft.document }
    public var summary: String { draft.summary }
    public var changed: Bool { draft.changed }
}

/// Edits entitlements documents as bytes: (document, operation) → a new document in which only
/// the text of the tenants, plans or features changed differs, validated by compiling it with
/// `GuidonEntitlements`, or an `EditError` and nothing.
///
/// Pure: no I/O. The daemon's writer and `guidon tenants|plans|features --file` both go through
/// it. A document of 100,000 tenants is not parsed whole: its root and maps are delimited, and
/// only the entries an operation changes are parsed (located, so that every other byte stays).
public struct EntitlementsEditor: Sendable {
    public var options: EntitlementsCompileOptions

    public init(options: EntitlementsCompileOptions = EntitlementsCompileOptions()) {
        self.options = options
    }

    /// Applies `operation` to the document `bytes` and validates the result. `previous` (the
    /// served value) makes the validating compile reuse every unchanged tenant; `flagKeys`, the
    /// served flag file's keys, may not become features.
    public func apply(
        _ operation: EntitlementsOperation, to bytes: [UInt8], reusing previous: Entitlements? = nil, flagKeys: [String] = []
    ) throws(EditError) -> EntitlementsEdit {
        try validate(try draft(operation, to: bytes, served: previous), reusing: previous, flagKeys: flagKeys)
    }

    /// The first half of `apply`: the new document, not yet validated. `served`, the value
    /// compiled from `bytes` if they are what the daemon serves, finds the tenants an operation
    /// changes through its index, so that 100,000 tenants are not delimited to change one (the
    /// result is the same without it).
    public func draft(_ operation: EntitlementsOperation, to bytes: [UInt8], served: Entitlements? = nil) throws(EditError) -> EntitlementsDraft {
        let document = try EntitlementsText(bytes, served: served)
        var changes = EntitlementsChanges(document: document, operation: operation)
        try changes.run()
        let edited = try document.render(changes.edits, root: changes.rootEdits)
        return EntitlementsDraft(
            document: edited, subject: changes.subject, summary: changes.summary, before: changes.before, after: changes.after,
            changed: edited != bytes)
    }

    /// The second half of `apply`: compiles the draft's document with the editor's options.
    public func validate(_ draft: EntitlementsDraft, reusing previous: Entitlements? = nil, flagKeys: [String] = []) throws(EditError) -> EntitlementsEdit {
        let compiled: Entitlements
        do {
            compiled = try Entitlements.compile(json: draft.document, options: options, reusing: previous)
        } catch {
            throw refusal(draft, error)
        }
        let conflicts = compiled.conflicts(withFlagKeys: flagKeys)
        if !conflicts.isEmpty {
            throw refusal(draft, ValidationReport(errors: conflicts, warnings: []))
        }
        return EntitlementsEdit(draft: draft, entitlements: compiled)
    }

    private func refusal(_ draft: EntitlementsDraft, _ report: ValidationReport) -> EditError {
        let count = report.errors.count
        let change = draft.summary.hasPrefix(draft.subject + ": ") ? String(draft.summary.dropFirst(draft.subject.count + 2)) : draft.summary
        return EditError(
            .invalidDocument,
            "\(draft.subject): the change (\(change)) would make an entitlements document that does not validate (\(count) error\(count == 1 ? "" : "s")); nothing was changed",
            report: report)
    }

    // MARK: Reading

    /// What `get` answers about one entry.
    public enum Entry: Sendable, Hashable {
        case tenant(String)
        case plan(String)
        case feature(String)
    }

    /// The definition of an entry as the document holds it.
    public static func definition(of entry: Entry, in bytes: [UInt8]) throws(EditError) -> JSONValue {
        let document = try EntitlementsText(bytes)
        let (map, key) = entry.location
        guard let member = try document.member(key, of: map) else {
            throw try document.noSuch(entry)
        }
        return try document.located(member, map: map).value
    }

    /// The feature keys, plan names and number of tenants of the document `bytes`, in document order.
    public static func contents(of bytes: [UInt8]) throws(EditError) -> (features: [String], plans: [String], tenants: Int) {
        let document = try EntitlementsText(bytes)
        return (
            try document.map("features")?.members.map(\.key) ?? [], try document.map("plans")?.members.map(\.key) ?? [],
            try document.map("tenants")?.members.count ?? 0
        )
    }
}

extension EntitlementsEditor.Entry {
    var location: (map: String, key: String) {
        switch self {
        case .tenant(let id): ("tenants", id)
        case .plan(let name): ("plans", name)
        case .feature(let key): ("features", key)
        }
    }

    var noun: String {
        switch self {
        case .tenant: "tenant"
        case .plan: "plan"
        case .feature: "feature"
        }
    }
}

// MARK: - The document's text

/// A change to one entry of a root map: its new definition, or `nil` to remove it.
struct EntryEdit {
    var map: String
    var key: String
    var value: JSONValue?
}

/// An entitlements document, delimited: its root members, and on demand the members of
/// `features`, `plans` and `tenants`, without parsing the entries.
struct EntitlementsText {
    let bytes: [UInt8]
    let style: TextStyle
    let root: ObjectSpans
    /// The value compiled from exactly these bytes, when the caller has it: its tenant index
    /// says where a tenant's definition is without delimiting the `tenants` map.
    let served: Entitlements?
    static let maps = ["features", "plans", "tenants"]

    init(_ bytes: [UInt8], served: Entitlements? = nil) throws(EditError) {
        self.bytes = bytes
        let served = served.flatMap { $0.isCompiled(from: bytes) ? $0 : nil }
        self.served = served
        var start = 0
        while start < bytes.count, TextStyle.isWhitespace(bytes[start]) { start += 1 }
        guard start < bytes.count, bytes[start] == UInt8(ascii: "{") else {
            throw EditError(.invalidDocument, "the entitlements document is not a JSON object with \"features\", \"plans\" and \"tenants\"")
        }
        // The served value knows where the tenants end: the root is delimited without stepping
        // over their 10 MiB.
        let tenantsEnd: ((String, Int) -> Int?)? = served?.tenantDefinitionsEnd.map { last in
            { key, _ in
                guard key == "tenants" else { return nil }
                var i = last
                while i < bytes.count, TextStyle.isWhitespace(bytes[i]) { i += 1 }
                return i < bytes.count && bytes[i] == UInt8(ascii: "}") ? i + 1 : nil
            }
        }
        do {
            root = try JSONParser(duplicateKeys: .reject).members(ofObjectAt: start, in: bytes, knownEnd: tenantsEnd)
        } catch {
            throw Self.syntax(error, path: "$")
        }
        // Entitlements files are often laid out wider than flag files (a feature or a tenant on
        // one line): new text may be as wide as the widest line there is (140 to 160 columns), and
        // anything that fits is written on one line.
        var style = TextStyle.detect(bytes)
        var widest = 0
        var lineStart = 0
        for i in 0..<min(bytes.count, 1 << 20) where bytes[i] == 0x0A {
            widest = max(widest, i - lineStart)
            lineStart = i + 1
        }
        style.width = min(max(140, widest), 160)
        style.inlineWhenFitting = true
        self.style = style
    }

    static func syntax(_ error: JSONSyntaxError, path: String) -> EditError {
        EditError(
            .invalidDocument, "the entitlements document is not valid JSON (\(path), line \(error.line), column \(error.column): \(error.reason)); fix it by hand first",
            report: ValidationReport(errors: [Diagnostic(severity: .error, path: path, line: error.line, column: error.column, message: error.reason)]))
    }

    /// Maps already delimited (a bulk change looks tenants up many times: 100,000 tenants are
    /// delimited once).
    private final class Delimited {
        var maps: [String: ObjectSpans] = [:]
        var lookups: [String: Int] = [:]
        var positions: [String: [String: Int]] = [:]
    }

    /// The member `key` of the root map `name`: found by a scan the first time, by an index
    /// built on the second (a single edit does not pay for an index of 100,000 tenants).
    func member(_ key: String, of name: String) throws(EditError) -> MemberSpan? {
        guard let spans = try map(name) else { return nil }
        if let index = delimited.positions[name] { return index[key].map { spans.members[$0] } }
        delimited.lookups[name, default: 0] += 1
        if delimited.lookups[name]! < 2 { return spans.member(key) }
        var index: [String: Int] = [:]
        index.reserveCapacity(spans.members.count)
        for (i, member) in spans.members.enumerated() where index[member.key] == nil { index[member.key] = i }
        delimited.positions[name] = index
        return index[key].map { spans.members[$0] }
    }

    private let delimited = Delimited()

    /// The members of the root map `name`; `nil` when the document has none.
    func map(_ name: String) throws(EditError) -> ObjectSpans? {
        if let known = delimited.maps[name] { return known }
        let spans = try delimit(name)
        delimited.maps[name] = spans
        return spans
    }

    private func delimit(_ name: String) throws(EditError) -> ObjectSpans? {
        guard let member = root.member(name) else { return nil }
        guard bytes[member.valueRange.lowerBound] == UInt8(ascii: "{") else {
            throw EditError(.invalidDocument, "the document's \"\(name)\" is not an object; fix it by hand first")
        }
        do {
            return try JSONParser(duplicateKeys: .reject).members(ofObjectAt: member.valueRange.lowerBound, in: bytes)
        } catch {
            throw Self.syntax(error, path: name)
        }
    }

    /// A root map parsed whole (`features` and `plans`: tens of entries); empty when absent.
    func parsed(_ name: String) throws(EditError) -> JSONObject {
        guard let value = try rootValue(name) else { return JSONObject() }
        guard case .object(let object) = value else {
            throw EditError(.invalidDocument, "the document's \"\(name)\" is not an object; fix it by hand first")
        }
        return object
    }

    /// A member of the root parsed whole (a map, or a scalar such as `timezone`); `nil` when absent.
    func rootValue(_ name: String) throws(EditError) -> JSONValue? {
        guard let member = root.member(name) else { return nil }
        do {
            return try JSONParser(duplicateKeys: .reject).parse(bytes, valueIn: member.valueRange, depth: 1)
        } catch {
            throw Self.syntax(error, path: name)
        }
    }

    /// One entry of a root map, parsed and located.
    func located(_ member: MemberSpan, map: String) throws(EditError) -> LocatedJSON {
        try located(member.valueRange, key: member.key, map: map)
    }

    /// The entry `key` of a root map whose value is `bytes[range]`, parsed and located.
    func located(_ range: Range<Int>, key: String, map: String) throws(EditError) -> LocatedJSON {
        do {
            return try JSONParser(duplicateKeys: .reject).parseLocated(bytes, valueIn: range, depth: 2)
        } catch {
            throw Self.syntax(error, path: "\(map).\(key)")
        }
    }

    /// Where tenant `id`'s definition is: through the served value's index when these bytes are
    /// its text, else by delimiting the `tenants` map; `nil` when there is no such tenant.
    func tenantRange(_ id: String) throws(EditError) -> Range<Int>? {
        if let served, let range = served.definitionRange(ofTenant: id) { return range }
        return try member(id, of: "tenants")?.valueRange
    }

    func noSuch(_ entry: EntitlementsEditor.Entry) throws(EditError) -> EditError {
        let (map, key) = entry.location
        let keys = try self.map(map)?.members.map(\.key) ?? []
        var message = "no \(entry.noun) \(quoted(key)) in the entitlements document"
        if keys.count <= 10_000, let close = closest(key, among: keys) {
            message += "; did you mean \(quoted(close))?"
        } else if map != "tenants", !keys.isEmpty {
            message += " (its \(map): \(keys.map(quoted).joined(separator: ", ")))"
        }
        return EditError(.notFound, message)
    }

    // MARK: Rendering

    /// The document with `edits` made: each entry's text changed as little as possible, removed
    /// with its comma and line, or added after the last entry of its map in the map's layout.
    /// `rootEdits` set scalar members of the root (`timezone`): the value replaced where it is,
    /// or a new member written before the first one (after `$schema`).
    func render(_ edits: [EntryEdit], root rootEdits: [(key: String, value: JSONValue)] = []) throws(EditError) -> [UInt8] {
        var splicer = Splicer(bytes: bytes, style: style)
        var newMaps: [(String, JSONObject)] = []
        var newRootMembers: [(String, JSONValue)] = []
        for (key, value) in rootEdits {
            if let member = root.member(key) {
                splicer.replace(member.valueRange, with: value)
            } else {
                newRootMembers.append((key, value))
            }
        }
        if !newRootMembers.isEmpty {
            let items = root.members.map { Splicer.Item(range: $0.range, colon: $0.keyRange.upperBound..<$0.valueRange.lowerBound) }
            if items.isEmpty {
                guard edits.isEmpty else { throw EditError(.invalidDocument, "the entitlements document is empty; write its \"features\" by hand first") }
                splicer.replace(root.range, with: .object(JSONObject(newRootMembers)))
                return TextEdit.apply(splicer.edits, to: bytes)
            }
            let layout = splicer.layout(of: root.range, items)
            let colon = items[0].colon.map { Array(bytes[$0]) }
            let texts = newRootMembers.map { splicer.printer.member($0.0, $0.1, indent: layout.indent, colon: colon) }
            if let next = root.members.firstIndex(where: { $0.key != "$schema" }) {
                var text: [UInt8] = []
                for member in texts { text += member + [UInt8(ascii: ",")] + layout.separator }
                let at = items[next].range.lowerBound
                splicer.insert(TextEdit(range: at..<at, text: text))
            } else {
                splicer.rewriteItems(items, keep: items.map { _ in true }, appending: texts, layout: layout)
            }
        }
        for name in Self.maps {
            var mine = edits.filter { $0.map == name }
            if name == "tenants", let served {
                // Tenants that stay and change are found through the served index and changed in
                // place: the map is delimited only to add or remove one.
                var rest: [EntryEdit] = []
                for edit in mine {
                    if let value = edit.value, let range = served.definitionRange(ofTenant: edit.key) {
                        splicer.change(try located(range, key: edit.key, map: name), to: value)
                    } else {
                        rest.append(edit)
                    }
                }
                mine = rest
            }
            guard !mine.isEmpty else { continue }
            guard let spans = try map(name) else {
                var object = JSONObject()
                for edit in mine { if let value = edit.value { object[edit.key] = value } }
                if !object.isEmpty { newMaps.append((name, object)) }
                continue
            }
            let items = spans.members.map { Splicer.Item(range: $0.range, colon: $0.keyRange.upperBound..<$0.valueRange.lowerBound) }
            var keep = items.map { _ in true }
            var added: [(String, JSONValue)] = []
            var positions: [String: Int] = [:]
            for (i, member) in spans.members.enumerated() where positions[member.key] == nil { positions[member.key] = i }
            for edit in mine {
                if let index = positions[edit.key] {
                    if let value = edit.value {
                        splicer.change(try located(spans.members[index], map: name), to: value)
                    } else {
                        keep[index] = false
                    }
                } else if let value = edit.value {
                    added.append((edit.key, value))
                }
            }
            guard keep.contains(false) || !added.isEmpty else { continue }
            if !keep.contains(true) {
                // Nothing stays: the map is written anew.
                splicer.replace(spans.range, with: .object(JSONObject(added)))
                continue
            }
            let layout = splicer.layout(of: spans.range, items)
            let texts = added.map { memberText($0.0, $0.1, items: items, layout: layout, splicer: splicer) }
            splicer.rewriteItems(items, keep: keep, appending: texts, layout: layout)
        }
        if !newMaps.isEmpty {
            let items = root.members.map { Splicer.Item(range: $0.range, colon: $0.keyRange.upperBound..<$0.valueRange.lowerBound) }
            guard !items.isEmpty else {
                splicer.replace(root.range, with: .object(JSONObject(newMaps.map { ($0.0, JSONValue.object($0.1)) })))
                return TextEdit.apply(splicer.edits, to: bytes)
            }
            let layout = splicer.layout(of: root.range, items)
            let colon = items[0].colon.map { Array(bytes[$0]) }
            let texts = newMaps.map { splicer.printer.member($0.0, .object($0.1), indent: layout.indent, colon: colon) }
            splicer.rewriteItems(items, keep: items.map { _ in true }, appending: texts, layout: layout)
        }
        return TextEdit.apply(splicer.edits, to: bytes)
    }

    /// A new entry of a map, written like its siblings: on one line when the last sibling is on
    /// one line and it fits as wide as the widest sibling line (or the style's width), and with
    /// its value aligned with theirs when they are aligned (`"voice_ai":          {…}`).
    private func memberText(_ key: String, _ value: JSONValue, items: [Splicer.Item], layout: Splicer.Layout, splicer: Splicer) -> [UInt8] {
        var colon = items.first?.colon.map { Array(bytes[$0]) } ?? style.colon
        let keyText = JSONWriter.string(.string(key)).utf8.count
        if layout.multiline, colon.count > 2, colon.allSatisfy({ $0 == UInt8(ascii: ":") || $0 == 0x20 }), let first = items.first?.colon {
            // Aligned: pad so that the value starts in the siblings' column.
            let valueColumn = splicer.column(of: first.upperBound)
            let pad = max(1, valueColumn - layout.indent.count - keyText - 1)
            colon = [UInt8(ascii: ":")] + [UInt8](repeating: 0x20, count: pad)
        }
        guard layout.multiline, let last = items.last, !bytes[last.range].contains(0x0A) else {
            return splicer.printer.member(key, value, indent: layout.indent, colon: colon)
        }
        let inline = splicer.printer.inline(value)
        var widest = style.width
        for item in items where !bytes[item.range].contains(0x0A) {
            widest = max(widest, splicer.column(of: item.range.lowerBound) + item.range.count)
        }
        if layout.indent.count + keyText + colon.count + inline.count <= widest {
            var out: [UInt8] = []
            JSONWriter.writeString(key, into: &out)
            return out + colon + inline
        }
        return splicer.printer.member(key, value, indent: layout.indent, colon: colon)
    }
}

// MARK: - The changes

/// Places `key` in `object` in its usual position among `order` (a new member goes before the
/// first member that follows it in `order`), or replaces it where it is; `nil` removes it.
func place(_ object: inout JSONObject, _ key: String, _ value: JSONValue?, order: [String]) {
    guard let value else {
        object[key] = nil
        return
    }
    if object.contains(key) {
        object[key] = value
        return
    }
    guard let rank = order.firstIndex(of: key) else {
        object[key] = value
        return
    }
    var pairs: [(String, JSONValue)] = []
    var placed = false
    for (name, member) in object {
        if !placed, let other = order.firstIndex(of: name), other > rank {
            pairs.append((key, value))
            placed = true
        }
        pairs.append((name, member))
    }
    if !placed { pairs.append((key, value)) }
    object = JSONObject(pairs)
}

/// Works out an operation's entry edits and says what they do.
struct EntitlementsChanges {
    let document: EntitlementsText
    let operation: EntitlementsOperation
    var edits: [EntryEdit] = []
    /// Scalar members of the root set (`timezone`).
    var rootEdits: [(key: String, value: JSONValue)] = []
    var subject = ""
    var summary = ""
    var before: JSONValue?
    var after: JSONValue?

    static let tenantOrder = ["name", "plan", "status", "validUntil", "overrides", "notes"]
    static let overrideOrder = ["enabled", "config", "limits", "notes", "by", "at", "expiresAt"]
    static let planOrder = ["displayName", "description", "order", "inherits", "grants"]
    static let featureOrder = ["description", "category", "default", "limits"]

    init(document: EntitlementsText, operation: EntitlementsOperation) {
        self.document = document
        self.operation = operation
    }

    mutating func run() throws(EditError) {
        switch operation.action {
        case .setPlan(let tenant, let plan, let status): try setPlan(tenant, plan, status)
        case .setStatus(let tenant, let status, let validUntil): try setStatus(tenant, status, validUntil)
        case .setOverride(let tenant, let feature, let change):
            try bulk([EntitlementsOperation.TenantChange(tenant: tenant, feature: feature, override: change)], single: true)
        case .clearOverride(let tenant, let feature):
            try bulk([EntitlementsOperation.TenantChange(tenant: tenant, feature: feature, override: nil)], single: true)
        case .bulk(let changes): try bulk(changes, single: false)
        case .deleteTenant(let tenant): try deleteTenant(tenant)
        case .createPlan(let name, let definition): try createPlan(name, definition)
        case .updatePlan(let name, let changes): try updatePlan(name, changes)
        case .setTimezone(let zone): try setTimezone(zone)
        case .grant(let plan, let feature, let grant): try self.grant(plan, feature, grant)
        case .revoke(let plan, let feature): try revoke(plan, feature)
        case .addFeature(let key, let definition): try addFeature(key, definition)
        case .removeFeature(let key, let cascade): try removeFeature(key, cascade: cascade)
        }
    }

    // MARK: Lookups

    /// A tenant's definition, or `nil` when there is none.
    func tenant(_ id: String) throws(EditError) -> JSONObject? {
        guard let range = try document.tenantRange(id) else { return nil }
        let value = try document.located(range, key: id, map: "tenants").value
        guard case .object(let object) = value else {
            throw EditError(.invalidDocument, "tenants.\(id) is \(article(value.typeName)), not a tenant (an object); fix it by hand first")
        }
        return object
    }

    func existingTenant(_ id: String) throws(EditError) -> JSONObject {
        guard !id.isEmpty else { throw EditError(.invalidArgument, "a tenant id must not be empty") }
        guard let tenant = try tenant(id) else {
            var error = try document.noSuch(.tenant(id))
            error.message += " (put it on a plan first: set-plan creates it)"
            throw error
        }
        return tenant
    }

    func requireFeature(_ key: String, in features: JSONObject) throws(EditError) {
        guard !features.contains(key) else { return }
        var message = "no feature \(quoted(key)) in the entitlements document"
        if let close = closest(key, among: features.keys) { message += "; did you mean \(quoted(close))?" }
        throw EditError(.notFound, message)
    }

    func requirePlan(_ name: String, in plans: JSONObject) throws(EditError) -> JSONObject {
        guard let plan = plans[name] else {
            var message = "no plan \(quoted(name)) in the entitlements document"
            if let close = closest(name, among: plans.keys) {
                message += "; did you mean \(quoted(close))?"
            } else if !plans.isEmpty {
                message += " (its plans: \(plans.keys.map(quoted).joined(separator: ", ")))"
            }
            throw EditError(.notFound, message)
        }
        guard case .object(let object) = plan else {
            throw EditError(.invalidDocument, "plans.\(name) is \(article(plan.typeName)), not a plan (an object); fix it by hand first")
        }
        return object
    }

    static func status(_ text: String) throws(EditError) -> SubscriptionStatus {
        guard let status = SubscriptionStatus(rawValue: text) else {
            throw EditError(
                .invalidArgument,
                "\(quoted(text)) is not a subscription status (one of \(SubscriptionStatus.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return status
    }

    // MARK: Tenants

    private mutating func setPlan(_ id: String, _ plan: String, _ status: String?) throws(EditError) {
        guard !id.isEmpty else { throw EditError(.invalidArgument, "a tenant id must not be empty") }
        _ = try requirePlan(plan, in: document.parsed("plans"))
        if let status { _ = try Self.status(status) }
        subject = "tenant \(id)"
        guard var tenant = try tenant(id) else {
            let created: JSONObject = ["plan": .string(plan), "status": .string(status ?? "active")]
            edits = [EntryEdit(map: "tenants", key: id, value: .object(created))]
            summary = "\(subject): created on plan \(plan) (\(status ?? "active"))"
            after = .object(created)
            return
        }
        before = .object(tenant)
        let oldPlan = tenant["plan"]?.string
        let oldStatus = tenant["status"]?.string
        place(&tenant, "plan", .string(plan), order: Self.tenantOrder)
        if let status { place(&tenant, "status", .string(status), order: Self.tenantOrder) }
        after = .object(tenant)
        edits = [EntryEdit(map: "tenants", key: id, value: .object(tenant))]
        var parts: [String] = []
        if oldPlan != plan { parts.append("plan \(oldPlan ?? "none") → \(plan)") }
        if let status, oldStatus != status { parts.append("status \(oldStatus ?? "none") → \(status)") }
        summary = parts.isEmpty ? "\(subject): already on plan \(plan)" : "\(subject): \(parts.joined(separator: ", "))"
    }

    private mutating func setStatus(_ id: String, _ status: String, _ validUntil: EntitlementsOperation.ValidUntil) throws(EditError) {
        _ = try Self.status(status)
        var tenant = try existingTenant(id)
        subject = "tenant \(id)"
        before = .object(tenant)
        var parts: [String] = []
        let oldStatus = tenant["status"]?.string
        if oldStatus != status { parts.append("status \(oldStatus ?? "none") → \(status)") }
        place(&tenant, "status", .string(status), order: Self.tenantOrder)
        let oldUntil = tenant["validUntil"]?.string
        switch validUntil {
        case .keep: break
        case .set(let instant):
            let text = Instant.format(instant)
            if oldUntil.flatMap(Instant.parse) != instant {
                parts.append("validUntil \(oldUntil ?? "none") → \(text)")
                place(&tenant, "validUntil", .string(text), order: Self.tenantOrder)
            }
        case .clear:
            if let oldUntil {
                parts.append("validUntil \(oldUntil) → none")
                place(&tenant, "validUntil", nil, order: Self.tenantOrder)
            }
        }
        after = .object(tenant)
        edits = [EntryEdit(map: "tenants", key: id, value: .object(tenant))]
        summary = parts.isEmpty ? "\(subject): already \(status)" : "\(subject): \(parts.joined(separator: ", "))"
    }

    private mutating func deleteTenant(_ id: String) throws(EditError) {
        let tenant = try existingTenant(id)
        subject = "tenant \(id)"
        before = .object(tenant)
        edits = [EntryEdit(map: "tenants", key: id, value: nil)]
        summary = "\(subject): deleted"
    }

    /// The override object an edit writes.
    private func overrideValue(_ change: OverrideChange) throws(EditError) -> JSONObject {
        var object: JSONObject = ["enabled": .bool(change.enabled)]
        if let config = change.config { object["config"] = .object(config) }
        if let notes = change.notes ?? operation.reason { object["notes"] = .string(notes) }
        if let by = change.by ?? operation.by { object["by"] = .string(by) }
        let at = change.at ?? operation.now
        object["at"] = .string(Instant.format(at))
        if let expiresAt = change.expiresAt {
            guard expiresAt > at else {
                throw EditError(
                    .invalidArgument, "the override would expire (\(Instant.format(expiresAt))) before it was decided (\(Instant.format(at)))")
            }
            object["expiresAt"] = .string(Instant.format(expiresAt))
        }
        return object
    }

    /// `voice_ai on (override by sam.okafor until 2027-01-01T00:00:00Z)`.
    private func describe(_ feature: String, _ override: JSONObject?, was: JSONValue?) -> String {
        guard let override else { return "\(feature) override cleared" + (was?.object?["enabled"]?.bool.map { " (was \($0 ? "on" : "off"))" } ?? "") }
        var text = "\(feature) \(override["enabled"] == .bool(true) ? "on" : "off")"
        var details: [String] = []
        if let by = override["by"]?.string { details.append("by \(by)") }
        if let until = override["expiresAt"]?.string { details.append("until \(until)") }
        if let config = override["config"] { details.append("config \(JSONWriter.string(config))") }
        text += details.isEmpty ? " (override)" : " (override \(details.joined(separator: ", ")))"
        if let was = was?.object?["enabled"]?.bool { text += ", was \(was ? "on" : "off")" }
        return text
    }

    private mutating func bulk(_ changes: [EntitlementsOperation.TenantChange], single: Bool) throws(EditError) {
        guard !changes.isEmpty else { throw EditError(.invalidArgument, "a bulk change needs at least one change") }
        let features = try document.parsed("features")
        var seen: Set<[String]> = []
        var order: [String] = []
        var tenants: [String: JSONObject] = [:]
        var befores: [String: JSONObject] = [:]
        var described: [(tenant: String, feature: String, text: String)] = []
        for (i, change) in changes.enumerated() {
            let at = single ? "" : " (change \(i + 1))"
            guard seen.insert([change.tenant, change.feature]).inserted else {
                throw EditError(.invalidArgument, "tenant \(quoted(change.tenant)) and feature \(quoted(change.feature)) appear twice in the bulk change\(at)")
            }
            do throws(EditError) {
                try requireFeature(change.feature, in: features)
                if tenants[change.tenant] == nil {
                    let tenant = try existingTenant(change.tenant)
                    tenants[change.tenant] = tenant
                    befores[change.tenant] = tenant
                    order.append(change.tenant)
                }
            } catch {
                var error = error
                error.message += at
                throw error
            }
            var tenant = tenants[change.tenant]!
            var overrides = tenant["overrides"]?.object ?? JSONObject()
            if let value = tenant["overrides"], value.object == nil {
                throw EditError(.invalidDocument, "tenants.\(change.tenant).overrides is \(article(value.typeName)), not an object; fix it by hand first")
            }
            let was = overrides[change.feature]
            let new: JSONObject?
            if let override = change.override {
                new = try overrideValue(override)
            } else {
                guard was != nil else {
                    throw EditError(.notFound, "tenant \(quoted(change.tenant)) has no override of \(quoted(change.feature)) to clear\(at)")
                }
                new = nil
            }
            overrides[change.feature] = new.map(JSONValue.object)
            place(&tenant, "overrides", overrides.isEmpty ? nil : .object(overrides), order: Self.tenantOrder)
            tenants[change.tenant] = tenant
            described.append((change.tenant, change.feature, describe(change.feature, new, was: was)))
        }
        for id in order { edits.append(EntryEdit(map: "tenants", key: id, value: .object(tenants[id]!))) }
        if order.count == 1 {
            let id = order[0]
            subject = "tenant \(id)"
            before = .object(befores[id]!)
            after = .object(tenants[id]!)
            summary = "\(subject): \(described.map(\.text).joined(separator: "; "))"
            return
        }
        before = .object(JSONObject(order.map { ($0, .object(befores[$0]!)) }))
        after = .object(JSONObject(order.map { ($0, .object(tenants[$0]!)) }))
        let featuresChanged = Set(described.map(\.feature))
        if featuresChanged.count == 1, let feature = featuresChanged.first {
            subject = "feature \(feature)"
            let verbs = Set(described.map { $0.text.split(separator: " ").dropFirst().first.map(String.init) ?? "" })
            let verb = verbs.count == 1 ? verbs.first! : "changed"
            summary = "\(subject): \(verb == "override" ? "override cleared" : verb) for \(order.count) tenants (\(order.joined(separator: ", ")))"
        } else {
            subject = "tenants \(order.joined(separator: ", "))"
            summary = "\(changes.count) changes for \(order.count) tenants: "
                + described.map { "\($0.tenant) \($0.text)" }.joined(separator: "; ")
        }
    }

    // MARK: Plans

    private mutating func createPlan(_ name: String, _ definition: JSONObject) throws(EditError) {
        guard !name.isEmpty else { throw EditError(.invalidArgument, "a plan name must not be empty") }
        let plans = try document.parsed("plans")
        guard !plans.contains(name) else {
            throw EditError(.alreadyExists, "plan \(quoted(name)) already exists; change its grants with grant and revoke")
        }
        var plan = JSONObject()
        for key in Self.planOrder { if let value = definition[key] { plan[key] = value } }
        for (key, value) in definition where !plan.contains(key) { plan[key] = value }
        subject = "plan \(name)"
        after = .object(plan)
        edits = [EntryEdit(map: "plans", key: name, value: .object(plan))]
        var details: [String] = []
        if let order = plan["order"] { details.append("order \(JSONWriter.string(order))") }
        if let inherits = plan["inherits"]?.string { details.append("inherits \(inherits)") }
        if let grants = plan["grants"]?.object { details.append("grants \(grants.keys.joined(separator: ", "))") }
        summary = "\(subject): created" + (details.isEmpty ? "" : " (\(details.joined(separator: "; ")))")
    }

    private mutating func updatePlan(_ name: String, _ changes: PlanChanges) throws(EditError) {
        guard !changes.isEmpty else {
            throw EditError(
                .invalidArgument,
                "nothing to change in plan \(quoted(name)): give its displayName, order, inherits or description (its grants change with grant and revoke)")
        }
        let plans = try document.parsed("plans")
        var plan = try requirePlan(name, in: plans)
        if case .set(let parent) = changes.inherits {
            guard !parent.isEmpty else { throw EditError(.invalidArgument, "plan \(quoted(name)) cannot inherit from a plan with an empty name") }
            guard parent != name else { throw EditError(.invalidArgument, "plan \(quoted(name)) cannot inherit from itself") }
            guard plans.contains(parent) else {
                var message = "plan \(quoted(name)) cannot inherit from \(quoted(parent)): no plan \(quoted(parent)) in the entitlements document"
                if let close = closest(parent, among: plans.keys.filter { $0 != name }) { message += "; did you mean \(quoted(close))?" }
                throw EditError(.notFound, message)
            }
            // A parent that inherits, through its chain, from this plan would make a cycle.
            var chain = [name, parent]
            var current = plans[parent]?.object?["inherits"]?.string
            while let next = current, !chain.dropFirst().contains(next) {
                chain.append(next)
                if next == name {
                    throw EditError(
                        .invalidArgument,
                        "plan \(quoted(name)) cannot inherit from \(quoted(parent)), which inherits from it: \(chain.map(quoted).joined(separator: " → ")) would be a cycle")
                }
                current = plans[next]?.object?["inherits"]?.string
            }
        }
        subject = "plan \(name)"
        before = .object(plan)
        var parts: [String] = []
        func apply(_ key: String, _ new: JSONValue?, keep: Bool) {
            guard !keep else { return }
            let old = plan[key]
            if new == old { return }
            parts.append("\(key) \(old.map(JSONWriter.string) ?? "none") → \(new.map(JSONWriter.string) ?? "none")")
            place(&plan, key, new, order: Self.planOrder)
        }
        func value<V: Sendable & Hashable>(_ change: PlanChanges.Change<V>, _ make: (V) -> JSONValue) -> (JSONValue?, Bool) {
            switch change {
            case .keep: (nil, true)
            case .set(let v): (make(v), false)
            case .remove: (nil, false)
            }
        }
        for (key, (new, keep)) in [
            ("displayName", value(changes.displayName, JSONValue.string)), ("description", value(changes.description, JSONValue.string)),
            ("order", value(changes.order, JSONValue.int)), ("inherits", value(changes.inherits, JSONValue.string)),
        ] {
            apply(key, new, keep: keep)
        }
        after = .object(plan)
        edits = [EntryEdit(map: "plans", key: name, value: .object(plan))]
        summary = parts.isEmpty ? "\(subject): unchanged (already as given)" : "\(subject): \(parts.joined(separator: ", "))"
    }

    // MARK: The document

    private mutating func setTimezone(_ zone: String) throws(EditError) {
        guard !zone.isEmpty else { throw EditError(.invalidArgument, "a time zone must not be empty: give an IANA name such as \"Europe/Paris\" or \"UTC\"") }
        subject = "timezone"
        let old = try document.rootValue("timezone")
        // As objects, like every other entry's definition: `{"timezone": "Europe/Berlin"}`.
        before = old.map { .object(["timezone": $0]) }
        after = .object(["timezone": .string(zone)])
        if old == .string(zone) {
            summary = "\(subject): already \(zone)"
            return
        }
        rootEdits = [("timezone", .string(zone))]
        summary = "\(subject): \(old.map { $0.string ?? JSONWriter.string($0) } ?? "none (UTC)") → \(zone)"
    }

    private mutating func grant(_ name: String, _ feature: String, _ grant: JSONValue) throws(EditError) {
        var plan = try requirePlan(name, in: document.parsed("plans"))
        if feature != "*" { try requireFeature(feature, in: document.parsed("features")) }
        switch grant {
        case .bool(true), .object: break
        default:
            throw EditError(.invalidArgument, "a grant is true or an object ({\"config\": …, \"limits\": […]}), not \(JSONWriter.string(grant)); revoke it instead of granting false")
        }
        subject = "plan \(name)"
        before = .object(plan)
        var grants = plan["grants"]?.object ?? JSONObject()
        let was = grants[feature]
        grants[feature] = grant
        place(&plan, "grants", .object(grants), order: Self.planOrder)
        after = .object(plan)
        edits = [EntryEdit(map: "plans", key: name, value: .object(plan))]
        let what = grant == .bool(true) ? "" : " \(JSONWriter.string(grant))"
        summary = "\(subject): grants \(feature)\(what)" + (was.map { " (was \(JSONWriter.string($0)))" } ?? "")
    }

    /// The plan `name`'s grant of `feature` through its `inherits` chain: the plan that grants it.
    private func inheritedGrant(_ feature: String, from name: String?, plans: JSONObject) -> String? {
        var visited: Set<String> = []
        var current = name
        while let plan = current, visited.insert(plan).inserted, let object = plans[plan]?.object {
            let grants = object["grants"]?.object ?? JSONObject()
            if let grant = grants[feature] {
                if grant == .bool(false) || grant.object?["granted"] == .bool(false) { return nil }
                return plan
            }
            if grants["*"] == .bool(true) { return plan }
            current = object["inherits"]?.string
        }
        return nil
    }

    private mutating func revoke(_ name: String, _ feature: String) throws(EditError) {
        let plans = try document.parsed("plans")
        var plan = try requirePlan(name, in: plans)
        let features = try document.parsed("features")
        if feature != "*" { try requireFeature(feature, in: features) }
        if features[feature]?.object?["default"] == .bool(true) {
            throw EditError(
                .invalidArgument,
                "\(quoted(feature)) is a core feature (its default is true): a plan cannot switch it off; turn it off for a tenant with an override (guidon tenants disable TENANT \(feature))")
        }
        subject = "plan \(name)"
        before = .object(plan)
        var grants = plan["grants"]?.object ?? JSONObject()
        let own = grants[feature]
        let inherited = feature == "*" ? nil : inheritedGrant(feature, from: plan["inherits"]?.string, plans: plans)
        let starGranted = feature != "*" && grants["*"] == .bool(true)
        if own == .bool(false) || own?.object?["granted"] == .bool(false) {
            summary = "\(subject): already does not grant \(feature)"
        } else if let inherited {
            grants[feature] = .bool(false)
            summary = "\(subject): revokes \(feature) (false over the grant inherited from \(inherited))"
        } else if starGranted {
            grants[feature] = .bool(false)
            summary = "\(subject): revokes \(feature) (false, excepting it from \"*\")"
        } else if own != nil {
            grants[feature] = nil
            summary = "\(subject): no longer grants \(feature)"
        } else {
            throw EditError(.invalidArgument, "plan \(quoted(name)) does not grant \(quoted(feature)): nothing to revoke")
        }
        place(&plan, "grants", grants.isEmpty ? nil : .object(grants), order: Self.planOrder)
        after = .object(plan)
        edits = [EntryEdit(map: "plans", key: name, value: .object(plan))]
    }

    // MARK: Features

    private mutating func addFeature(_ key: String, _ definition: JSONObject) throws(EditError) {
        guard !key.isEmpty, key != "*" else { throw EditError(.invalidArgument, "a feature key must not be empty or \"*\"") }
        let features = try document.parsed("features")
        guard !features.contains(key) else {
            throw EditError(.alreadyExists, "feature \(quoted(key)) already exists")
        }
        guard definition["default"] != nil else {
            throw EditError(.invalidArgument, "a feature needs a \"default\": true or false (a boolean feature), or an object (a configuration feature)")
        }
        var feature = JSONObject()
        for name in Self.featureOrder { if let value = definition[name] { feature[name] = value } }
        for (name, value) in definition where !feature.contains(name) { feature[name] = value }
        subject = "feature \(key)"
        after = .object(feature)
        edits = [EntryEdit(map: "features", key: key, value: .object(feature))]
        summary = "\(subject): added (default \(JSONWriter.string(feature["default"]!)))"
    }

    private mutating func removeFeature(_ key: String, cascade: Bool) throws(EditError) {
        let features = try document.parsed("features")
        try requireFeature(key, in: features)
        subject = "feature \(key)"
        before = features[key]
        edits = [EntryEdit(map: "features", key: key, value: nil)]
        // What refers to it: plans' grants, tenants' overrides.
        let plans = try document.parsed("plans")
        var granting: [String] = []
        for (name, plan) in plans where plan.object?["grants"]?.object?.contains(key) == true {
            granting.append(name)
            if cascade, var object = plan.object, var grants = object["grants"]?.object {
                grants[key] = nil
                place(&object, "grants", grants.isEmpty ? nil : .object(grants), order: Self.planOrder)
                edits.append(EntryEdit(map: "plans", key: name, value: .object(object)))
            }
        }
        var overriding: [String] = []
        if let tenants = try document.map("tenants") {
            let needle = Array(JSONWriter.string(.string(key)).utf8)
            for member in tenants.members where contains(needle, in: member.valueRange) {
                guard case .object(var tenant) = try document.located(member, map: "tenants").value,
                    var overrides = tenant["overrides"]?.object, overrides.contains(key)
                else { continue }
                overriding.append(member.key)
                if cascade {
                    overrides[key] = nil
                    place(&tenant, "overrides", overrides.isEmpty ? nil : .object(overrides), order: Self.tenantOrder)
                    edits.append(EntryEdit(map: "tenants", key: member.key, value: .object(tenant)))
                }
            }
        }
        if !cascade && !(granting.isEmpty && overriding.isEmpty) {
            var uses: [String] = []
            if !granting.isEmpty { uses.append("granted by plan\(granting.count == 1 ? "" : "s") \(granting.joined(separator: ", "))") }
            if !overriding.isEmpty {
                let shown = overriding.prefix(10).joined(separator: ", ") + (overriding.count > 10 ? ", …" : "")
                uses.append("overridden for \(overriding.count) tenant\(overriding.count == 1 ? "" : "s") (\(shown))")
            }
            throw EditError(
                .invalidArgument,
                "feature \(quoted(key)) is still \(uses.joined(separator: " and ")): revoke and clear those first, or remove it with cascade (--cascade), which removes them too")
        }
        var extra: [String] = []
        if !granting.isEmpty { extra.append("and its grants in \(granting.joined(separator: ", "))") }
        if !overriding.isEmpty { extra.append("and its overrides for \(overriding.count) tenant\(overriding.count == 1 ? "" : "s")") }
        summary = "\(subject): removed" + (extra.isEmpty ? "" : " " + extra.joined(separator: " "))
    }

    private func contains(_ needle: [UInt8], in range: Range<Int>) -> Bool {
        let bytes = document.bytes
        guard needle.count <= range.count, let first = needle.first else { return false }
        var i = range.lowerBound
        let last = range.upperBound - needle.count
        while i <= last {
            if bytes[i] == first, bytes[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }
}
