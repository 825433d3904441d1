import ArgumentParser
import GuidonEditing
import GuidonJSON

// `guidon tenants|plans|features`: the entitlements file, changed through the daemon's admin
// socket (ops `entitlements.*`) or directly with --file, with the revisions, dry runs, minimal
// edits and audit records of `guidon flags`.

private let entitlementsDiscussion = """
    Every change is validated as the daemon validates its entitlements file, and refused whole \
    (with every problem) if the result would not load. A change names the revision it is based \
    on (--if-revision); without it the current revision is fetched just before the change, so a \
    change made in between is refused (CONFLICT). --force skips the check; --dry-run prints the \
    diff and writes nothing. Through the daemon, every attempt is audited (who, why, before and \
    after); see `guidon tenants history`. With --file PATH the entitlements file is edited \
    directly (no daemon).
    """

struct Tenants: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Shows and changes tenants: their plan, status and per-tenant overrides.",
        discussion: entitlementsDiscussion,
        subcommands: [Show.self, SetPlan.self, SetStatus.self, Enable.self, Disable.self, Clear.self, Bulk.self, Delete.self, History.self]
    )
}

struct Plans: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Shows and changes plans and what they grant.", discussion: entitlementsDiscussion,
        subcommands: [Show.self, Create.self, Update.self, Grant.self, Revoke.self, Timezone.self])
}

struct Features: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Adds and removes entitlement features.", discussion: entitlementsDiscussion,
        subcommands: [Show.self, Add.self, Remove.self])
}

/// Options of an override: `enable` and `disable`, and `bulk`.
struct OverrideOptions: ParsableArguments {
    @Option(help: "Why (default: --reason): kept in the override and shown with the answer.") var notes: String?
    @Option(help: "When the override stops applying (ISO 8601, e.g. 2027-01-01 or 2027-01-01T00:00:00Z).") var expires: String?
    @Option(help: "When it was decided (default: now).") var at: String?
    @Option(help: "A configuration feature's settings for this tenant, as a JSON object merged over what it would have.") var config: String?

    func members() throws -> JSONObject {
        var members = JSONObject()
        if let notes { members["notes"] = .string(notes) }
        for (name, value, option) in [("expiresAt", expires, "--expires"), ("at", at, "--at")] {
            guard let value else { continue }
            guard Instant.parse(value) != nil else {
                throw CLIError("\(option) is not a date-time: \(value.debugDescription) (write it as 2027-01-01 or 2027-01-01T00:00:00Z)")
            }
            members[name] = .string(value)
        }
        if let config {
            let value = try parseJSON(config, "--config")
            guard value.object != nil else { throw CLIError("--config must be a JSON object, not \(value.typeName)") }
            members["config"] = value
        }
        return members
    }
}

/// Sends a read request and returns its reply, printing the error (and `--json`) on failure.
func ask(_ request: JSONObject, _ admin: AdminOptions) throws -> JSONObject {
    var backend = try admin.backend()
    do {
        return try backend.send(request)
    } catch let failure as AdminFailure {
        if admin.json { print(JSONWriter.string(.object(failure.reply))) }
        throw CLIError(failure.description)
    }
}

extension Tenants {
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Prints every feature a tenant has, its value and why (the daemon's `entitlements` answer).",
            discussion: "With --file, the answer is computed from the file, as guidond would serve it (and says so).")
        @Argument(help: "The tenant id.") var tenant: String
        @Flag(help: "Print the tenant's definition as the file holds it instead.") var definition = false
        @OptionGroup var admin: AdminOptions

