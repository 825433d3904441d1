import Atomics
import CLinux
import Dispatch
import GuidonEditing
import GuidonFiles
import GuidonJSON
import GuidonMetrics
import GuidonProtocol
import Logging
import NIOConcurrencyHelpers
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// A document the admin path edits: the flag file now, an entitlements file later. The writer
/// does everything documents have in common (revisions, the atomic write, the audit record, the
/// reply); a document decodes its own operations, edits its own bytes and serves the result.
protocol EditableDocument: Sendable {
    /// The namespace of its operations: `flags` for `flags.rollout`.
    var namespace: String { get }
    /// Its file.
    var path: String { get }
    /// The verbs that only read (`get`); `history` is the writer's, for every document.
    var readVerbs: Set<String> { get }
    /// The revision of `bytes`, the file's current content (`Revision.of`, or quicker when the
    /// document knows the bytes are those it serves).
    func revision(of bytes: [UInt8]) -> String
    /// What a request is about (the flag key), for the audit record of any request.
    func subject(of request: AdminRequest) -> String?
    /// Answers a read verb from the file's current bytes.
    func read(_ request: AdminRequest, bytes: [UInt8], revision: String) throws(RequestError) -> JSONObject
    /// Makes the change a write request asks for to the file's current bytes, not yet validated.
    /// Writes and serves nothing.
    func draft(_ request: AdminRequest, bytes: [UInt8]) throws(RequestError) -> DraftEdit
    /// The reply member that names what a write changed (`flag`; `subject` for entitlements).
    var subjectMember: String { get }
    /// The subject a `history` request filters by (`flag` for flags).
    func historySubject(of request: AdminRequest) throws(RequestError) -> String?
}

extension EditableDocument {
    var subjectMember: String { "flag" }

    func historySubject(of request: AdminRequest) throws(RequestError) -> String? {
        try request.optionalString("flag")
    }
}

/// A change made to a document's bytes, to be validated, written and served.
struct DraftEdit: Sendable {
    /// The whole new document.
    var bytes: [UInt8]
    var subject: String?
    var summary: String
    var before: JSONValue?
    var after: JSONValue?
    var changed: Bool
    /// Validates `bytes` (compiles them as the daemon serves), and returns what serves them.
    var validate: @Sendable () throws(RequestError) -> Publication
}

/// Serves a validated document (called on the reload thread once the file holds it, with its revision).
typealias Publication = @Sendable (_ revision: String) -> Void

/// Who sent a request: which socket, and the peer's credentials.
struct Caller: Sendable {
    var socket: String
    var peer: Peer?
}

/// The one writer: runs each admin request on the reload thread, one at a time and in order with
/// file reloads, never on an event loop. A write reads the file's bytes, checks `ifRevision`
/// against them, has the document make and validate the change, replaces the file atomically,
/// serves the result, appends the audit record, and only then answers: a client that got its
/// reply is served its change (read your writes). The file watcher then finds bytes identical
/// to those served and reloads nothing.
final class DocumentWriter: Sendable {
    private let documents: [String: any EditableDocument]
    private let audit: AuditLog
    private let reloader: Reloader
    private let logger: Logger
    /// Refused writes from the query socket waiting to be audited: past a bound they are counted
    /// and dropped, so that a client spamming them cannot queue unbounded work.
    private let pendingForbidden = ManagedAtomic(0)
    /// Writes new documents out while the reload thread validates them.
    private let io = StagingThread()
    private let droppedForbidden = ManagedAtomic(0)
    static let forbiddenBacklog = 64
    /// `guidon_admin_writes_total`: every audit record, by action and result.
    private let counts: AdminWriteCounts?

    init(documents: [any EditableDocument], audit: AuditLog, reloader: Reloader, logger: Logger, counts: AdminWriteCounts? = nil) {
        self.counts = counts
        var byName: [String: any EditableDocument] = [:]
        for document in documents { byName[document.namespace] = document }
        self.documents = byName
        self.audit = audit
        self.reloader = reloader
        self.logger = logger
    }

    /// Stops the I/O thread (after the reload thread: a write in progress still needs it).
    func shutdown() {
        io.shutdown()
    }

    /// Handles `request` on the reload thread; `reply` gets the reply line there.
    func submit(_ request: AdminRequest, from caller: Caller, reply: @escaping @Sendable ([UInt8]) -> Void) {
        reloader.perform { [self] active in
            var line: [UInt8] = []
            var published = false
            if active {
                switch handle(request, from: caller) {
                case .success(let body):
                    published = body["changed"] == .bool(true) && body["dryRun"] == nil
                    ReplyEncoder.reply(id: request.id, body, into: &line)
                case .failure(let error): ReplyEncoder.error(error, into: &line)
                }
            } else {
                ReplyEncoder.error(RequestError(code: .ioError, message: "guidond is shutting down; nothing was changed", id: request.id), into: &line)
            }
            reply(line)
            // The old snapshot is released (unless a request in flight still holds it): after the
            // reply, so that the write is not answered later for it.
            if published { Memory.returnFreedMemory() }
        }
    }

