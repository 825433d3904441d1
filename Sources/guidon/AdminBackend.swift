import ArgumentParser
import GuidonEditing
import GuidonEngine
import GuidonEntitlements
import GuidonFiles
import GuidonJSON
import GuidonProtocol

#if canImport(Glibc)
import Glibc
#endif

/// Where `guidon flags` sends its requests: the daemon's admin socket, or a flag file edited
/// directly (`--file`, for CI pipelines and GitOps repositories) through the same editing,
/// validation and atomic write as the daemon's.
struct AdminOptions: ParsableArguments {
    @Option(name: .customLong("admin-socket"), help: "The daemon's admin socket (default: $GUIDON_ADMIN_SOCKET or /run/guidon/admin.sock).")
    var adminSocket: String?

    @Option(name: .long, help: "Edit this flag file directly instead of asking the daemon (no daemon needed).")
    var file: String?

    @Flag(name: .long, help: "With --file: validate as `guidond --lenient` would.")
    var lenient = false

    @Flag(name: .long, help: "Print the replies as JSON, one per line.")
    var json = false

    @Option(name: .long, help: "Seconds to wait for the daemon's reply.")
    var timeout: Double = 10

    var socketPath: String {
        if let adminSocket { return adminSocket }
        if let env = getenv("GUIDON_ADMIN_SOCKET"), env.pointee != 0 { return String(cString: env) }
        return "/run/guidon/admin.sock"
    }

    func backend() throws -> any AdminBackend {
        if let file { return FileBackend(path: file, options: CompileOptions(mode: lenient ? .lenient : .strict)) }
        return try SocketBackend(path: socketPath, timeout: timeout)
    }
}

/// The options of every write.
struct WriteOptions: ParsableArguments {
    @Option(name: .long, help: "Who makes the change: recorded in the audit log and as the flag's updatedBy.")
    var by: String?

    @Option(name: .long, help: "Why: recorded in the audit log and as the flag's notes.")
    var reason: String?

    @Option(name: .customLong("if-revision"), help: "Only write if the file is still at this revision (else CONFLICT). Without it, the current revision is fetched first.")
    var ifRevision: String?

    @Flag(name: .long, help: "Write whatever the file's revision (recorded as forced in the audit log).")
    var force = false

    @Flag(name: .customLong("dry-run"), help: "Print the diff that would be written, and write nothing.")
    var dryRun = false

    /// `request` with the members every write carries.
    func decorate(_ request: JSONObject) -> JSONObject {
        var request = request
        if let by { request["by"] = .string(by) }
        if let reason { request["reason"] = .string(reason) }
        if let ifRevision { request["ifRevision"] = .string(ifRevision) }
        if force { request["force"] = true }
        if dryRun { request["dryRun"] = true }
        return request
    }
}

/// A failure the daemon (or the file editor) reported: its reply, for `--json`.
struct AdminFailure: Error, CustomStringConvertible {
    var reply: JSONObject
    var description: String {
        guard case .object(let error)? = reply["error"] else { return "unexpected reply: \(JSONValue.object(reply))" }
        var text = "\(error["code"]?.string ?? "ERROR"): \(error["message"]?.string ?? "")"
        if case .object(let report)? = error["report"] {
            for (kind, list) in [("error", report["errors"]), ("warning", report["warnings"])] {
                for case .object(let d) in list?.array ?? [] {
                    let at = d["line"].map { " (line \($0), column \(d["column"] ?? 0))" } ?? ""
                    text += "\n  \(kind): \(d["path"]?.string ?? "$")\(at): \(d["message"]?.string ?? "")"
                }
            }
        }
        return text
    }
}

protocol AdminBackend {
    /// Sends one request; returns the reply, or throws `AdminFailure` with an error reply.
    mutating func send(_ request: JSONObject) throws -> JSONObject
}

extension AdminBackend {
    /// A write: with neither `ifRevision` nor `force`, the revision is fetched first (so that a
    /// change made between the two is refused, not overwritten).
    mutating func write(_ request: JSONObject) throws -> JSONObject {
        var request = request
        if request["ifRevision"] == nil && request["force"] == nil && request["dryRun"] == nil {
            let document = request["op"]?.string?.split(separator: ".").first.map(String.init) ?? "flags"
            let info = try send(["op": .string("\(document).get")])
            request["ifRevision"] = info["revision"]
        }
        return try send(request)
    }
}

