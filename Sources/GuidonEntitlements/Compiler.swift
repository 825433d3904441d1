import GuidonEngine
import GuidonJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a tenant's definition is in a document's text.
struct TenantSpan: Sendable {
    var start: UInt32
    var end: UInt32
    var range: Range<Int> { Int(start)..<Int(end) }
}

/// What a compiled value remembers of its document so that the next compile of a new version can
/// reuse the tenants that did not change, as the flag compiler reuses flags (`CompileMemo`).
///
/// Compiling a tenant is a pure function of its id, its definition's text and the document's
/// `features` and `plans` (which it names, and whose defaults and grants its overrides' answers
/// are merged from). So a tenant is reused when its id and definition bytes are equal and the
/// `features` and `plans` members are identical (same members in the same order, strings byte
/// for byte, numbers bit for bit). The catalog itself (`timezone`, `features`, `plans`: tens of
/// entries) is compiled every time: it takes well under a millisecond.
struct EntitlementsMemo: Sendable {
    /// The document's text: reuse rests on equal bytes, not on digests.
    let source: [UInt8]
    /// Per tenant, in document order.
    let spans: [TenantSpan]
    let features: JSONValue?
    let plans: JSONValue?
    /// What compiling a tenant reported, by position (only tenants with problems).
    let problems: [Int: [Problem]]

    func sharesContext(with document: JSONObject) -> Bool {
        identical(features, document["features"]) && identical(plans, document["plans"])
    }

    /// Whether the root members parsed so far already show `features` or `plans` other than
    /// these (when they come before `tenants`, no tenant need be compared with its old text).
    func contextDiffers(from members: JSONObject) -> Bool {
        if let value = members["features"], !identical(features, value) { return true }
        if let value = members["plans"], !identical(plans, value) { return true }
        return false
    }
}

/// A previous compiled value whose tenants may be reused.
private struct Reuse {
    let previous: Entitlements
    let bytes: [UInt8]

    var memo: EntitlementsMemo { previous.memo }

    /// The previous tenant `key` and where its definition ends, if the text at `start` begins
    /// with that definition byte for byte. Looked for at the same position first (a reload
    /// mostly keeps the order), then by id.
    func tenant(_ key: String, position: Int, at start: Int) -> (old: Int, end: Int)? {
        let index = previous.tenants.index
        var old: Int?
        if position < index.count, sameKey(key, index.lookup.key(at: position)) {
            old = position
        } else {
            old = index.lookup.position(of: key)
        }
        guard let old, old < memo.spans.count else { return nil }
        let span = memo.spans[old]
        let count = Int(span.end - span.start)
        let end = start + count
        guard memo.source[Int(span.start)] == UInt8(ascii: "{"), end <= bytes.count else { return nil }
        let same = memo.source.withUnsafeBytes { a in
            bytes.withUnsafeBytes { b in memcmp(a.baseAddress! + Int(span.start), b.baseAddress! + start, count) == 0 }
        }
        return same ? (old, end) : nil
    }

    func sameKey(_ key: String, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var key = key
        return key.withUTF8 { $0.count == bytes.count && ($0.count == 0 || memcmp($0.baseAddress!, bytes.baseAddress!, $0.count) == 0) }
    }
}

/// Validates an entitlements document and compiles it, reusing what did not change.
struct EntitlementsCompiler {
    let options: EntitlementsCompileOptions

    static let knownTopLevelMembers = ["$schema", "timezone", "features", "plans", "tenants"]

