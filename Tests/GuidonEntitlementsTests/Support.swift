import Foundation
import GuidonEngine
import GuidonJSON
import Testing

@testable import GuidonEntitlements

/// 2026-12-15T12:00:00Z: tenant 5's voice_ai override has not expired yet.
let december15: Int64 = 1_797_336_000

/// The zones the tests' documents may name (the daemon asks the system's zone database).
let knownZones: Set<String> = ["UTC", "Europe/Berlin", "Europe/Paris", "America/New_York", "Asia/Tehran"]

func options(_ mode: CompileOptions.Mode = .strict, now: Int64 = december15) -> EntitlementsCompileOptions {
    EntitlementsCompileOptions(mode: mode, isKnownTimeZone: { knownZones.contains($0) }, clock: { now })
}

func compile(_ json: String, mode: CompileOptions.Mode = .strict, reusing previous: Entitlements? = nil) throws -> Entitlements {
    try Entitlements.compile(json: Array(json.utf8), options: options(mode), reusing: previous)
}

/// Compiles `json`, expecting a rejection; returns the report.
func rejection(_ json: String, mode: CompileOptions.Mode = .strict, sourceLocation: SourceLocation = #_sourceLocation) -> ValidationReport {
    do {
        let accepted = try Entitlements.compile(json: Array(json.utf8), options: options(mode))
        Issue.record("document was accepted (warnings: \(accepted.warnings))", sourceLocation: sourceLocation)
        return ValidationReport(errors: [])
    } catch {
        return error
    }
}

/// The example shipped in protocol/examples.
let exampleURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("protocol/examples/entitlements.json")

func exampleDocument() throws -> [UInt8] {
    Array(try Data(contentsOf: exampleURL))
}

func example(_ mode: CompileOptions.Mode = .strict) throws -> Entitlements {
    try Entitlements.compile(json: exampleDocument(), options: options(mode))
}

/// The reply members an answer lends, as one object (what a reply line holds, minus its id).
func lentReply(_ e: Entitlements, _ feature: String, tenant: String?, type: ValueType? = nil, now: Int64 = december15) -> JSONObject? {
    e.withResult(feature: feature, tenant: tenant, type: type, now: now) { r in
        var text: [UInt8] = [UInt8(ascii: "{")]
        text += r.flag
        if let served = r.served { text += served }
        text += Array(",\"reason\":\"\(r.reason.rawValue)\"".utf8)
        if let code = r.errorCode { text += Array(",\"errorCode\":\"\(code.rawValue)\"".utf8) }
        text += Array(",\"metadata\":".utf8)
        text += r.metadata
        text.append(UInt8(ascii: "}"))
        do {
            return try JSONParser(duplicateKeys: .reject).parse(text).object
        } catch {
            Issue.record("lent text does not parse: \(String(decoding: text, as: UTF8.self)): \(error)")
            return nil
        }
    } ?? nil
}
