import Foundation
import GuidonJSON
import Testing

@testable import GuidonEngine

/// Runs every vector of the flagd conformance suite (Fixtures/conformance, generated with
/// the OpenFeature reference evaluator) in lenient mode.
@Suite struct ConformanceTests {
    static let directory = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/conformance")
    /// Any instant between 2001 and 2099 gives the same answers; pick one.
    static let now: Int64 = 1_750_000_000

    static func lines(_ name: String) throws -> [JSONValue] {
        let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONParser().parse(String($0)) }
    }

    static func caseFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("cases").path)
            .filter { $0.hasSuffix(".jsonl") }.sorted()
    }

    static func loadConfig(_ relative: String, mode: CompileOptions.Mode) throws -> Snapshot {
        let bytes = try [UInt8](Data(contentsOf: directory.appendingPathComponent(relative)))
        return try Snapshot.compile(json: bytes, options: CompileOptions(mode: mode, clock: { now }))
    }

    @Test func everyCasePasses() throws {
        var snapshots: [String: Snapshot] = [:]
        var summary: [String] = []
        var failures: [String] = []
        var total = 0
        var passed = 0
        for file in try Self.caseFiles() {
            var filePassed = 0
            let cases = try Self.lines("cases/" + file)
            for (lineNumber, testCase) in cases.enumerated() {
                guard case .object(let c) = testCase else { continue }
                let problem: String?
                if let rule = c["rule"] {
                    problem = Self.check(rule: rule, data: c["data"] ?? .null, expect: c["expect"] ?? .null)
                } else {
                    let config = c["config"]!.string!
                    if snapshots[config] == nil { snapshots[config] = try Self.loadConfig(config, mode: .lenient) }
                    problem = Self.check(flagCase: c, in: snapshots[config]!)
                }
                if let problem {
                    if failures.count < 40 { failures.append("\(file):\(lineNumber + 1): \(problem)") }
                } else {
                    filePassed += 1
                }
            }
            summary.append("\(file): \(filePassed)/\(cases.count)")
            total += cases.count
            passed += filePassed
        }
        print("conformance: \(passed)/\(total) passed\n  " + summary.joined(separator: "\n  "))
        #expect(passed == total, "\(passed)/\(total) passed\n\(summary.joined(separator: "\n"))\nfirst failures:\n\(failures.joined(separator: "\n"))")
        #expect(total == 8683)
    }

    static func check(rule: JSONValue, data: JSONValue, expect: JSONValue) -> String? {
        let result: JSONValue
        do {
            result = try Rule(rule).evaluate(data: data)
        } catch {
            return "\(rule) on \(data): failed (\(error.message)), expected \(expect)"
        }
        return result.jsonEquals(expect) ? nil : "\(rule) on \(data): got \(result), expected \(expect)"
    }

    static func check(flagCase c: JSONObject, in snapshot: Snapshot) -> String? {
        let flag = c["flag"]!.string!
        let type = ValueType(rawValue: c["type"]!.string!)!
        let context = EvaluationContext(json: c["context"]?.object ?? JSONObject())
        let expect = c["expect"]!.object!
        let result = snapshot.evaluate(flag, context: context, type: type, now: now)
        let value = result.value ?? c["default"]!
        var problems: [String] = []
        if !value.jsonEquals(expect["value"]!) { problems.append("value \(value) ≠ \(expect["value"]!)") }
        if type == .integer, value.number != nil, case .double = value { problems.append("integer served as float") }
        if type == .float, case .int = value { problems.append("float served as integer") }
        if (result.variant.map(JSONValue.string) ?? .null) != expect["variant"]! {
            problems.append("variant \(result.variant ?? "nil") ≠ \(expect["variant"]!)")
        }
        if result.reason.rawValue != expect["reason"]!.string { problems.append("reason \(result.reason.rawValue) ≠ \(expect["reason"]!)") }
        if (result.errorCode.map { JSONValue.string($0.rawValue) } ?? .null) != expect["errorCode"]! {
            problems.append("errorCode \(result.errorCode?.rawValue ?? "nil") ≠ \(expect["errorCode"]!) (\(result.errorMessage ?? ""))")
        }
        if let metadata = expect["flagMetadata"], !JSONValue.object(result.metadata).jsonEquals(metadata) {
            problems.append("metadata \(result.metadata) ≠ \(metadata)")
        }
        if problems.isEmpty { return nil }
        return "\(flag) as \(type) with \(c["context"] ?? .null): " + problems.joined(separator: "; ")
    }
}
