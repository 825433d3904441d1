import ArgumentParser
import GuidonEditing
import GuidonFiles
import GuidonJSON

#if canImport(Glibc)
import Glibc
#endif

struct Flags: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Changes flags: through the daemon's admin socket, or in a flag file (--file).",
        discussion: """
            Every change is validated as the daemon validates its file, and refused whole (with every \
            problem) if the result would not load. A change names the revision it is based on \
            (--if-revision); without it the current revision is fetched just before the change, so \
            a change made in between is refused (CONFLICT) rather than overwritten. --force skips \
            the check; --dry-run prints the diff and writes nothing. Through the daemon, every \
            attempt is audited (who, why, before and after); see `guidon flags history`.
            """,
        subcommands: [
            Create.self, Delete.self, Enable.self, Disable.self, Default.self, Rollout.self, Target.self, Untarget.self,
            Split.self, Schedule.self, Set.self, Get.self, History.self,
        ]
    )
}

/// Runs one write and prints what changed.
func perform(_ request: JSONObject, _ admin: AdminOptions, _ write: WriteOptions) throws {
    var backend = try admin.backend()
    do {
        let reply = try backend.write(write.decorate(request))
        if admin.json { return print(JSONWriter.string(.object(reply))) }
        if let diff = reply["diff"]?.string, !diff.isEmpty { print(diff, terminator: "") }
        print(describeWrite(reply))
    } catch let failure as AdminFailure {
        if admin.json { print(JSONWriter.string(.object(failure.reply))) }
        throw CLIError(failure.description)
    }
}

extension Flags {
    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Adds a flag (a boolean on/off flag, off by default, unless told otherwise).")

