import ArgumentParser
import GuidonEditing
import GuidonFiles
import GuidonJSON

#if canImport(Glibc)
import Glibc
#endif

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turns the switches teams keep elsewhere into flags.", subcommands: [Env.self])

    struct Env: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Makes a boolean flag of every NAME_ENABLED=true|false line of a .env file.",
            discussion: """
                NEW_CHECKOUT_ENABLED=true becomes the flag new_checkout, variants on/off, default on \
                (false: off). --prefix FF_ takes FF_NAME_ENABLED instead; --pattern takes any shape, with * \
                standing for the flag name (FEATURE_*). Flags that exist already are left alone. Prints the \
                diff; --write applies it (to --file, or through the daemon's admin socket, one flag at a time).
                """)

        @Argument(help: "The .env file.") var env: String
        @Option(help: "Only variables starting with this (stripped from the flag name), ending in _ENABLED.") var prefix: String?
        @Option(help: "The variable names to take, * standing for the flag name (default *_ENABLED).") var pattern: String?
        @Flag(help: "Apply the changes (default: only print the diff).") var write = false
        @OptionGroup var admin: AdminOptions
        @OptionGroup var writeOptions: WriteOptions

        func validate() throws {
            if prefix != nil && pattern != nil { throw ValidationError("give --prefix or --pattern, not both") }
            if let pattern, pattern.filter({ $0 == "*" }).count != 1 { throw ValidationError("--pattern needs exactly one *") }
        }

        func run() throws {
            let bytes: [UInt8]
            do { bytes = try DocumentFile.read(env) } catch { throw CLIError(error.message) }
            let (switches, skipped) = EnvImport.scan(String(decoding: bytes, as: UTF8.self), pattern: pattern ?? "\(prefix ?? "")*_ENABLED")
            for skip in skipped { printError("\(env):\(skip.line): skipped: \(skip.reason)") }
            guard !switches.isEmpty else {
                print("no switches found in \(env)")
                return
            }
            var backend = try admin.backend()
            let existing = Swift.Set((try? backend.send(["op": "flags.get"]))?["flags"]?.array?.compactMap(\.string) ?? [])
            var created = 0
            for entry in switches {
                if existing.contains(entry.flag) {
                    printError("\(env):\(entry.line): \(entry.flag) exists already; left alone")
                    continue
                }
                var definition: JSONObject = [
                    "state": "ENABLED", "variants": ["on": true, "off": false], "defaultVariant": .string(entry.enabled ? "on" : "off"),
                ]
                if writeOptions.reason == nil {
                    definition["metadata"] = ["notes": .string("Imported from \(entry.variable) in \(env).")]
                }
                var request = writeOptions.decorate(["op": "flags.create", "flag": .string(entry.flag), "definition": .object(definition)])
                if !write { request["dryRun"] = true }
                do {
                    let reply = try backend.write(request)
                    if admin.json {
                        print(JSONWriter.string(.object(reply)))
                    } else {
                        if !write, let diff = reply["diff"]?.string { print(diff, terminator: "") }
                        print(describeWrite(reply))
                    }
                    created += 1
                    // With --file and no --write, the diffs are each against the file as it is.
                } catch let failure as AdminFailure {
                    if admin.json { print(JSONWriter.string(.object(failure.reply))) }
                    throw CLIError("\(entry.flag): \(failure.description)")
                }
            }
            if !admin.json {
                print(write ? "\(created) flag(s) created" : "\(created) flag(s) would be created: run again with --write to apply")
            }
        }
    }
}

func printError(_ text: String) {
    var line = Array((text + "\n").utf8)
    _ = line.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
}
