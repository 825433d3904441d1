import Foundation
import GuidonEditing
import GuidonEngine
import GuidonJSON
import Testing

/// The bundled example flag file, as bytes.
let exampleFile: [UInt8] = {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("protocol/examples/flags.json")
    return Array(try! Data(contentsOf: url))
}()

func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// Applies `action` to `flag` in `document`, expecting success.
func edit(
    _ document: [UInt8], _ flag: String, _ action: FlagOperation.Action, by: String? = nil, reason: String? = nil
) throws -> FlagEdit {
    try FlagEditor().apply(FlagOperation(flag: flag, action: action, by: by, reason: reason), to: document)
}

/// Applies `action` expecting a refusal; returns it.
func refusal(_ document: [UInt8], _ flag: String, _ action: FlagOperation.Action) -> EditError? {
    do {
        _ = try FlagEditor().apply(FlagOperation(flag: flag, action: action), to: document)
        return nil
    } catch {
        return error
    }
}

/// The flag's targeting in the edited document, parsed.
func targeting(_ edit: FlagEdit) throws -> JSONValue? {
    edit.after?.object?["targeting"]
}

func context(_ key: String? = nil, _ attributes: JSONObject = [:]) -> EvaluationContext {
    EvaluationContext(targetingKey: key, attributes: attributes)
}

/// The variant the snapshot serves `flag` for a context.
func variant(_ snapshot: Snapshot, _ flag: String, _ key: String? = nil, _ attributes: JSONObject = [:], now: Int64? = nil) -> String? {
    snapshot.evaluate(flag, context: context(key, attributes), now: now).variant
}

/// The byte ranges where `a` and `b` differ, as (prefix kept, suffix kept): everything outside
/// `a[prefix..<a.count-suffix]` is byte-identical.
func difference(_ a: [UInt8], _ b: [UInt8]) -> (prefix: Int, suffix: Int) {
    var prefix = 0
    while prefix < min(a.count, b.count), a[prefix] == b[prefix] { prefix += 1 }
    var suffix = 0
    while suffix < min(a.count, b.count) - prefix, a[a.count - 1 - suffix] == b[b.count - 1 - suffix] { suffix += 1 }
    return (prefix, suffix)
}
