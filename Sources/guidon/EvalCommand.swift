import ArgumentParser
import GuidonEngine
import GuidonJSON

#if canImport(Glibc)
import Glibc
#endif

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