/// The daemon's admin socket.
final class SocketBackend: AdminBackend {
    private var client: LineClient

    init(path: String, timeout: Double) throws {
        client = try LineClient(path: path, timeout: timeout)
    }

    func send(_ request: JSONObject) throws -> JSONObject {
        try client.send(.object(request))
        let (reply, _) = try client.receive()
        guard case .object(let object) = reply else { throw CLIError("unexpected reply: \(reply)") }
        if object["error"] != nil { throw AdminFailure(reply: object) }
        return object
    }
}

/// A flag file, edited in this process exactly as the daemon's writer edits it: the same
/// operations, the same validating compile, the same atomic replacement.
struct FileBackend: AdminBackend {
    let path: String
    let options: CompileOptions

    mutating func send(_ request: JSONObject) throws -> JSONObject {
        do {
            return try answer(request)
        } catch let error as RequestError {
            var ordered: JSONObject = ["code": .string(error.code.rawValue), "message": .string(error.message)]
            for (key, value) in error.details { ordered[key] = value }
            throw AdminFailure(reply: ["error": .object(ordered)])
        }
    }

    /// Refuses a write based on another revision than the file's, unless forced.
    private func checkRevision(_ request: AdminRequest, _ revision: String) throws {
        if let expected = request.ifRevision, expected != revision, !request.force {
            throw RequestError(
                code: .conflict, message: "\(path) is at revision \(revision), not \(expected): it changed since; read it again and redo the change, or force it",
                details: ["revision": .string(revision)])
        }
    }

    /// A validated edit of either document: its reply, and the file replaced unless it is a dry
    /// run (which answers the diff instead) or nothing changed.
    private func finish(
        _ request: AdminRequest, from bytes: [UInt8], revision: String, to document: [UInt8], changed: Bool, summary: String,
        subject: (member: String, name: String), definition: JSONValue?
    ) throws -> JSONObject {
        var reply: JSONObject = [
            "ok": true, "op": .string(request.op), "summary": .string(summary), "changed": .bool(changed),
            "revision": .string(Revision.of(document)), "previousRevision": .string(revision), subject.member: .string(subject.name),
            "definition": definition ?? .null,
        ]
        if request.dryRun {
            reply["dryRun"] = true
            reply["diff"] = .string(TextDiff.unified(bytes, document, path: path.split(separator: "/").last.map(String.init) ?? path))
            return reply
        }
        if changed {
            do {
                try DocumentFile.replace(path, with: document)
            } catch {
                throw RequestError(code: error.code == .readOnly ? .readOnly : .ioError, message: error.message)
            }
        }
        if request.force { reply["forced"] = true }
        return reply
    }

    private func answer(_ object: JSONObject) throws -> JSONObject {
        var line: [UInt8] = []
        JSONWriter.write(.object(object), into: &line)
        let request = try AdminRequest.parse(line)
        let bytes: [UInt8]
        do {
            bytes = try DocumentFile.read(path)
        } catch {
            throw RequestError(code: .ioError, message: error.message)
        }
        let revision = Revision.of(bytes)
        if request.document == "entitlements" || request.op == "entitlements" {
            return try answerEntitlements(request, bytes: bytes, revision: revision)
        }
        guard request.document == "flags" else {
            throw RequestError(code: .unknownOp, message: "unknown op \"\(request.op)\"")
        }
        switch request.verb {
        case "get":
            do {
                guard let flag = try request.optionalString("flag") else {
                    return ["revision": .string(revision), "flags": .array(try FlagEditor.keys(in: bytes).map(JSONValue.string))]
                }
                return ["flag": .string(flag), "definition": try FlagEditor.definition(of: flag, in: bytes), "revision": .string(revision)]
            } catch let error as EditError {
                throw FlagRequests.error(error, id: nil)
            }
        case "history":
            throw RequestError(code: .invalidRequest, message: "a flag file has no history of its own: read an audit log with --log PATH, or ask the daemon")
        default:
            break
        }
        try checkRevision(request, revision)
        let operation = try FlagRequests.operation(request)
        let edit: FlagEdit
        do {
            edit = try FlagEditor(options: options).apply(operation, to: bytes)
        } catch {
            throw FlagRequests.error(error, id: nil)
        }
        return try finish(
            request, from: bytes, revision: revision, to: edit.document, changed: edit.changed, summary: edit.summary,
            subject: ("flag", edit.flag), definition: edit.after)
    }
}