        @Argument(help: "The flag key.") var flag: String
        @Option(help: "The variants as a JSON object, e.g. '{\"red\":\"#f00\",\"blue\":\"#00f\"}' (default: {\"on\":true,\"off\":false}).")
        var variants: String?
        @Option(name: .customLong("default"), help: "The default variant (default: off, or the first variant).") var defaultVariant: String?
        @Option(help: "A targeting rule (JSON Logic) as JSON.") var targeting: String?
        @Option(help: "A metadata member, name=value (repeatable).") var metadata: [String] = []
        @Flag(help: "Create it disabled.") var disabled = false
        @Option(help: "The whole definition as JSON instead (state, variants, …).") var definition: String?
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            let body: JSONValue
            if let definition {
                body = try parseJSON(definition, "--definition")
            } else {
                let variants = try variants.map { try parseJSON($0, "--variants") } ?? ["on": true, "off": false]
                var object: JSONObject = ["state": .string(disabled ? "DISABLED" : "ENABLED"), "variants": variants]
                let names = variants.object?.keys ?? []
                if let name = defaultVariant ?? (names.contains("off") ? "off" : names.first) { object["defaultVariant"] = .string(name) }
                if let targeting { object["targeting"] = try parseJSON(targeting, "--targeting") }
                if !metadata.isEmpty {
                    var members = JSONObject()
                    for entry in metadata {
                        let (name, value) = try pair(entry, "--metadata")
                        members[name] = scalar(value)
                    }
                    object["metadata"] = .object(members)
                }
                body = .object(object)
            }
            try perform(["op": "flags.create", "flag": .string(flag), "definition": body], admin, write)
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Removes a flag.")
        @Argument(help: "The flag key.") var flag: String
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions
        func run() throws { try perform(["op": "flags.delete", "flag": .string(flag)], admin, write) }
    }

    struct Enable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Turns a flag on (state ENABLED).")
        @Argument(help: "The flag key.") var flag: String
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions
        func run() throws { try perform(["op": "flags.enable", "flag": .string(flag)], admin, write) }
    }

    struct Disable: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The kill switch: state DISABLED (every evaluation gets the caller's default).")
        @Argument(help: "The flag key.") var flag: String
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions
        func run() throws { try perform(["op": "flags.disable", "flag": .string(flag)], admin, write) }
    }

    struct Default: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Sets the default variant.")
        @Argument(help: "The flag key.") var flag: String
        @Argument(help: "The variant.") var variant: String
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions
        func run() throws { try perform(["op": "flags.setDefault", "flag": .string(flag), "variant": .string(variant)], admin, write) }
    }

    struct Rollout: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serves a variant to a percentage of users (by targeting key); raising it keeps everyone already in.")
        @Argument(help: "The flag key.") var flag: String
        @Argument(help: "The percentage, 0 to 100 (up to two decimals; a trailing % is fine).") var percentage: String
        @Option(help: "The variant rolled out (default: the true one).") var variant: String?
        @Option(help: "The variant everyone else gets (default: the false one, or the default variant).") var other: String?
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            let text = percentage.hasSuffix("%") ? String(percentage.dropLast()).trimmingCharacters() : percentage
            guard let value = Double(text), value.isFinite else {
                throw CLIError("the percentage must be a number from 0 to 100, not \(percentage.debugDescription)")
            }
            var request: JSONObject = ["op": "flags.rollout", "flag": .string(flag), "percentage": .double(value)]
            if value == value.rounded(), abs(value) < 1e9 { request["percentage"] = .int(Int64(value)) }
            if let variant { request["variant"] = .string(variant) }
            if let other { request["otherVariant"] = .string(other) }
            try perform(request, admin, write)
        }
    }

    /// Who a targeting command is about.
    struct SubjectOptions: ParsableArguments {
        @Option(name: .customLong("user"), help: "A user id: the targeting key (repeatable).") var users: [String] = []
        @Option(name: .customLong("domain"), help: "An e-mail domain of the email attribute (repeatable).") var domains: [String] = []
        @Option(help: "Another context attribute (tier, plan, country, tenantId…), with --value.") var attribute: String?
        @Option(name: .customLong("value"), help: "A value of --attribute (repeatable).") var values: [String] = []

        func members() throws -> JSONObject {
            let kinds = [!users.isEmpty, !domains.isEmpty, attribute != nil || !values.isEmpty].filter { $0 }.count
            guard kinds == 1 else { throw CLIError("name the subjects with exactly one of --user, --domain, or --attribute with --value") }
            if !users.isEmpty { return ["users": .array(users.map(JSONValue.string))] }
            if !domains.isEmpty { return ["domains": .array(domains.map(JSONValue.string))] }
            guard let attribute, !values.isEmpty else { throw CLIError("--attribute needs at least one --value (and --value an --attribute)") }
            return ["attribute": .string(attribute), "values": .array(values.map(JSONValue.string))]
        }
    }

    struct Target: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Gives users, e-mail domains or attribute values a variant (an allow-list, or with --deny a deny-list).",
            discussion: "Targeting rules answer before a rollout or split; deny-lists answer first of all.")
        @Argument(help: "The flag key.") var flag: String
        @OptionGroup var subjects: SubjectOptions
        @Option(help: "The variant they get (default: the true one, or with --deny the false or default one).") var variant: String?
        @Flag(help: "A deny-list: these subjects are pinned to the off variant, before every other rule.") var deny = false
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            var request: JSONObject = ["op": "flags.target", "flag": .string(flag)]
            for (key, value) in try subjects.members() { request[key] = value }
            if let variant { request["variant"] = .string(variant) }
            if deny { request["deny"] = true }
            try perform(request, admin, write)
        }
    }

    struct Untarget: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stops singling out users, e-mail domains or attribute values.")
        @Argument(help: "The flag key.") var flag: String
        @OptionGroup var subjects: SubjectOptions
        @Option(help: "Only from the rule for this variant.") var variant: String?
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            var request: JSONObject = ["op": "flags.untarget", "flag": .string(flag)]
            for (key, value) in try subjects.members() { request[key] = value }
            if let variant { request["variant"] = .string(variant) }
            try perform(request, admin, write)
        }
    }

    struct Split: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Splits users between variants by weight (an A/B/n test): guidon flags split KEY control=50 new=50.")
        @Argument(help: "The flag key.") var flag: String
        @Argument(help: "variant=weight (integer weights, at least two).") var weights: [String]
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            var object = JSONObject()
            for entry in weights {
                let (name, text) = try pair(entry, "a weight")
                guard let weight = Int64(text) else { throw CLIError("the weight of \(name) must be an integer, not \(text.debugDescription)") }
                object[name] = .int(weight)
            }
            try perform(["op": "flags.split", "flag": .string(flag), "weights": .object(object)], admin, write)
        }
    }

    struct Schedule: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serves a variant between two instants (ISO 8601), written as a $flagd.timestamp rule: no timer, no rewrite later.")
        @Argument(help: "The flag key.") var flag: String
        @Option(help: "From (inclusive), e.g. 2026-11-27T00:00:00Z or 2026-11-27T09:00+01:00.") var start: String?
        @Option(help: "Until (exclusive).") var end: String?
        @Option(help: "The variant to serve (default: the true one).") var variant: String?
        @Flag(help: "Remove every schedule instead.") var clear = false
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            var request: JSONObject = ["op": "flags.schedule", "flag": .string(flag)]
            if clear {
                request["clear"] = true
            } else {
                for (name, value) in [("start", start), ("end", end)] {
                    guard let value else { continue }
                    guard Instant.parse(value) != nil else {
                        throw CLIError("--\(name) is not a date-time: \(value.debugDescription) (write it as 2026-11-27T09:00:00Z or 2026-11-27T10:00:00+01:00)")
                    }
                    request[name] = .string(value)
                }
                if let variant { request["variant"] = .string(variant) }
            }
            try perform(request, admin, write)
        }
    }

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replaces a flag's whole definition, or sets or removes one metadata member.")
        @Argument(help: "The flag key.") var flag: String
        @Option(help: "The new definition as JSON.") var definition: String?
        @Option(help: "A metadata member, name=value (a number or true/false is stored as such).") var metadata: String?
        @Option(name: .customLong("remove-metadata"), help: "A metadata member to remove.") var removeMetadata: String?
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            let given = [definition != nil, metadata != nil, removeMetadata != nil].filter { $0 }.count
            guard given == 1 else { throw CLIError("give exactly one of --definition, --metadata or --remove-metadata") }
            var request: JSONObject = ["flag": .string(flag)]
            if let definition {
                request["op"] = "flags.replace"
                request["definition"] = try parseJSON(definition, "--definition")
            } else if let metadata {
                let (name, value) = try pair(metadata, "--metadata")
                request["op"] = "flags.setMetadata"
                request["name"] = .string(name)
                request["value"] = scalar(value)
            } else if let removeMetadata {
                request["op"] = "flags.removeMetadata"
                request["name"] = .string(removeMetadata)
            }
            try perform(request, admin, write)
        }
    }

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Prints a flag's definition (as in the file) and the file's revision.")
        @Argument(help: "The flag key (none: the file's revision and flag keys).") var flag: String?
        @OptionGroup var admin: AdminOptions

        func run() throws {
            var backend = try admin.backend()
            var request: JSONObject = ["op": "flags.get"]
            if let flag { request["flag"] = .string(flag) }
            do {
                let reply = try backend.send(request)
                if admin.json { return print(JSONWriter.string(.object(reply))) }
                if let definition = reply["definition"] {
                    print("\(JSONWriter.string(.string(flag ?? ""))): \(pretty(definition))")
                } else {
                    for key in reply["flags"]?.array ?? [] { print(key.string ?? "") }
                }
                print("revision \(reply["revision"]?.string ?? "?")")
            } catch let failure as AdminFailure {
                if admin.json { print(JSONWriter.string(.object(failure.reply))) }
                throw CLIError(failure.description)
            }
        }
    }

    struct History: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Shows the audit log: every change attempt (applied or refused), who, why, and what changed.")
        @Argument(help: "Only this flag.") var flag: String?
        @Option(help: "Only from this instant on (ISO 8601).") var since: String?
        @Option(help: "At most this many records (the latest).") var limit: Int = 100
        @Option(help: "Read this audit log file directly instead of asking the daemon.") var log: String?
        @OptionGroup var admin: AdminOptions

        func run() throws {
            var sinceSeconds: Int64?
            if let since {
                guard let parsed = Instant.parse(since) else { throw CLIError("--since is not a date-time: \(since.debugDescription)") }
                sinceSeconds = parsed
            }
            var records: [JSONValue]
            if let log {
                let bytes: [UInt8]
                do { bytes = try DocumentFile.read(log) } catch { throw CLIError(error.message) }
                records = bytes.split(separator: UInt8(ascii: "\n")).compactMap { try? JSONParser().parse(Array($0)) }.filter { record in
                    guard case .object(let r) = record, r["document"]?.string == "flags" else { return false }
                    if let flag, r["flag"]?.string != flag { return false }
                    if let sinceSeconds, let time = r["time"]?.string.flatMap(Instant.parse), time < sinceSeconds { return false }
                    return true
                }
                records = Array(records.suffix(max(1, limit)))
            } else {
                var backend = try admin.backend()
                var request: JSONObject = ["op": "flags.history", "limit": .int(Int64(max(1, limit)))]
                if let flag { request["flag"] = .string(flag) }
                if let since { request["since"] = .string(since) }
                do {
                    records = try backend.send(request)["records"]?.array ?? []
                } catch let failure as AdminFailure {
                    if admin.json { print(JSONWriter.string(.object(failure.reply))) }
                    throw CLIError(failure.description)
                }
            }
            for case .object(let r) in records {
                if admin.json {
                    print(JSONWriter.string(.object(r)))
                    continue
                }
                let actor = r["actor"]?.object
                let who = [r["by"]?.string, actor.map { "\($0["user"]?.string ?? "uid \(text($0["uid"]))") pid \(text($0["pid"]))" }]
                    .compactMap { $0 }.joined(separator: " / ")
                let what = r["summary"]?.string ?? "\(text(r["action"])) \(r["flag"]?.string ?? "")"
                var line = "\(text(r["time"]))  \(text(r["result"]))  \(what)  [\(who)]"
                if r["force"] == .bool(true) { line += " (forced)" }
                if let reason = r["reason"]?.string { line += " — \(reason)" }
                if case .object(let error)? = r["error"] { line += "\n    \(text(error["code"])): \(text(error["message"]))" }
                print(line)
            }
        }
    }
}

// MARK: - Argument helpers

func parseJSON(_ text: String, _ option: String) throws -> JSONValue {
    do {
        return try JSONParser(duplicateKeys: .reject).parse(text)
    } catch {
        throw CLIError("\(option) is not valid JSON: \(error)")
    }
}

/// `name=value`.
func pair(_ entry: String, _ what: String) throws -> (String, String) {
    guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else {
        throw CLIError("\(what) must be written name=value, not \(entry.debugDescription)")
    }
    return (String(entry[..<equals]), String(entry[entry.index(after: equals)...]))
}

/// A command-line value as JSON: true/false and numbers as such, anything else a string.
func scalar(_ text: String) -> JSONValue {
    if text == "true" { return true }
    if text == "false" { return false }
    if let int = Int64(text), String(int) == text { return .int(int) }
    if let double = Double(text), double.isFinite, text.contains(".") { return .double(double) }
    return .string(text)
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
