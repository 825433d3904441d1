import ArgumentParser
import GuidonEngine
import GuidonEntitlements
import GuidonFiles
import GuidonJSON

#if canImport(Glibc)
import Glibc
#endif

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Checks a flag file and/or an entitlements file offline and prints every problem.",
        discussion: """
            With both a flag file and --entitlements, also checks that no key is both a flag and a feature \
            (guidond serves them together). Exit status: 0 clean, 1 errors (guidond would refuse it), 2 only \
            warnings (loads with --lenient).
            """)

    @Argument(help: "The flag file.")
    var file: String?

    @Option(name: .long, help: "An entitlements file (guidond --entitlements).")
    var entitlements: String?

    @Flag(name: .long, help: "Check as `guidond --lenient` would load it.")
    var lenient = false

    @Flag(name: .long, help: "Print the report as JSON.")
    var json = false

    func validate() throws {
        guard file != nil || entitlements != nil else { throw ValidationError("give a flag file, --entitlements FILE, or both") }
    }

    func run() throws {
        var errors = 0
        var warnings = 0
        var snapshot: Snapshot?
        var reports: [JSONValue] = []
        let entitlementOptions = EntitlementsCompileOptions(mode: lenient ? .lenient : .strict, isKnownTimeZone: systemZoneExists)
        // `entitled` in the flags' targeting names the entitlements file's features.
        let features = entitlements.flatMap { readFile($0) }.flatMap { try? Entitlements.compile(json: $0, options: entitlementOptions) }
            .map { Set($0.features.map(\.key)) }
        if let file {
            let (report, value) = try check(file) { bytes throws(ValidationReport) in
                let snapshot = try Snapshot.compile(json: bytes, options: CompileOptions(mode: lenient ? .lenient : .strict, features: features))
                return (snapshot, snapshot.warnings, "\(snapshot.count) flags", ["flags": .int(Int64(snapshot.count))])
            }
            snapshot = value
            reports.append(report.json)
            errors += report.errors
            warnings += report.warnings
        }
        if let path = entitlements {
            let flags = snapshot
            let (report, value) = try check(path) { bytes throws(ValidationReport) in
                let value = try Entitlements.compile(json: bytes, options: entitlementOptions)
                // guidond serves both files together: a key is a flag or a feature, not both.
                let conflicts = flags.map { value.conflicts(withFlagKeys: $0.flags.map(\.key)) } ?? []
                if !conflicts.isEmpty { throw ValidationReport(errors: conflicts, warnings: value.warnings) }
                return (
                    value, value.warnings, "\(value.features.count) features, \(value.plans.count) plans, \(value.tenantCount) tenants",
                    ["features": .int(Int64(value.features.count)), "plans": .int(Int64(value.plans.count)), "tenants": .int(Int64(value.tenantCount))]
                )
            }
            _ = value
            reports.append(report.json)
            errors += report.errors
            warnings += report.warnings
        }
        if json {
            print(reports.count == 1 ? reports[0] : JSONValue.object(["ok": .bool(errors == 0 && warnings == 0), "files": .array(reports)]))
        }
        if errors > 0 { throw ExitCode(1) }
        if warnings > 0 { throw ExitCode(2) }
    }

    struct Report {
        var file: String
        var errors = 0
        var warnings = 0
        var diagnostics: [Diagnostic] = []
        var counts: JSONObject = [:]

        mutating func add(errors more: [Diagnostic]) {
            errors += more.count
            diagnostics = more + diagnostics
        }

        var json: JSONValue {
            func encode(_ d: Diagnostic) -> JSONValue {
                var o: JSONObject = ["severity": .string(d.severity.rawValue), "path": .string(d.path), "message": .string(d.message)]
                if let line = d.line, let column = d.column {
                    o["line"] = .int(Int64(line))
                    o["column"] = .int(Int64(column))
                }
                return .object(o)
            }
            var o: JSONObject = ["file": .string(file), "ok": .bool(errors == 0 && warnings == 0)]
            for (key, value) in counts { o[key] = value }
            o["errors"] = .array(diagnostics.filter { $0.severity == .error }.map(encode))
            o["warnings"] = .array(diagnostics.filter { $0.severity != .error }.map(encode))
            return .object(o)
        }
    }

    /// Reads and compiles one file, printing its report unless `--json`.
    func check<Value>(
        _ path: String, _ compile: ([UInt8]) throws(ValidationReport) -> (Value, [Diagnostic], String, JSONObject)
    ) throws -> (Report, Value?) {
        guard let bytes = readFile(path) else {
            throw CLIError("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        var report = Report(file: path)
        var value: Value?
        var summary = ""
        do {
            let (compiled, warnings, text, counts) = try compile(bytes)
            value = compiled
            report.diagnostics = warnings
            report.warnings = warnings.count
            report.counts = counts
            summary = text
        } catch {
            report.diagnostics = error.errors + error.warnings
            report.errors = error.errors.count
            report.warnings = error.warnings.count
        }
        if !json {
            for d in report.diagnostics { print("\(path): \(d)") }
            if report.errors == 0 && report.warnings == 0 { print("\(path): ok, \(summary)") }
            else { print("\(path): \(report.errors) error(s), \(report.warnings) warning(s)") }
        }
        return (report, value)
    }

    func readFile(_ path: String) -> [UInt8]? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n > 0 { bytes.append(contentsOf: chunk[..<n]) }
            if n < chunk.count { break }
        }
        return ferror(f) == 0 ? bytes : nil
    }
}