        func run() throws {
            if definition {
                let reply = try ask(["op": "entitlements.get", "tenant": .string(tenant)], admin)
                if admin.json { return print(JSONWriter.string(.object(reply))) }
                print("\(JSONWriter.string(.string(tenant))): \(pretty(reply["definition"] ?? .null))")
                return print("revision \(reply["revision"]?.string ?? "?")")
            }
            let reply = try ask(["op": "entitlements", "tenant": .string(tenant)], admin)
            if admin.json { return print(JSONWriter.string(.object(reply))) }
            for line in tenantView(reply) { print(line) }
        }
    }

    struct SetPlan: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-plan", abstract: "Puts a tenant on a plan (a tenant the file does not have yet is created, active).")
        @Argument(help: "The tenant id.") var tenant: String
        @Argument(help: "The plan's name.") var plan: String
        @Option(help: "Its status too: active, trialing, past_due, canceled or expired.") var status: String?
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            var request: JSONObject = ["op": "entitlements.setPlan", "tenant": .string(tenant), "plan": .string(plan)]
            if let status { request["status"] = .string(status) }
            try perform(request, admin, write)
        }
    }

    struct SetStatus: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-status", abstract: "Sets a tenant's subscription status (and when its plan's grants stop).")
        @Argument(help: "The tenant id.") var tenant: String
        @Argument(help: "active, trialing, past_due, canceled or expired.") var status: String
        @Option(name: .customLong("valid-until"), help: "When the plan's grants stop (ISO 8601).") var validUntil: String?
        @Flag(name: .customLong("no-valid-until"), help: "Remove validUntil: the grants apply while the status allows.") var noValidUntil = false
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            var request: JSONObject = ["op": "entitlements.setStatus", "tenant": .string(tenant), "status": .string(status)]
            if validUntil != nil && noValidUntil { throw CLIError("give --valid-until or --no-valid-until, not both") }
            if let validUntil {
                guard Instant.parse(validUntil) != nil else { throw CLIError("--valid-until is not a date-time: \(validUntil.debugDescription)") }
                request["validUntil"] = .string(validUntil)
            }
            if noValidUntil { request["validUntil"] = .null }
            try perform(request, admin, write)
        }
    }

    struct Enable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Turns a feature on for one tenant (an override, whatever its plan).")
        @Argument(help: "The tenant id.") var tenant: String
        @Argument(help: "The feature key.") var feature: String
        @OptionGroup var override: OverrideOptions
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            var request: JSONObject = ["op": "entitlements.enable", "tenant": .string(tenant), "feature": .string(feature)]
            for (key, value) in try override.members() { request[key] = value }
            try perform(request, admin, write)
        }
    }

    struct Disable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Turns a feature off for one tenant (an override, whatever its plan).")
        @Argument(help: "The tenant id.") var tenant: String
        @Argument(help: "The feature key.") var feature: String
        @OptionGroup var override: OverrideOptions
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            var request: JSONObject = ["op": "entitlements.disable", "tenant": .string(tenant), "feature": .string(feature)]
            for (key, value) in try override.members() where key != "config" { request[key] = value }
            try perform(request, admin, write)
        }
    }

    struct Clear: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Removes a tenant's override of a feature: its plan decides again.")
        @Argument(help: "The tenant id.") var tenant: String
        @Argument(help: "The feature key.") var feature: String
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            try perform(["op": "entitlements.clear", "tenant": .string(tenant), "feature": .string(feature)], admin, write)
        }
    }

    struct Bulk: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sets or clears overrides of several features and/or tenants in one change (one revision).",
            discussion: """
                Every tenant named gets every change: `guidon tenants bulk 5 --enable voice_ai --disable analytics` \
                (several features of one tenant), `guidon tenants bulk 5 acme globex --enable voice_ai` (one feature \
                of many tenants). The change is refused whole if any part of it is.
                """)
        @Argument(help: "The tenant ids.") var tenants: [String]
        @Option(help: "A feature to turn on (repeatable).") var enable: [String] = []
        @Option(help: "A feature to turn off (repeatable).") var disable: [String] = []
        @Option(help: "A feature whose override to remove (repeatable).") var clear: [String] = []
        @OptionGroup var override: OverrideOptions
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            guard !tenants.isEmpty else { throw CLIError("name at least one tenant") }
            guard !(enable.isEmpty && disable.isEmpty && clear.isEmpty) else { throw CLIError("give at least one --enable, --disable or --clear") }
            let members = try override.members()
            var changes: [JSONValue] = []
            for tenant in tenants {
                for (features, enabled) in [(enable, true), (disable, false)] {
                    for feature in features {
                        var change: JSONObject = ["tenant": .string(tenant), "feature": .string(feature), "enabled": .bool(enabled)]
                        for (key, value) in members where enabled || key != "config" { change[key] = value }
                        changes.append(.object(change))
                    }
                }
                for feature in clear { changes.append(["tenant": .string(tenant), "feature": .string(feature), "clear": true]) }
            }
            try perform(["op": "entitlements.bulk", "changes": .array(changes)], admin, write)
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Removes a tenant from the entitlements file.")
        @Argument(help: "The tenant id.") var tenant: String
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions
        func run() throws { try perform(["op": "entitlements.deleteTenant", "tenant": .string(tenant)], admin, write) }
    }

    struct History: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Shows the audit log's records of entitlements changes (of one tenant, if named).")
        @Argument(help: "Only this tenant.") var tenant: String?
        @Option(help: "Only from this instant on (ISO 8601).") var since: String?
        @Option(help: "At most this many records (the latest).") var limit: Int = 100
        @OptionGroup var admin: AdminOptions

        func run() throws {
            var request: JSONObject = ["op": "entitlements.history", "limit": .int(Int64(max(1, limit)))]
            if let tenant { request["tenant"] = .string(tenant) }
            if let since { request["since"] = .string(since) }
            let records = try ask(request, admin)["records"]?.array ?? []
            for case .object(let r) in records { print(admin.json ? JSONWriter.string(.object(r)) : historyLine(r)) }
        }
    }
}