    /// Records a write refused on the query socket (`line` is the request).
    func auditForbidden(_ line: [UInt8], error: RequestError, peer: Peer?) {
        guard pendingForbidden.loadThenWrappingIncrement(ordering: .relaxed) < Self.forbiddenBacklog else {
            pendingForbidden.wrappingDecrement(ordering: .relaxed)
            droppedForbidden.wrappingIncrement(ordering: .relaxed)
            return
        }
        reloader.perform { [self] _ in
            pendingForbidden.wrappingDecrement(ordering: .relaxed)
            let request = try? AdminRequest.parse(line)
            let op = request?.op ?? "?"
            var record = AuditRecord(
                socket: "query", actor: peer?.named(), request: request, action: op, document: request?.document ?? "",
                subject: request?.members["flag"]?.string, result: .forbidden)
            record.error = error
            let dropped = droppedForbidden.exchange(0, ordering: .relaxed)
            if dropped > 0 {
                logger.warning("\(dropped) more writes refused on the query socket were not audited (too many at once)")
            }
            append(record)
        }
    }

    /// Appends `record` on the reload thread (in order with the writes' records), then calls
    /// `done` there with whether it was written.
    func audit(_ record: AuditRecord, then done: @escaping @Sendable (Bool) -> Void) {
        reloader.perform { [self] _ in done(append(record)) }
    }

    // MARK: - On the reload thread

    private func handle(_ request: AdminRequest, from caller: Caller) -> Result<JSONObject, RequestError> {
        guard let document = documents[request.document] else {
            let known = documents.keys.sorted().map { "\($0).…" }.joined(separator: ", ")
            return .failure(RequestError(code: .unknownOp, message: "unknown op \"\(request.op)\"; admin operations are \(known)", id: request.id))
        }
        if request.verb == "history" { return history(request, document) }
        if document.readVerbs.contains(request.verb) {
            do {
                let bytes = try read(document, request)
                return .success(try document.read(request, bytes: bytes, revision: document.revision(of: bytes)))
            } catch {
                return .failure(error)
            }
        }
        return write(request, document, from: caller)
    }

    private func read(_ document: any EditableDocument, _ request: AdminRequest) throws(RequestError) -> [UInt8] {
        do {
            return try DocumentFile.read(document.path)
        } catch {
            throw RequestError(code: .ioError, message: error.message, id: request.id)
        }
    }

    private func write(_ request: AdminRequest, _ document: any EditableDocument, from caller: Caller) -> Result<JSONObject, RequestError> {
        var record = AuditRecord(
            socket: caller.socket, actor: caller.peer, request: request, action: request.op, document: document.namespace,
            subject: document.subject(of: request), result: .applied)
        func refuse(_ error: RequestError) -> Result<JSONObject, RequestError> {
            if !request.dryRun {
                record.result = AuditRecord.result(of: error.code)
                record.error = error
                append(record)
            }
            return .failure(error)
        }
        if request.ifRevision == nil && !request.force && !request.dryRun {
            return refuse(RequestError(
                code: .invalidRequest,
                message: "\(request.op) needs \"ifRevision\": the revision the change is based on (ping, status or \(document.namespace).get report it), or \"force\": true to write without checking",
                id: request.id))
        }
        var timings = Timings()
        let bytes: [UInt8]
        do {
            bytes = try read(document, request)
        } catch {
            return refuse(error)
        }
        let revision = document.revision(of: bytes)
        timings.mark("read")
        record.revisionBefore = revision
        if let expected = request.ifRevision, expected != revision, !request.force {
            return refuse(RequestError(
                code: .conflict,
                message: "\(document.path) is at revision \(revision), not \(expected): it changed since (another writer, a hand edit, a deployment); read it again and redo the change, or force it",
                id: request.id, details: ["revision": .string(revision)]))
        }
        let edit: DraftEdit
        do {
            edit = try document.draft(request, bytes: bytes)
        } catch {
            return refuse(error)
        }
        timings.mark("edit")
        record.summary = edit.summary
        record.subject = edit.subject ?? record.subject
        record.before = edit.before
        record.after = edit.after
        // The new bytes go to a synced temporary file (on the I/O thread) while this thread
        // validates them: the sync and the compile overlap, and nothing replaces the file unless
        // they validate.
        let staging = edit.changed && !request.dryRun ? io.stage(document.path, edit.bytes) : nil
        let publish: Publication
        do {
            publish = try edit.validate()
        } catch {
            if let staging, case .success(let staged) = staging.wait().0 { staged.discard() }
            return refuse(error)
        }
        timings.mark("validate")
        let newRevision = staging?.wait().1 ?? (edit.changed ? Revision.of(edit.bytes) : revision)
        var reply: JSONObject = [
            "ok": true, "op": .string(request.op), "summary": .string(edit.summary), "changed": .bool(edit.changed),
            "revision": .string(newRevision), "previousRevision": .string(revision),
        ]
        if let subject = edit.subject { reply[document.subjectMember] = .string(subject) }
        reply["definition"] = edit.after ?? .null
        if request.dryRun {
            reply["dryRun"] = true
            reply["diff"] = .string(TextDiff.unified(bytes, edit.bytes, path: pathName(document.path)))
            return .success(reply)
        }
        if let staging {
            do throws(FileError) {
                try staging.wait().0.get().commit()
            } catch {
                return refuse(RequestError(code: error.code == .readOnly ? .readOnly : .ioError, message: error.message, id: request.id))
            }
            timings.mark("write")
            publish(newRevision)
            timings.mark("publish")
        }
        record.revisionAfter = newRevision
        record.result = edit.changed ? .applied : .unchanged
        if request.force { reply["forced"] = true }
        reply["auditId"] = .string(record.id)
        if !append(record) { reply["audited"] = false }
        timings.mark("audit")
        logger.debug("\(request.op) timings: \(timings)", metadata: ["auditId": "\(record.id)"])
        return .success(reply)
    }

