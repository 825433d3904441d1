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
    /// Per tenant, its position in the value it was reused from (`Entitlements.reusedFrom`), or
    /// -1 when it was compiled; empty when none was reused.
    var reused: [Int32] = []

    func sharesContext(with document: JSONObject) -> Bool {
        identical(features, document["features"]) && identical(plans, document["plans"])
    }
}

/// Validates an entitlements document and compiles it, reusing what did not change.
struct EntitlementsCompiler {
    let options: EntitlementsCompileOptions

    static let knownTopLevelMembers = ["$schema", "timezone", "features", "plans", "tenants"]

    func compile(_ bytes: [UInt8], reusing previous: Entitlements?) throws(ValidationReport) -> Entitlements {
        // Spans are kept, to reuse tenants next time, as 32-bit offsets (the daemon reads at most 64 MiB).
        guard bytes.count < Int(UInt32.max) else {
            throw ValidationReport(errors: [Diagnostic(severity: .error, path: "$", message: "the document is larger than 4 GiB")])
        }
        // The document is read without parsing the tenants (a parsed tree takes several times its
        // text, and 100,000 of them would not be freed before the compiled table is built): each
        // is parsed when it is compiled, or not at all when it is reused.
        // Tenants of `previous` may be reused when `features` and `plans` are unchanged; that is
        // known only once they are parsed, so the scan matches tenants with their old text
        // anyway (cheap: it is how their end is found) and the matches are dropped if not.
        var scanned: ScannedDocument
        var fast = true
        let match = previous.map { previous in
            { (position: Int, key: UnsafeRawBufferPointer, start: Int) in Self.sameTenant(position, key, start, bytes, in: previous) }
        }
        if let document = ScannedDocument.scan(bytes, match: match) {
            scanned = document
        } else {
            fast = false
            do {
                scanned = try ScannedDocument.parse(bytes)
            } catch {
                throw Self.report(error)
            }
        }
        var problems = Problems()
        if let other = scanned.notAnObject {
            problems.error([], "an entitlements document must be a JSON object with \"features\", \"plans\" and \"tenants\", not \(article(other.typeName))")
            throw Self.rejection(problems.list.map { ($0, 0, 0) }, bytes: bytes, mode: options.mode)
        }
        let document = scanned.root
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
        if catalog.overflowed { problems.error([.key("plans")], AnswerArena.overflowMessage(options.maximumAnswerBytes)) }

        if let other = document["tenants"], !scanned.tenantsDelimited {
            problems.error([.key("tenants")], "must be an object mapping tenant ids to tenants, not \(article(other.typeName))")
        }
        let count = scanned.tenantCount
        if count >= Int(UInt32.max) || catalog.plans.count >= Int(UInt16.max) {
            throw ValidationReport(errors: [Diagnostic(severity: .error, path: "$", message: "too many tenants or plans")])
        }

        // The ids: the previous index when they are the same ids in the same order; otherwise a
        // new one, which finds repeated ids (only the project's parser reports those, with their
        // position: it reads the document again).
        let old = previous.flatMap { $0.memo.sharesContext(with: document) && fast ? $0 : nil }
        if old == nil { scanned.reused = [] }
        var index: BytesIndex?
        if let previous, previous.tenants.index.sameKeys(bytes: scanned.keyBytes, ends: scanned.keyEnds) {
            index = previous.tenants.index
        } else {
            let built = BytesIndex(bytes: scanned.keyBytes, ends: scanned.keyEnds)
            if built.hasDuplicates || (scanned.nonASCIIKeys && Self.hasCanonicalDuplicates(scanned)) {
                do {
                    _ = try JSONParser(duplicateKeys: .reject).parse(bytes)
                } catch {
                    throw Self.report(error)
                }
            }
            index = built
        }

        // Tenants, in document order: reused, or parsed and compiled.
        var records: [TenantRecord] = []
        var overrides: [OverrideRecord] = []
        var arena = AnswerArena(maximumBytes: options.maximumAnswerBytes)
        records.reserveCapacity(count)
        var tenantProblems: [Int: [Problem]] = [:]
        var tenantCompiler = TenantCompiler(catalog: catalog)
        var failed = false
        var compiledCount = 0
        let oldText = old?.tenants.text.pointer
        let oldLimits = old?.tenants.limits.pointer
        for position in 0..<count {
            if let old, let oldText, let oldLimits, position < scanned.reused.count, scanned.reused[position] >= 0 {
                let j = Int(scanned.reused[position])
                var record = old.tenants.records.buffer[j]
                let first = Int(record.overrideStart)
                record.overrideStart = UInt32(overrides.count)
                for k in first..<first + Int(record.overrideCount) {
                    var o = old.tenants.overrides.buffer[k]
                    let shared = o.otherwise.start == o.whilePlanApplies.start
                    o.whilePlanApplies = arena.copy(o.whilePlanApplies, fromText: oldText, fromLimits: oldLimits)
                    o.otherwise = shared ? o.whilePlanApplies : arena.copy(o.otherwise, fromText: oldText, fromLimits: oldLimits)
                    overrides.append(o)
                }
                records.append(record)
                if let earlier = old.memo.problems[j] { tenantProblems[position] = earlier }
                continue
            }
            var definition = position < scanned.values.count ? scanned.values[position] : .null
            if case .null = definition {
                do {
                    definition = try JSONParser(duplicateKeys: .reject).parse(bytes, valueIn: scanned.spans[position], depth: 2)
                } catch {
                    // Reported as a parse of the whole document reports it: the first error in
                    // document order (another member may hold an earlier one).
                    do {
                        _ = try JSONParser(duplicateKeys: .reject).parse(bytes)
                    } catch let first {
                        throw Self.report(first)
                    }
                    throw Self.report(error)
                }
            }
            let before = tenantCompiler.problems.count
            let compiled = tenantCompiler.compile(scanned.key(position), definition, arena: &arena)
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
            if arena.overflowed {
                tenantProblems[position, default: []].append(Problem(kind: .error, path: [.key("tenants"), .key(scanned.key(position))], message: AnswerArena.overflowMessage(options.maximumAnswerBytes)))
                failed = true
                break
            }
        }

        // Every problem, located: the document's first, then each tenant's in document order.
        var located = problems.list.map { ($0, 0, 0) }
        for position in tenantProblems.keys.sorted() {
            located += tenantProblems[position]!.map { ($0, scanned.spans[position].lowerBound, 2) }
        }
        let (errors, warnings) = DiagnosticLocator(bytes: bytes).diagnostics(located, mode: options.mode)
        if !errors.isEmpty || failed {
            throw ValidationReport(errors: errors, warnings: warnings)
        }
        let table = TenantTable(index: index!, records: records, overrides: overrides, arena: arena)
        let memo = EntitlementsMemo(
            source: Self.compact(bytes),
            spans: scanned.spans.map { TenantSpan(start: UInt32($0.lowerBound), end: UInt32($0.upperBound)) },
            features: document["features"], plans: document["plans"], problems: tenantProblems,
            reused: old != nil && compiledCount < count ? scanned.reused : [])
        return Entitlements(
            catalog: catalog, tenants: table, memo: memo, warnings: warnings, clock: options.clock, compiledTenants: compiledCount,
            reusedFrom: compiledCount < count ? old : nil)
    }