/// `plans show` and `features show`: one entry's definition as the file holds it, or (without a
/// name) the file's contents.
private func showEntry(_ kind: String, _ name: String?, _ admin: AdminOptions) throws {
    var request: JSONObject = ["op": "entitlements.get"]
    if let name { request[kind] = .string(name) }
    let reply = try ask(request, admin)
    if admin.json { return print(JSONWriter.string(.object(reply))) }
    printContents(reply, entry: name)
}

extension Plans {
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Prints a plan's definition; without one, the plans, features and number of tenants.")
        @Argument(help: "The plan's name.") var plan: String?
        @OptionGroup var admin: AdminOptions

        func run() throws { try showEntry("plan", plan, admin) }
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Adds a plan.")
        @Argument(help: "The plan's name.") var plan: String
        @Option(name: .customLong("display-name"), help: "Its name for people.") var displayName: String?
        @Option(help: "Its rank (lowest first), for \"which plan would grant it\".") var order: Int?
        @Option(help: "A plan whose grants it inherits.") var inherits: String?
        @Option(help: "A feature it grants (repeatable; \"*\" for every feature).") var grant: [String] = []
        @Option(help: "What it is.") var description: String?
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            var definition = JSONObject()
            if let displayName { definition["displayName"] = .string(displayName) }
            if let description { definition["description"] = .string(description) }
            if let order { definition["order"] = .int(Int64(order)) }
            if let inherits { definition["inherits"] = .string(inherits) }
            if !grant.isEmpty { definition["grants"] = .object(JSONObject(grant.map { ($0, JSONValue.bool(true)) })) }
            try perform(["op": "entitlements.createPlan", "plan": .string(plan), "definition": .object(definition)], admin, write)
        }
    }

    struct Update: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Changes a plan's display name, order, parent plan or description (its grants: grant and revoke).",
            discussion: "Only what is given changes; --no-… removes that member. An --inherits naming a plan that inherits from this one is refused.")
        @Argument(help: "The plan's name.") var plan: String
        @Option(name: .customLong("display-name"), help: "Its name for people.") var displayName: String?
        @Flag(name: .customLong("no-display-name"), help: "Remove displayName (the plan's name is shown).") var noDisplayName = false
        @Option(help: "Its rank (lowest first), for \"which plan would grant it\".") var order: Int?
        @Flag(name: .customLong("no-order"), help: "Remove order (the plan ranks last).") var noOrder = false
        @Option(help: "A plan whose grants it inherits.") var inherits: String?
        @Flag(name: .customLong("no-inherits"), help: "Inherit from no plan.") var noInherits = false
        @Option(help: "What it is.") var description: String?
        @Flag(name: .customLong("no-description"), help: "Remove description.") var noDescription = false
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            var changes = JSONObject()
            func change(_ name: String, _ option: String, _ value: JSONValue?, remove: Bool) throws {
                if value != nil && remove { throw CLIError("give --\(option) or --no-\(option), not both") }
                if let value { changes[name] = value }
                if remove { changes[name] = .null }
            }
            try change("displayName", "display-name", displayName.map(JSONValue.string), remove: noDisplayName)
            try change("order", "order", order.map { .int(Int64($0)) }, remove: noOrder)
            try change("inherits", "inherits", inherits.map(JSONValue.string), remove: noInherits)
            try change("description", "description", description.map(JSONValue.string), remove: noDescription)
            guard !changes.isEmpty else {
                throw CLIError("nothing to change: give --display-name, --order, --inherits or --description (or --no-… to remove one)")
            }
            try perform(["op": "entitlements.updatePlan", "plan": .string(plan), "changes": .object(changes)], admin, write)
        }
    }

    struct Timezone: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sets the entitlements file's time zone: usage-limit windows (day, week, month) follow its calendar.",
            discussion: "An IANA name such as Europe/Paris, or UTC; one the system's zone database does not know is refused.")
        @Argument(help: "The zone.") var zone: String
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            try perform(["op": "entitlements.setTimezone", "timezone": .string(zone)], admin, write)
        }
    }

    struct Grant: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Makes a plan grant a feature (with a configuration or limits, if given).")
        @Argument(help: "The plan's name.") var plan: String
        @Argument(help: "The feature key (\"*\": every feature).") var feature: String
        @Option(help: "The configuration it grants, as a JSON object merged over the inherited one or the default.") var config: String?
        @Option(help: "Its usage limits, as a JSON array.") var limits: String?
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            var grant: JSONValue = true
            if config != nil || limits != nil {
                var object = JSONObject()
                if let config { object["config"] = try parseJSON(config, "--config") }
                if let limits { object["limits"] = try parseJSON(limits, "--limits") }
                grant = .object(object)
            }
            try perform(["op": "entitlements.grant", "plan": .string(plan), "feature": .string(feature), "grant": grant], admin, write)
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Makes a plan stop granting a feature (its own grant removed, or false over an inherited one).")
        @Argument(help: "The plan's name.") var plan: String
        @Argument(help: "The feature key.") var feature: String
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            try perform(["op": "entitlements.revoke", "plan": .string(plan), "feature": .string(feature)], admin, write)
        }
    }
}

