import GuidonEditing
import GuidonEngine
import GuidonEntitlements
import GuidonJSON
import GuidonProtocol

#if canImport(Glibc)
import Glibc
#endif

/// The flag file as the admin path edits it: `flags.*` operations through `FlagEditor`,
/// validated with the daemon's own compile options, served through the `Reloader`.
struct FlagsDocument: EditableDocument {
    let namespace = "flags"
    let path: String
    let readVerbs: Set<String> = ["get"]
    let store: ConfigStore
    let reloader: Reloader
    let editor: FlagEditor

    init(path: String, options: CompileOptions, store: ConfigStore, reloader: Reloader) {
        self.path = path
        self.store = store
        self.reloader = reloader
        editor = FlagEditor(options: options)
    }

    /// The served version when `bytes` are the served text (a comparison, not a digest of 2 MB).
    func revision(of bytes: [UInt8]) -> String {
        let served = store.current
        return served.snapshot.isCompiled(from: bytes) ? served.version : Revision.of(bytes)
    }

    func subject(of request: AdminRequest) -> String? {
        request.members["flag"]?.string
    }

    func read(_ request: AdminRequest, bytes: [UInt8], revision: String) throws(RequestError) -> JSONObject {
        guard let flag = try request.optionalString("flag") else {
            // The document itself: its revision and its flags.
            do {
                return [
                    "revision": .string(revision), "servedRevision": .string(store.current.version),
                    "flags": .array(try FlagEditor.keys(in: bytes).map(JSONValue.string)),
                ]
            } catch {
                throw FlagRequests.error(error, id: request.id)
            }
        }
        do {
            let definition = try FlagEditor.definition(of: flag, in: bytes)
            return [
                "flag": .string(flag), "definition": definition, "revision": .string(revision),
                "servedRevision": .string(store.current.version),
            ]
        } catch {
            throw FlagRequests.error(error, id: request.id)
        }
    }

    func draft(_ request: AdminRequest, bytes: [UInt8]) throws(RequestError) -> DraftEdit {
        let operation = try FlagRequests.operation(request)
        // The served snapshot: it knows where the flag is in the served text, and the validating
        // compile takes every flag the edit leaves alone from it.
        let served = store.current.snapshot
        // Validated against the features served now (`entitled` in targeting names them).
        var options = editor.options
        options.features = store.current.entitlements.map { Set($0.features.map(\.key)) }
        let editor = FlagEditor(options: options)
        let draft: FlagDraft
        do {
            draft = try editor.draft(operation, to: bytes, reusing: served)
        } catch {
            throw FlagRequests.error(error, id: request.id)
        }
        let reloader = reloader
        let id = request.id
        let diff = SnapshotDiff(
            added: draft.before == nil ? [draft.flag] : [], changed: draft.before != nil && draft.after != nil ? [draft.flag] : [],
            removed: draft.after == nil ? [draft.flag] : [])
        return DraftEdit(
            bytes: draft.document, subject: draft.flag, summary: draft.summary, before: draft.before, after: draft.after,
            changed: draft.changed,
            validate: { () throws(RequestError) -> Publication in
                let snapshot: Snapshot
                do throws(EditError) {
                    snapshot = try editor.validate(draft, reusing: served).snapshot
                } catch {
                    throw FlagRequests.error(error, id: id)
                }
                // Served with the entitlements served now (this runs on the reload thread, which
                // alone publishes, so they are still those when the publication runs).
                let current = reloader.store.current
                if let entitlements = current.entitlements,
                    case let conflicts = entitlements.conflicts(withFlagKeys: snapshot.flags.lazy.map(\.key)), !conflicts.isEmpty
                {
                    throw RequestError(
                        code: .invalidDocument,
                        message: "the change would make a key both a flag and a feature of the entitlements file (\(reloader.files.entitlements?.path ?? "")): "
                            + conflicts.map(\.description).joined(separator: "; "),
                        id: id)
                }
                return { revision in
                    let served = reloader.store.current
                    reloader.install(served.replacing(snapshot: snapshot, version: revision, loadedAt: Int64(time(nil))), trigger: "admin", diff: diff)
                }
            })
    }
}