    private func history(_ request: AdminRequest, _ document: any EditableDocument) -> Result<JSONObject, RequestError> {
        let since: Int64?
        let limit: Int
        let subject: String?
        do throws(RequestError) {
            since = try request.instant("since")
            subject = try document.historySubject(of: request)
            switch request.members["limit"] {
            case nil, .null?: limit = 100
            case .int(let n)? where n >= 1 && n <= 100_000: limit = Int(n)
            default: throw RequestError(code: .invalidRequest, message: "\"limit\" must be an integer from 1 to 100000", id: request.id)
            }
        } catch {
            return .failure(error)
        }
        guard audit.path != nil else {
            return .failure(RequestError(
                code: .notFound, message: "guidond keeps no audit log (start it with --audit-log PATH); the journal has the records", id: request.id))
        }
        do {
            let records = try audit.records(document: document.namespace, subject: subject, since: since, limit: limit)
            return .success(["records": .array(records)])
        } catch {
            return .failure(RequestError(code: .ioError, message: error.description, id: request.id))
        }
    }

    /// Appends `record`; a failure is logged (the change itself stands: it is served already).
    @discardableResult
    private func append(_ record: AuditRecord) -> Bool {
        counts?.count(action: record.action, result: record.result.rawValue)
        do {
            try audit.append(record)
            return true
        } catch {
            logger.critical("audit record \(record.id) not written: \(error)", metadata: ["auditId": "\(record.id)"])
            return false
        }
    }

    private func pathName(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }
}

/// Where a write's time goes, for the debug log: wall-clock and this thread's CPU time per phase
/// (the reload thread runs at nice +10, so on a busy machine the two differ).
private struct Timings: CustomStringConvertible {
    private var last = ContinuousClock.now
    private var lastCPU = Self.cpuNanos()
    private var phases: [(String, Duration, Int64)] = []

    mutating func mark(_ phase: String) {
        let now = ContinuousClock.now
        let cpu = Self.cpuNanos()
        phases.append((phase, now - last, cpu - lastCPU))
        last = now
        lastCPU = cpu
    }

    static func cpuNanos() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }

    var description: String {
        phases.map { name, duration, cpu in
            let micros = duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
            return "\(name) \(Double(micros / 100) / 10) ms (CPU \(Double(cpu / 100_000) / 10) ms)"
        }.joined(separator: ", ")
    }
}

/// The thread that writes a new document out (`DocumentFile.stage`) and computes its revision
/// while the reload thread validates it.
private final class StagingThread: Sendable {
    private let pool = NIOThreadPool(numberOfThreads: 1)

    init() {
        pool.start()
        // Named apart from the reload thread, and as polite to the event loops.
        pool.submit { state in
            guard state == .active else { return }
            _ = pthread_setname_np(pthread_self(), "guidon-staging")
            Reloader.lowerThreadPriority()
        }
    }

    func shutdown() {
        try? pool.syncShutdownGracefully()
    }

    /// A staging in progress: `wait` returns the staged file (or why not) and the bytes' revision.
    final class Pending: Sendable {
        private let result = NIOLockedValueBox<(Result<StagedFile, FileError>, String)?>(nil)
        private let done = DispatchSemaphore(value: 0)

        fileprivate func finish(_ value: (Result<StagedFile, FileError>, String)) {
            result.withLockedValue { $0 = value }
            done.signal()
        }

        /// Waits for it (once or more: the result is kept).
        func wait() -> (Result<StagedFile, FileError>, String) {
            if let value = result.withLockedValue({ $0 }) { return value }
            done.wait()
            return result.withLockedValue { $0! }
        }
    }

    func stage(_ path: String, _ bytes: [UInt8]) -> Pending {
        let pending = Pending()
        pool.submit { state in
            let revision = Revision.of(bytes)
            guard state == .active else {
                pending.finish((.failure(FileError(.writeFailed, "guidond is shutting down; the file is unchanged")), revision))
                return
            }
            do throws(FileError) {
                pending.finish((.success(try DocumentFile.stage(path, bytes)), revision))
            } catch {
                pending.finish((.failure(error), revision))
            }
        }
        return pending
    }
}