extension Features {
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Prints a feature's definition; without one, the features.")
        @Argument(help: "The feature key.") var feature: String?
        @OptionGroup var admin: AdminOptions

        func run() throws { try showEntry("feature", feature, admin) }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Adds a feature (boolean, off by default, unless told otherwise).")
        @Argument(help: "The feature key.") var feature: String
        @Option(help: "What it is (admin views show it).") var description: String?
        @Option(help: "A category, for grouping.") var category: String?
        @Option(name: .customLong("default"), help: "false (default), true (a core feature: on for every tenant), or a JSON object (a configuration feature).")
        var defaultValue: String = "false"
        @Option(help: "Its own usage limits, as a JSON array.") var limits: String?
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            var definition = JSONObject()
            if let description { definition["description"] = .string(description) }
            if let category { definition["category"] = .string(category) }
            definition["default"] = try parseJSON(defaultValue, "--default")
            if let limits { definition["limits"] = try parseJSON(limits, "--limits") }
            try perform(["op": "entitlements.addFeature", "feature": .string(feature), "definition": .object(definition)], admin, write)
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Removes a feature (refused while plans grant it or tenants override it, unless --cascade).")
        @Argument(help: "The feature key.") var feature: String
        @Flag(help: "Also remove every plan's grant and every tenant's override of it.") var cascade = false
        @OptionGroup var admin: AdminOptions
        @OptionGroup var write: WriteOptions

        func run() throws {
            var request: JSONObject = ["op": "entitlements.removeFeature", "feature": .string(feature)]
            if cascade { request["cascade"] = true }
            try perform(request, admin, write)
        }
    }
}

