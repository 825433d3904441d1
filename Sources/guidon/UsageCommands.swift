import ArgumentParser
import GuidonJSON

/// `guidon usage TENANT [FEATURE]` (the query socket) and `guidon usage reset TENANT FEATURE`
/// (the admin socket, audited).
struct Usage: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Shows a tenant's usage of its metered features, or resets one (audited).",
        subcommands: [UsageShow.self, UsageReset.self],
        defaultSubcommand: UsageShow.self
    )
}

struct UsageShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Shows how much of each limit a tenant has used (counts nothing): `guidon usage TENANT [FEATURE]`.")

    @OptionGroup var client: ClientOptions

    @Argument(help: "The tenant (its tenantId).")
    var tenant: String

    @Argument(help: "One metered feature (default: every metered feature the tenant has).")
    var feature: String?

    @Option(name: .long, help: "The user (targeting key), for limits counted per user.")
    var user: String?

    func run() throws {
        var context: JSONObject = ["tenantId": .string(tenant)]
        if let user { context["targetingKey"] = .string(user) }
        var request: JSONObject = ["op": "usage", "context": .object(context)]
        if let feature { request["feature"] = .string(feature) }
        let (reply, raw) = try client.ask(request)
        if client.json { return printLine(raw) }
        print("tenant \(tenant)\(user.map { ", user \($0)" } ?? "")")
        let features = feature == nil ? (reply["features"]?.array ?? []) : [.object(reply)]
        if features.isEmpty { print("  no metered features") }
        for case .object(let entry) in features {
            print(UsageShow.describe(entry))
        }
    }

    /// `  video_generation: 7 of 10 today (3 left; resets 2026-12-08T00:00:00Z)`, one line per limit.
    static func describe(_ entry: JSONObject) -> String {
        let name = entry["feature"]?.string ?? "?"
        if entry["entitled"] == .bool(false) { return "  \(name): not entitled" }
        if entry["unlimited"] == .bool(true) { return "  \(name): unlimited" }
        var lines: [String] = []
        for case .object(let limit) in entry["limits"]?.array ?? [] {
            let used = limit["used"].flatMap { $0 == .null ? nil : text($0) } ?? "?"
            let left = limit["remaining"].flatMap { $0 == .null ? nil : text($0) } ?? "?"
            let per = text(limit["per"])
            var line = "  \(name): \(used) of \(text(limit["max"])) this \(per) (\(left) left; resets \(text(limit["resetAt"])))"
            let notes = [text(limit["scope"]) == "user" ? "per user" : nil, text(limit["mode"]) != "hard" ? text(limit["mode"]) : nil,
                         limit["over"] == .bool(true) ? "over" : nil].compactMap { $0 }
            if !notes.isEmpty { line += " [\(notes.joined(separator: ", "))]" }
            lines.append(line)
        }
        if entry["degraded"] == .bool(true) { lines.append("  (the store did not answer in time: counts unknown)") }
        return lines.joined(separator: "\n")
    }
}

struct UsageReset: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset",
        abstract: "Forgets a tenant's counts of one feature, in every window (through the admin socket; audited).")

    @OptionGroup var admin: AdminOptions

    @Argument(help: "The tenant (its tenantId).")
    var tenant: String

    @Argument(help: "The metered feature.")
    var feature: String

    @Option(name: .long, help: "Only this user's counts (targeting key); default: the tenant's and every user's.")
    var user: String?

    @Option(name: .long, help: "Who resets (required; recorded in the audit log).")
    var by: String

    @Option(name: .long, help: "Why (required; recorded in the audit log).")
    var reason: String

    func validate() throws {
        if admin.file != nil { throw ValidationError("usage reset talks to the daemon: --file does not apply") }
    }

    func run() throws {
        var request: JSONObject = [
            "op": "usage.reset", "tenant": .string(tenant), "feature": .string(feature), "by": .string(by), "reason": .string(reason),
        ]
        if let user { request["user"] = .string(user) }
        let backend = try SocketBackend(path: admin.socketPath, timeout: admin.timeout)
        let reply: JSONObject
        do {
            reply = try backend.send(request)
        } catch let failure as AdminFailure {
            if admin.json { print(JSONWriter.string(.object(failure.reply))) }
            throw CLIError(failure.description)
        }
        if admin.json { return print(JSONWriter.string(.object(reply))) }
        print("reset \(feature) for tenant \(tenant)\(user.map { ", user \($0)" } ?? ""): \(text(reply["removed"])) counts removed")
    }
}