    /// The position in `old` of tenant `position` and where its definition ends, if `old` has a
    /// tenant with the same id and the text at `start` begins with its definition, byte for
    /// byte. Looked for at the same position first (a reload mostly keeps the order), then by id.
    static func sameTenant(
        _ position: Int, _ key: UnsafeRawBufferPointer, _ start: Int, _ bytes: [UInt8], in old: Entitlements
    ) -> (old: Int, end: Int)? {
        let oldIndex = old.tenants.index.lookup
        var j: Int?
        if position < oldIndex.count {
            let oldKey = oldIndex.key(at: position)
            if oldKey.count == key.count && (key.isEmpty || memcmp(oldKey.baseAddress!, key.baseAddress!, key.count) == 0) {
                j = position
            }
        }
        if j == nil { j = oldIndex.position(of: key) }
        guard let j, j < old.memo.spans.count else { return nil }
        let span = old.memo.spans[j]
        let count = Int(span.end - span.start)
        // A definition is an object, whose text ends with its closing brace: a text that begins
        // with it holds exactly that object.
        guard start + count <= bytes.count, old.memo.source[Int(span.start)] == UInt8(ascii: "{") else { return nil }
        let same = old.memo.source.withUnsafeBytes { a in
            bytes.withUnsafeBytes { b in memcmp(a.baseAddress! + Int(span.start), b.baseAddress! + start, count) == 0 }
        }
        return same ? (j, start + count) : nil
    }

    /// Whether two ids are canonically equivalent (the parser compares keys as Swift strings do).
    static func hasCanonicalDuplicates(_ scanned: ScannedDocument) -> Bool {
        var seen = Set<String>(minimumCapacity: scanned.tenantCount)
        for i in 0..<scanned.tenantCount where !seen.insert(scanned.key(i)).inserted { return true }
        return false
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