// MARK: - Output

/// `entitlements.get` for people: an entry's definition, or the document's contents.
func printContents(_ reply: JSONObject, entry: String?) {
    if let entry {
        print("\(JSONWriter.string(.string(entry))): \(pretty(reply["definition"] ?? .null))")
    } else {
        for (name, label) in [("plans", "plans"), ("features", "features")] {
            print("\(label): \((reply[name]?.array ?? []).compactMap(\.string).joined(separator: ", "))")
        }
        print("tenants: \(text(reply["tenants"]))")
    }
    print("revision \(reply["revision"]?.string ?? "?")")
}

/// The `entitlements` view for people: a heading, then one line per feature with its value and why:
/// `voice_ai  on   override by sam.okafor 2026-12-01: "premium trial"`.
func tenantView(_ view: JSONObject) -> [String] {
    let id = view["tenant"]?.string ?? "?"
    var lines: [String] = []
    if view["found"] == .bool(true) {
        var heading = "tenant \(id): plan \(text(view["plan"]))"
        if let name = view["planName"]?.string, name != view["plan"]?.string { heading += " (\(name))" }
        heading += ", \(text(view["status"]))"
        if let until = view["validUntil"]?.string { heading += " until \(until)" }
        heading += view["planApplies"] == .bool(true) ? "" : " (the plan's grants do not apply)"
        lines.append(heading)
    } else {
        lines.append("tenant \(id): not in the entitlements file (every feature's default)")
    }
    var rows: [(String, String, String)] = []
    for case (let key, .object(let answer)) in view["features"]?.object ?? JSONObject() {
        let value: String
        switch answer["value"] {
        case .bool(let on)?: value = on ? "on" : "off"
        case let other?: value = JSONWriter.string(other)
        case nil: value = "-"
        }
        rows.append((key, value, why(answer)))
    }
    let keyWidth = rows.map(\.0.count).max() ?? 0
    let valueWidth = min(rows.map(\.1.count).max() ?? 0, 24)
    for (key, value, why) in rows {
        let paddedKey = key.padding(toLength: keyWidth)
        let paddedValue = value.count >= valueWidth ? value : value.padding(toLength: valueWidth)
        lines.append("\(paddedKey)  \(paddedValue)  \(why)")
    }
    if let source = view["computedFrom"]?.string { lines.append("(computed from \(source), not asked of the daemon)") }
    return lines
}

/// Why a feature has its value: an override as `override by WHO DATE: "NOTES"`, else the
/// answer's own sentence.
private func why(_ answer: JSONObject) -> String {
    let metadata = answer["metadata"]?.object ?? JSONObject()
    guard metadata["source"] == "override" else { return answer["why"]?.string ?? text(answer["variant"]) }
    var text = "override"
    if let by = metadata["by"]?.string { text += " by \(by)" }
    if let at = metadata["at"]?.string { text += " \(at.prefix(10))" }
    if let until = metadata["expiresAt"]?.string { text += " until \(until.prefix(10))" }
    if let notes = metadata["notes"]?.string { text += ": \(JSONWriter.string(.string(notes)))" }
    return text
}

/// One audit record for people (as `guidon flags history` prints them).
func historyLine(_ r: JSONObject) -> String {
    let actor = r["actor"]?.object
    let who = [r["by"]?.string, actor.map { "\($0["user"]?.string ?? "uid \(text($0["uid"]))") pid \(text($0["pid"]))" }]
        .compactMap { $0 }.joined(separator: " / ")
    let what = r["summary"]?.string ?? "\(text(r["action"])) \(r["flag"]?.string ?? "")"
    var line = "\(text(r["time"]))  \(text(r["result"]))  \(what)  [\(who)]"
    if r["force"] == .bool(true) { line += " (forced)" }
    if let reason = r["reason"]?.string { line += " — \(reason)" }
    if case .object(let error)? = r["error"] { line += "\n    \(text(error["code"])): \(text(error["message"]))" }
    return line
}

extension String {
    func padding(toLength length: Int) -> String {
        count >= length ? self : self + String(repeating: " ", count: length - count)
    }
}