    func compile(_ bytes: [UInt8], reusing previous: Entitlements?) throws(ValidationReport) -> Entitlements {
        // The document parse only delimits the tenants (a parsed tree takes several times its
        // text, and 100,000 of them would not be freed before the compiled table is built); each
        // is parsed when it is compiled, or not at all when it is reused.
        let reuse = previous.map { Reuse(previous: $0, bytes: bytes) }
        var mayReuse = false
        var reused: [Int?] = []
        let root: JSONValue
        var spans: [Range<Int>]
        do {
            let shouldSkip = { (before: JSONObject) in
                mayReuse = reuse.map { !$0.memo.contextDiffers(from: before) } ?? false
                return true
            }
            (root, spans) = try JSONParser(duplicateKeys: .reject).parse(bytes, skippingIn: "tenants", when: shouldSkip) {
                position, key, start in
                let match = mayReuse ? reuse?.tenant(key, position: position, at: start) : nil
                reused.append(match?.old)
                return match?.end ?? JSONParser.objectEnd(in: bytes, from: start)
            }
        } catch {
            throw Self.report(error)
        }
        var problems = Problems()
        guard case .object(let document) = root else {
            problems.error([], "an entitlements document must be a JSON object with \"features\", \"plans\" and \"tenants\", not \(article(root.typeName))")
            throw Self.rejection(problems.list.map { ($0, 0, 0) }, bytes: bytes, mode: options.mode)
        }
        for key in document.keys where !Self.knownTopLevelMembers.contains(key) {
            problems.warning([.key(key)],
                "unknown member \(quoted(key)) is ignored (known: \"timezone\", \"features\", \"plans\", \"tenants\", \"$schema\")")
        }
        if let schema = document["$schema"], schema.string == nil {
            problems.error([.key("$schema")], "must be a string (a schema URL), not \(article(schema.typeName))")
        }
        var catalogCompiler = CatalogCompiler(options: options)
        let catalog = catalogCompiler.compile(timezone: document["timezone"], features: document["features"], plans: document["plans"])
        problems.list += catalogCompiler.problems.list
        if let reuse, !reuse.memo.sharesContext(with: document) { reused = [] }

        var tenantDefinitions: JSONObject
        switch document["tenants"] {
        case nil:
            tenantDefinitions = JSONObject()
            spans = []
        case .object(let object)?:
            tenantDefinitions = object
        case let other?:
            problems.error([.key("tenants")], "must be an object mapping tenant ids to tenants, not \(article(other.typeName))")
            tenantDefinitions = JSONObject()
            spans = []
        }
        // Spans are kept to reuse tenants next time, located by a 32-bit offset (the daemon reads at most 64 MiB).
        guard bytes.count < Int(UInt32.max) else {
            throw ValidationReport(errors: [Diagnostic(severity: .error, path: "$", message: "the document is larger than 4 GiB")])
        }
        if tenantDefinitions.count >= Int(UInt32.max) || catalog.plans.count >= Int(UInt16.max) {
            throw ValidationReport(errors: [Diagnostic(severity: .error, path: "$", message: "too many tenants or plans")])
        }

        // Tenants, in document order: reused, or parsed and compiled.
        let count = tenantDefinitions.count
        var records: [TenantRecord] = []
        var overrides: [OverrideRecord] = []
        var arena = AnswerArena()
        records.reserveCapacity(count)
        var tenantProblems: [Int: [Problem]] = [:]
        var tenantCompiler = TenantCompiler(catalog: catalog)
        var failed = false
        var compiledCount = 0
        let old = reuse?.previous.tenants
        let oldText = old?.text.pointer
        let oldLimits = old?.limits.pointer
        for position in 0..<count {
            if position < reused.count, let j = reused[position], let old, let oldText, let oldLimits {
                var record = old.records.buffer[j]
                let first = Int(record.overrideStart)
                record.overrideStart = UInt32(overrides.count)
                for k in first..<first + Int(record.overrideCount) {
                    var o = old.overrides.buffer[k]
                    let shared = o.otherwise.start == o.whilePlanApplies.start
                    o.whilePlanApplies = arena.copy(o.whilePlanApplies, fromText: oldText, fromLimits: oldLimits)
                    o.otherwise = shared ? o.whilePlanApplies : arena.copy(o.otherwise, fromText: oldText, fromLimits: oldLimits)
                    overrides.append(o)
                }
                records.append(record)
                if let earlier = reuse?.memo.problems[j] {
                    tenantProblems[position] = earlier
                }
                continue
            }
            var definition = tenantDefinitions.values[position]
            if case .null = definition, position < spans.count {
                do {
                    definition = try JSONParser(duplicateKeys: .reject).parse(bytes, valueIn: spans[position], depth: 2)
                } catch {
                    throw Self.report(error)
                }
            }
            tenantDefinitions.replaceValue(at: position, with: .null)
            let before = tenantCompiler.problems.count
            let compiled = tenantCompiler.compile(tenantDefinitions.keys[position], definition, arena: &arena)
            compiledCount += 1
            if tenantCompiler.problems.count > before {
                tenantProblems[position] = Array(tenantCompiler.problems.list[before...])
                tenantCompiler.problems.list.removeAll(keepingCapacity: true)
            }
            guard var compiled else {
                failed = true
                records.append(TenantRecord(validUntil: .max, overrideStart: 0, overrideCount: 0, plan: 0, status: 0))
                continue
            }
            compiled.record.overrideStart = UInt32(overrides.count)
            records.append(compiled.record)
            overrides += compiled.overrides
        }

        // Every problem, located: the document's first, then each tenant's in document order.
        var located = problems.list.map { ($0, 0, 0) }
        for position in tenantProblems.keys.sorted() {
            let anchor = position < spans.count ? spans[position].lowerBound : 0
            let depth = position < spans.count ? 2 : 0
            located += tenantProblems[position]!.map { ($0, anchor, depth) }
        }
        let (errors, warnings) = DiagnosticLocator(bytes: bytes).diagnostics(located, mode: options.mode)
        if !errors.isEmpty || failed {
            throw ValidationReport(errors: errors, warnings: warnings)
        }

        // The same ids in the same order: the previous index serves.
        var index: BytesIndex?
        if let old, old.count == count {
            let keys = tenantDefinitions.keys
            let same = (0..<count).allSatisfy { i in
                (i < reused.count && reused[i] == i) || Reuse(previous: reuse!.previous, bytes: bytes).sameKey(keys[i], old.index.lookup.key(at: i))
            }
            if same { index = old.index }
        }
        let table = TenantTable(
            index: index ?? BytesIndex(keys: tenantDefinitions.keys), records: records, overrides: overrides, arena: arena)
        let memo = EntitlementsMemo(
            source: Self.compact(bytes),
            spans: spans.count == count ? spans.map { TenantSpan(start: UInt32($0.lowerBound), end: UInt32($0.upperBound)) } : [],
            features: document["features"], plans: document["plans"], problems: tenantProblems)
        return Entitlements(
            catalog: catalog, tenants: table, memo: memo, warnings: warnings, clock: options.clock, compiledTenants: compiledCount)
    }

    /// A document that is not JSON: the one problem reported.
    static func report(_ error: JSONSyntaxError) -> ValidationReport {
        ValidationReport(errors: [Diagnostic(severity: .error, path: "$", line: error.line, column: error.column, message: error.reason)])
    }

    static func rejection(_ problems: [(Problem, Int, Int)], bytes: [UInt8], mode: CompileOptions.Mode) -> ValidationReport {
        let (errors, warnings) = DiagnosticLocator(bytes: bytes).diagnostics(problems, mode: mode)
        return ValidationReport(errors: errors, warnings: warnings)
    }

    /// `bytes`, without spare capacity worth copying to drop (the compiled value keeps them).
    static func compact(_ bytes: [UInt8]) -> [UInt8] {
        guard bytes.capacity - bytes.count > 4096 + bytes.count / 16 else { return bytes }
        return bytes.withUnsafeBufferPointer { Array($0) }
    }
}