extension FileBackend {
    /// An entitlements file, edited in this process as the daemon's writer edits it
    /// (`EntitlementsEditor`, the same validating compile, the same atomic replacement); the
    /// `entitlements` view computed from the file.
    private func answerEntitlements(_ request: AdminRequest, bytes: [UInt8], revision: String) throws -> JSONObject {
        let compileOptions = EntitlementsCompileOptions(mode: options.mode, isKnownTimeZone: systemZoneExists)
        if request.op == "entitlements" {
            // The query op, answered from the file: compiled here, as guidond would serve it.
            let tenant = try EntitlementsRequests.entry(request)
            guard case .tenant(let id)? = tenant else { throw RequestError(code: .invalidRequest, message: "entitlements needs \"tenant\"") }
            let compiled: Entitlements
            do {
                compiled = try Entitlements.compile(json: bytes, options: compileOptions)
            } catch {
                throw FlagRequests.error(EditError(.invalidDocument, "\(path) does not validate", report: error), id: nil)
            }
            var view = compiled.entitlements(tenant: id)
            view["computedFrom"] = .string(path)
            return view
        }
        switch request.verb {
        case "get":
            do {
                guard let entry = try EntitlementsRequests.entry(request) else {
                    let contents = try EntitlementsEditor.contents(of: bytes)
                    return [
                        "revision": .string(revision), "features": .array(contents.features.map(JSONValue.string)),
                        "plans": .array(contents.plans.map(JSONValue.string)), "tenants": .int(Int64(contents.tenants)),
                    ]
                }
                return entitlementsEntryReply(entry, try EntitlementsEditor.definition(of: entry, in: bytes), revision: revision)
            } catch let error as EditError {
                throw FlagRequests.error(error, id: nil)
            }
        case "history":
            throw RequestError(code: .invalidRequest, message: "an entitlements file has no history of its own: read an audit log with --log PATH, or ask the daemon")
        default:
            break
        }
        try checkRevision(request, revision)
        let operation = try EntitlementsRequests.operation(request, now: Int64(time(nil)))
        let edit: EntitlementsEdit
        do {
            edit = try EntitlementsEditor(options: compileOptions).apply(operation, to: bytes)
        } catch {
            throw FlagRequests.error(error, id: nil)
        }
        return try finish(
            request, from: bytes, revision: revision, to: edit.document, changed: edit.changed, summary: edit.summary,
            subject: ("subject", edit.draft.subject), definition: edit.draft.after)
    }
}

/// The reply of `entitlements.get` for one entry.
func entitlementsEntryReply(_ entry: EntitlementsEditor.Entry, _ definition: JSONValue, revision: String) -> JSONObject {
    var reply = JSONObject()
    switch entry {
    case .tenant(let id): reply["tenant"] = .string(id)
    case .plan(let name): reply["plan"] = .string(name)
    case .feature(let key): reply["feature"] = .string(key)
    }
    reply["definition"] = definition
    reply["revision"] = .string(revision)
    return reply
}

/// `3f9c0a4e…`.
func short(_ revision: JSONValue?) -> String {
    guard let text = revision?.string else { return "?" }
    return String(text.prefix(8)) + "…"
}

/// What a write reply says, for people.
func describeWrite(_ reply: JSONObject) -> String {
    let summary = reply["summary"]?.string ?? "done"
    if reply["dryRun"] == .bool(true) {
        return "\(summary) (dry run: nothing written; revision \(short(reply["previousRevision"])) would become \(short(reply["revision"])))"
    }
    if reply["changed"] == .bool(false) { return "\(summary) (unchanged, revision \(short(reply["revision"])))" }
    let forced = reply["forced"] == .bool(true) ? ", forced" : ""
    return "\(summary) (revision \(short(reply["previousRevision"])) → \(short(reply["revision"]))\(forced))"
}

/// A JSON value as the example file writes it (two-space indentation).
func pretty(_ value: JSONValue) -> String {
    String(decoding: JSONPrinter(style: TextStyle()).text(value, indent: [], column: 0), as: UTF8.self)
}
