import GuidonEditing
import GuidonEngine
import GuidonEntitlements
import GuidonJSON
import GuidonProtocol

#if canImport(Glibc)
import Glibc
#endif

/// The entitlements file as the admin path edits it: `entitlements.*` operations through
/// `EntitlementsEditor`, validated with the daemon's own entitlements options and against the
/// served flag keys, served through the `Reloader` with the flags being served.
struct EntitlementsDocument: EditableDocument {
    let namespace = "entitlements"
    let path: String
    let readVerbs: Set<String> = ["get"]
    let subjectMember = "subject"
    let store: ConfigStore
    let reloader: Reloader
    let editor: EntitlementsEditor

    init(file: EntitlementsFile, store: ConfigStore, reloader: Reloader) {
        path = file.path
        self.store = store
        self.reloader = reloader
        editor = EntitlementsEditor(options: file.options)
    }

    /// The served version when `bytes` are the served text (a comparison, not a digest of 10 MiB).
    func revision(of bytes: [UInt8]) -> String {
        let served = store.current
        if let value = served.entitlements, let version = served.entitlementsVersion, value.isCompiled(from: bytes) { return version }
        return Revision.of(bytes)
    }

    func subject(of request: AdminRequest) -> String? {
        EntitlementsRequests.subject(request)
    }

    func historySubject(of request: AdminRequest) throws(RequestError) -> String? {
        if let subject = try request.optionalString("subject") { return subject }
        return try EntitlementsRequests.entry(request).map { entry in
            switch entry {
            case .tenant(let id): "tenant \(id)"
            case .plan(let name): "plan \(name)"
            case .feature(let key): "feature \(key)"
            }
        }
    }

    func read(_ request: AdminRequest, bytes: [UInt8], revision: String) throws(RequestError) -> JSONObject {
        let served = store.current.entitlementsVersion.map(JSONValue.string) ?? .null
        let entry = try EntitlementsRequests.entry(request)
        do throws(EditError) {
            guard let entry else {
                let contents = try EntitlementsEditor.contents(of: bytes)
                return [
                    "revision": .string(revision), "servedRevision": served, "path": .string(path),
                    "features": .array(contents.features.map(JSONValue.string)), "plans": .array(contents.plans.map(JSONValue.string)),
                    "tenants": .int(Int64(contents.tenants)),
                ]
            }
            var reply = JSONObject()
            switch entry {
            case .tenant(let id): reply["tenant"] = .string(id)
            case .plan(let name): reply["plan"] = .string(name)
            case .feature(let key): reply["feature"] = .string(key)
            }
            reply["definition"] = try EntitlementsEditor.definition(of: entry, in: bytes)
            reply["revision"] = .string(revision)
            reply["servedRevision"] = served
            return reply
        } catch {
            throw FlagRequests.error(error, id: request.id)
        }
    }

    func draft(_ request: AdminRequest, bytes: [UInt8]) throws(RequestError) -> DraftEdit {
        let operation = try EntitlementsRequests.operation(request, now: Int64(time(nil)))
        let draft: EntitlementsDraft
        do {
            // The served value finds the tenant without delimiting the others (when the file
            // holds what it serves, as it does unless edited by hand since).
            draft = try editor.draft(operation, to: bytes, served: store.current.entitlements)
        } catch {
            throw FlagRequests.error(error, id: request.id)
        }
        let editor = editor
        let reloader = reloader
        let store = store
        let id = request.id
        return DraftEdit(
            bytes: draft.document, subject: draft.subject, summary: draft.summary, before: draft.before, after: draft.after,
            changed: draft.changed,
            validate: { () throws(RequestError) -> Publication in
                // Validated as the daemon serves: its options, reusing the served tenants, and
                // against the flag keys served (this runs on the reload thread, which alone
                // publishes, so they are still those when the publication runs).
                let served = store.current
                let entitlements: Entitlements
                do throws(EditError) {
                    entitlements = try editor.validate(draft, reusing: served.entitlements, flagKeys: served.snapshot.flags.map(\.key)).entitlements
                } catch {
                    throw FlagRequests.error(error, id: id)
                }
                // `entitled` in the flags' targeting names features: a change of the features
                // checks the flags again (compiled from the served flag file with the new ones).
                let snapshot = try Self.flags(served, checkedAgainst: entitlements, files: reloader.files, id: id)
                return { revision in
                    let current = store.current
                    reloader.install(
                        ServedConfig(
                            snapshot: snapshot, version: current.version, loadedAt: Int64(time(nil)), entitlements: entitlements,
                            entitlementsVersion: revision, tenantAttribute: current.tenantAttribute),
                        trigger: "admin", diff: SnapshotDiff(added: [], changed: [], removed: []))
                }
            })
    }

    /// The served flags, compiled again when `entitlements` has other features than those they
    /// were checked against; refused when that compile fails (a flag names a removed feature).
    static func flags(
        _ served: ServedConfig, checkedAgainst entitlements: Entitlements, files: ServedFiles, id: JSONValue?
    ) throws(RequestError) -> Snapshot {
        let features = Set(entitlements.features.map(\.key))
        guard served.snapshot.features != features else { return served.snapshot }
        let bytes: [UInt8]
        do throws(ConfigLoadError) {
            bytes = try ConfigFile.read(files.flagPath)
        } catch {
            throw RequestError(code: .ioError, message: "the features change, so the flags are checked again: \(error)", id: id)
        }
        guard contentVersion(of: bytes) == served.version else {
            throw RequestError(
                code: .conflict,
                message: "the features change, so the flags are checked again, but \(files.flagPath) changed since it was served; wait for its reload and retry",
                id: id)
        }
        var options = files.options
        options.features = features
        do {
            return try Snapshot.compile(json: bytes, options: options, reusing: served.snapshot)
        } catch {
            throw RequestError(
                code: .invalidDocument,
                message: "the change would leave the flags invalid (\(files.flagPath)): " + error.errors.map(\.description).joined(separator: "; "),
                id: id)
        }
    }
}
