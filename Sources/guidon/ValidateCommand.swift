import ArgumentParser
import GuidonEngine
import GuidonJSON

#if canImport(Glibc)
import Glibc
#endif

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Checks a flag file offline and prints every problem.",
        discussion: "Exit status: 0 clean, 1 errors (guidond would refuse it), 2 only warnings (loads with --lenient).")

    @Argument(help: "The flag file.")
    var file: String

    @Flag(name: .long, help: "Check as `guidond --lenient` would load it.")
    var lenient = false

    @Flag(name: .long, help: "Print the report as JSON.")
    var json = false

    func run() throws {
        guard let bytes = readFile(file) else {
            throw CLIError("cannot read \(file): \(String(cString: strerror(errno)))")
        }
        let options = CompileOptions(mode: lenient ? .lenient : .strict)
        var errors: [Diagnostic] = []
        var warnings: [Diagnostic] = []
        var flagCount = 0
        do {
            let snapshot = try Snapshot.compile(json: bytes, options: options)
            warnings = snapshot.warnings
            flagCount = snapshot.count
        } catch {
            errors = error.errors
            warnings = error.warnings
        }
        if json {
            func encode(_ d: Diagnostic) -> JSONValue {
                var o: JSONObject = ["severity": .string(d.severity.rawValue), "path": .string(d.path), "message": .string(d.message)]
                if let line = d.line, let column = d.column {
                    o["line"] = .int(Int64(line))
                    o["column"] = .int(Int64(column))
                }
                return .object(o)
            }
            print(JSONValue.object([
                "file": .string(file), "ok": .bool(errors.isEmpty && warnings.isEmpty), "flags": .int(Int64(flagCount)),
                "errors": .array(errors.map(encode)), "warnings": .array(warnings.map(encode)),
            ]))
        } else {
            for d in errors + warnings { print("\(file): \(d)") }
            if errors.isEmpty && warnings.isEmpty { print("\(file): ok, \(flagCount) flags") }
            else { print("\(file): \(errors.count) error(s), \(warnings.count) warning(s)") }
        }
        if !errors.isEmpty { throw ExitCode(1) }
        if !warnings.isEmpty { throw ExitCode(2) }
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
