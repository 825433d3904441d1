import GuidonEditing
import GuidonEngine
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

    func prepare(_ request: AdminRequest, bytes: [UInt8]) throws(RequestError) -> PreparedEdit {
        let operation = try FlagRequests.operation(request)
        let edit: FlagEdit
        do {
            // The served snapshot: every flag the edit leaves alone is taken from it, not compiled.
            edit = try editor.apply(operation, to: bytes, reusing: store.current.snapshot)
        } catch {
            throw FlagRequests.error(error, id: request.id)
        }
        let snapshot = edit.snapshot
        let reloader = reloader
        return PreparedEdit(
            bytes: edit.document, subject: edit.flag, summary: edit.summary, before: edit.before, after: edit.after,
            changed: edit.changed,
            publish: { revision in
                reloader.install(ServedConfig(snapshot: snapshot, version: revision, loadedAt: Int64(time(nil))), trigger: "admin")
            })
    }
}
