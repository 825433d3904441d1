import CLinux
import GuidonEditing
import GuidonFiles
import GuidonJSON
import GuidonProtocol
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// One write attempt through the admin path, whatever became of it.
struct AuditRecord: Sendable {
    enum Result: String, Sendable {
        /// Written and served.
        case applied
        /// Valid, but the document already said so: nothing was written.
        case unchanged
        /// `ifRevision` was not the file's revision.
        case conflict
        /// Malformed or impossible, or the result would not validate.
        case invalid
        /// A write sent to the query socket.
        case forbidden
        /// It names a flag the document does not have.
        case notFound
        /// The file could not be read or written.
        case failed
    }

    var id: String
    /// Unix time, in seconds and nanoseconds.
    var time: (seconds: Int64, nanoseconds: Int64)
    /// Which socket it came through: `admin` or `query`.
    var socket: String
    var actor: Peer?
    var by: String?
    var reason: String?
    var action: String
    var document: String
    /// What it is about: the flag key.
    var subject: String?
    var summary: String?
    var before: JSONValue?
    var after: JSONValue?
    var revisionBefore: String?
    var revisionAfter: String?
    var force: Bool
    var result: Result
    var error: RequestError?

    init(socket: String, actor: Peer?, request: AdminRequest?, action: String, document: String, subject: String?, result: Result) {
        id = Self.newID()
        time = Self.now()
        self.socket = socket
        self.actor = actor
        by = request?.by
        reason = request?.reason
        self.action = action
        self.document = document
        self.subject = subject
        force = request?.force ?? false
        self.result = result
    }

    /// 16 random hex digits.
    static func newID() -> String {
        let hex = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    static func now() -> (seconds: Int64, nanoseconds: Int64) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return (Int64(now.tv_sec), Int64(now.tv_nsec))
    }

    /// `2026-11-21T12:03:07.123Z`.
    var timestamp: String {
        let seconds = Timestamp.rfc3339(time.seconds)
        let millis = String(time.nanoseconds / 1_000_000)
        return seconds.dropLast() + "." + String(repeating: "0", count: 3 - millis.count) + millis + "Z"
    }

    /// The record as one JSON object: the audit log's line.
    var json: JSONObject {
        var o: JSONObject = ["id": .string(id), "time": .string(timestamp), "socket": .string(socket)]
        o["actor"] = actor?.json ?? .null
        o["by"] = by.map(JSONValue.string) ?? .null
        o["reason"] = reason.map(JSONValue.string) ?? .null
        o["action"] = .string(action)
        o["document"] = .string(document)
        // A flag's key for the flag file; what else a record is about (`tenant 5`, `plan growth`)
        // as `subject`.
        o["flag"] = document == "flags" ? subject.map(JSONValue.string) ?? .null : .null
        if document != "flags", let subject { o["subject"] = .string(subject) }
        if let summary { o["summary"] = .string(summary) }
        o["before"] = before ?? .null
        o["after"] = after ?? .null
        o["revisionBefore"] = revisionBefore.map(JSONValue.string) ?? .null
        o["revisionAfter"] = revisionAfter.map(JSONValue.string) ?? .null
        o["force"] = .bool(force)
        o["result"] = .string(result.rawValue)
        if let error { o["error"] = ["code": .string(error.code.rawValue), "message": .string(error.message)] }
        return o
    }

    /// The result of a refusal with `code`.
    static func result(of code: ProtocolErrorCode) -> Result {
        switch code {
        case .conflict: .conflict
        case .forbidden: .forbidden
        case .notFound: .notFound
        case .readOnly, .ioError: .failed
        default: .invalid
        }
    }
}

/// The audit log: every write attempt as one JSON line, appended and synced before the attempt
/// is answered, and the same record in the journal (with `GUIDON_*` fields) for
/// `journalctl GUIDON_FLAG=…`.
///
/// Without a path, records go to the journal only. The file is opened for each record (writes
/// are rare), so that a log rotated by renaming is followed at once.
final class AuditLog: Sendable {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let path: String?
    private let logger: Logger

    init(path: String?, logger: Logger) {
        self.path = path
        self.logger = logger
    }

    /// Writes `record` to the journal and, with a path, appends it to the file and syncs it.
    func append(_ record: AuditRecord) throws(Failure) {
        journal(record)
        guard let path else { return }
        var line: [UInt8] = []
        JSONWriter.write(.object(record.json), into: &line)
        line.append(UInt8(ascii: "\n"))
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw Failure(description: "cannot open the audit log \(path): \(errnoText())") }
        defer { close(fd) }
        var written = 0
        while written < line.count {
            let n = line.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "cannot append to the audit log \(path): \(errnoText())")
            }
            written += n
        }
        guard fdatasync(fd) == 0 else { throw Failure(description: "cannot sync the audit log \(path): \(errnoText())") }
    }

    private func journal(_ record: AuditRecord) {
        var metadata: Logger.Metadata = [
            "auditId": "\(record.id)", "action": "\(record.action)", "result": "\(record.result.rawValue)",
            "socket": "\(record.socket)", "force": "\(record.force)",
        ]
        if let subject = record.subject { metadata[record.document == "flags" ? "flag" : "subject"] = "\(subject)" }
        if record.document != "flags" { metadata["document"] = "\(record.document)" }
        if let actor = record.actor {
            metadata["actorUid"] = "\(actor.uid)"
            metadata["actorPid"] = "\(actor.pid)"
            if let user = actor.user { metadata["actorUser"] = "\(user)" }
        }
        if let by = record.by { metadata["by"] = "\(by)" }
        if let reason = record.reason { metadata["reason"] = "\(reason)" }
        if let revision = record.revisionAfter { metadata["revision"] = "\(revision)" }
        if let revision = record.revisionBefore { metadata["previousRevision"] = "\(revision)" }
        let who = (record.by.map { "by \($0); " } ?? "") + (record.actor?.description ?? "unknown peer") + " on the \(record.socket) socket"
        let what = record.summary ?? "\(record.action)\(record.subject.map { " \($0)" } ?? "")"
        switch record.result {
        case .applied, .unchanged:
            logger.notice("admin write \(record.result.rawValue): \(what) (\(who))", metadata: metadata)
        default:
            let why = record.error.map { "\($0.code.rawValue): \($0.message)" } ?? record.result.rawValue
            logger.warning("admin write refused: \(what) (\(who)): \(why)", metadata: metadata)
        }
    }

    /// The records about `document` (and `subject`, when given) from `since` (Unix seconds) on,
    /// the last `limit` of them, oldest first. Empty without a file.
    func records(document: String, subject: String?, since: Int64?, limit: Int) throws(Failure) -> [JSONValue] {
        guard let path else { return [] }
        let bytes: [UInt8]
        do {
            bytes = try DocumentFile.read(path)
        } catch {
            if access(path, F_OK) != 0 { return [] }
            throw Failure(description: error.message)
        }
        var found: [JSONValue] = []
        for line in bytes.split(separator: UInt8(ascii: "\n")) where !line.isEmpty {
            guard case .object(let record)? = try? JSONParser().parse(Array(line)) else { continue }
            guard record["document"]?.string == document else { continue }
            if let subject, (record["subject"]?.string ?? record["flag"]?.string) != subject { continue }
            if let since, let time = record["time"]?.string.flatMap(Instant.parse), time < since { continue }
            found.append(.object(record))
        }
        return Array(found.suffix(limit))
    }
}
