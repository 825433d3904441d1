import ArgumentParser
import GuidonEngine
import GuidonJSON

#if canImport(Glibc)
import Glibc
#endif

struct Guidon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guidon",
        abstract: "Asks guidond for feature flags, and checks flag files.",
        subcommands: [Eval.self, Ping.self, Status.self, List.self, Watch.self, Validate.self]
    )
}

/// Options shared by every command that talks to the daemon.
struct ClientOptions: ParsableArguments {
    @Option(name: .long, help: "The daemon's socket (default: $GUIDON_SOCKET or /run/guidon/guidon.sock).")
    var socket: String?

    @Flag(name: .long, help: "Print the daemon's JSON replies as they are, one per line.")
    var json = false

    @Option(name: .long, help: "Seconds to wait for a reply.")
    var timeout: Double = 5

    var socketPath: String {
        if let socket { return socket }
        if let env = getenv("GUIDON_SOCKET"), env.pointee != 0 { return String(cString: env) }
        return "/run/guidon/guidon.sock"
    }

    /// Sends one request and returns its reply; daemon-side errors become a failure.
    func ask(_ request: JSONObject) throws -> (JSONObject, [UInt8]) {
        var client = try LineClient(path: socketPath, timeout: timeout)
        try client.send(.object(request))
        let (reply, raw) = try client.receive()
        guard case .object(let object) = reply else { throw CLIError("unexpected reply: \(reply)") }
        if case .object(let error)? = object["error"] {
            if json { printLine(raw) }
            throw CLIError("\(error["code"]?.string ?? "ERROR"): \(error["message"]?.string ?? "")")
        }
        return (object, raw)
    }
}

struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func printLine(_ bytes: [UInt8]) {
    print(String(decoding: bytes, as: UTF8.self))
}

func text(_ value: JSONValue?) -> String {
    guard let value else { return "-" }
    return value.string ?? value.description
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluates flags for a context.")

    @Argument(help: "The flag key(s).")
    var flags: [String] = []

    @Flag(name: .long, help: "Evaluate every flag (evalAll).")
    var all = false

    @Option(name: .long, help: "The evaluation context as a JSON object, e.g. '{\"targetingKey\":\"user-42\",\"tier\":\"gold\"}'.")
    var context: String = "{}"

    @Option(name: .long, help: "The expected type: boolean, string, integer, float or object.")
    var type: String?

    @Option(name: .long, help: "The default value (JSON) served when the flag falls back to it.")
    var `default`: String?

    @OptionGroup var options: ClientOptions

    func validate() throws {
        if all && !flags.isEmpty { throw ValidationError("give flag keys or --all, not both") }
        if !all && flags.isEmpty { throw ValidationError("give at least one flag key (or --all)") }
        if let type, ValueType(rawValue: type) == nil {
            throw ValidationError("unknown --type '\(type)'; expected boolean, string, integer, float or object")
        }
    }

    func run() throws {
        var request: JSONObject = ["op": all ? "evalAll" : "eval"]
        do {
            request["context"] = try JSONParser().parse(context)
        } catch {
            throw CLIError("--context is not valid JSON: \(error)")
        }
        if let type { request["type"] = .string(type) }
        if let `default` {
            do { request["default"] = try JSONParser().parse(`default`) } catch {
                throw CLIError("--default is not valid JSON: \(error)")
            }
        }
        if !all {
            if flags.count == 1 { request["flag"] = .string(flags[0]) } else { request["flags"] = .array(flags.map(JSONValue.string)) }
        }
        let (reply, raw) = try options.ask(request)
        if options.json { return printLine(raw) }
        var results: [JSONObject] = []
        if case .array(let many)? = reply["results"] {
            results = many.compactMap(\.object)
        } else if case .object(let byKey)? = reply["results"] {
            results = byKey.values.compactMap(\.object)
        } else {
            results = [reply]
        }
        for result in results {
            var line = "\(text(result["flag"])) = \(text(result["value"]))"
            var details = [text(result["reason"])]
            if let variant = result["variant"]?.string { details.append("variant \(variant)") }
            if let code = result["errorCode"]?.string { details.append("\(code): \(result["errorMessage"]?.string ?? "")") }
            line += "  (\(details.joined(separator: ", ")))"
            print(line)
        }
    }
}

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Checks that the daemon answers (exit 0 only if it does): a health check.")

    @OptionGroup var options: ClientOptions

    func run() throws {
        let started = ContinuousClock.now
        let (reply, raw) = try options.ask(["op": "ping"])
        let elapsed = ContinuousClock.now - started
        guard reply["ok"] == .bool(true) else { throw CLIError("unexpected reply: \(JSONValue.object(reply))") }
        if options.json { return printLine(raw) }
        let micros = elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
        print("ok: \(text(reply["flags"])) flags, config \(text(reply["configVersion"])) (\(micros) µs)")
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Shows what the daemon serves and how its last reload went.")

    @OptionGroup var options: ClientOptions

    func run() throws {
        let (reply, raw) = try options.ask(["op": "status"])
        if options.json { return printLine(raw) }
        print("guidond \(text(reply["version"])), up \(text(reply["uptimeSeconds"])) s, \(text(reply["connections"])) connection(s)")
        print("config      \(text(reply["configPath"])) (\(text(reply["mode"])))")
        print("version     \(text(reply["configVersion"])), \(text(reply["flags"])) flags, loaded \(text(reply["loadedAt"]))")
        if case .object(let last)? = reply["lastReload"] {
            let outcome = last["ok"] == .bool(true) ? "ok" : "FAILED"
            print("last reload \(outcome) at \(text(last["at"])) (\(text(last["trigger"])))")
            if let error = last["error"]?.string {
                for line in error.split(separator: "\n") { print("  \(line)") }
            }
        } else {
            print("last reload none yet")
        }
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Lists every flag with its state, variants and metadata.")

    @OptionGroup var options: ClientOptions

    func run() throws {
        let (reply, raw) = try options.ask(["op": "list"])
        if options.json { return printLine(raw) }
        for case .object(let flag) in reply["flags"]?.array ?? [] {
            let variants = (flag["variants"]?.array ?? []).map(text).joined(separator: ", ")
            print("\(text(flag["key"]))  \(text(flag["state"]))  default \(text(flag["defaultVariant"]))  [\(variants)]")
            for (key, value) in flag["metadata"]?.object ?? [:] {
                print("    \(key): \(text(value))")
            }
        }
    }
}

struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Prints a line each time the daemon's flags change.")

    @OptionGroup var options: ClientOptions

    func run() throws {
        var client = try LineClient(path: options.socketPath, timeout: nil)
        try client.send(["op": "watch"])
        while true {
            let (reply, raw) = try client.receive()
            if options.json {
                printLine(raw)
            } else if case .object(let o) = reply {
                if o["event"] != nil {
                    let parts = ["added", "changed", "removed"].compactMap { key -> String? in
                        let keys = (o[key]?.array ?? []).map(text)
                        return keys.isEmpty ? nil : "\(key): \(keys.joined(separator: ", "))"
                    }
                    print("config \(text(o["configVersion"])) — \(parts.joined(separator: "; "))")
                } else if o["watching"] == .bool(true) {
                    print("watching (config \(text(o["configVersion"])))")
                }
            }
            fflush(nil)
        }
    }
}

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

Guidon.main()
