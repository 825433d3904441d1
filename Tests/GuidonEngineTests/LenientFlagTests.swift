import Foundation
import GuidonJSON
import Testing

@testable import GuidonEngine

/// Issue 11, part 2: in lenient mode a flag with a structural problem that the reference evaluator
/// (openfeature-flagd-core 2.0.0) loads anyway is loaded with a warning, answers exactly as the
/// reference answers it, and leaves every other flag served; strict mode refuses it, naming it.
/// Every expectation below was produced by the reference evaluator.
@Suite struct LenientFlagTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        /// The members of flag `f`.
        var flag: String
        /// The path strict mode names.
        var path: String
        /// `type` → expected (value, variant, reason, errorCode); value `nil` is the caller's default.
        var answers: [(ValueType?, JSONValue?, String?, Reason, ErrorCode?)]
        var testDescription: String { name }
    }

    static let on = #""state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on""#

    static let cases: [Case] = [
        Case(name: "targeting null", flag: on + #", "targeting": null"#, path: "flags.f.targeting",
            answers: [(.boolean, true, "on", .static, nil), (.integer, nil, nil, .error, .typeMismatch)]),
        Case(name: "targeting []", flag: on + #", "targeting": []"#, path: "flags.f.targeting",
            answers: [(.boolean, true, "on", .static, nil)]),
        Case(name: "targeting false", flag: on + #", "targeting": false"#, path: "flags.f.targeting",
            answers: [(.boolean, true, "on", .static, nil)]),
        Case(name: "targeting \"on\"", flag: on + #", "targeting": "on""#, path: "flags.f.targeting",
            answers: [(.boolean, nil, nil, .error, .parseError), (nil, nil, nil, .error, .parseError)]),
        Case(name: "targeting [1]", flag: on + #", "targeting": [1]"#, path: "flags.f.targeting",
            answers: [(.boolean, nil, nil, .error, .parseError)]),
        Case(name: "disabled wins over targeting \"on\"",
            flag: #""state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": "on""#,
            path: "flags.f.targeting", answers: [(.boolean, nil, nil, .disabled, nil)]),
        Case(name: "mixed variant types",
            flag: #""state": "ENABLED", "variants": {"s": "text", "n": 3}, "defaultVariant": "s", "targeting": {"if": [{"var": "n"}, "n", null]}"#,
            path: "flags.f.variants.n",
            answers: [(.string, "text", "s", .default, nil), (.integer, nil, nil, .error, .typeMismatch),
                (nil, "text", "s", .default, nil)]),
        Case(name: "default variant naming no variant",
            flag: #""state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "nope""#,
            path: "flags.f.defaultVariant", answers: [(.boolean, nil, nil, .error, .general), (nil, nil, nil, .error, .general)]),
        Case(name: "default variant naming no variant, targeting that names one",
            flag: #""state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "nope", "targeting": {"if": [true, "off", null]}"#,
            path: "flags.f.defaultVariant", answers: [(.boolean, false, "off", .targetingMatch, nil)]),
        Case(name: "default variant naming no variant, targeting null",
            flag: #""state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "nope", "targeting": {"if": [false, "off", null]}"#,
            path: "flags.f.defaultVariant", answers: [(.boolean, nil, nil, .error, .general)]),
        Case(name: "null variant served as the default",
            flag: #""state": "ENABLED", "variants": {"a": null, "b": 1}, "defaultVariant": "a""#,
            path: "flags.f.variants.a", answers: [(.integer, nil, nil, .error, .typeMismatch), (nil, .null, "a", .static, nil)]),
        Case(name: "null variant named by targeting",
            flag: #""state": "ENABLED", "variants": {"a": null, "b": 1}, "defaultVariant": "b", "targeting": {"if": [true, "a"]}"#,
            path: "flags.f.variants.a", answers: [(.integer, nil, nil, .error, .general)]),
        Case(name: "boolean default variant",
            flag: #""state": "ENABLED", "variants": {"true": 1, "false": 0}, "defaultVariant": true"#,
            path: "flags.f.defaultVariant", answers: [(.integer, 1, "true", .static, nil), (.boolean, nil, nil, .error, .typeMismatch)]),
        Case(name: "false default variant",
            flag: #""state": "ENABLED", "variants": {"true": 1, "false": 0}, "defaultVariant": false"#,
            path: "flags.f.defaultVariant", answers: [(.integer, 0, "false", .static, nil)]),
        Case(name: "default variant 0 means none",
            flag: #""state": "ENABLED", "variants": {"0": 1}, "defaultVariant": 0"#,
            path: "flags.f.defaultVariant", answers: [(.integer, nil, nil, .default, nil)]),
        Case(name: "array variant",
            flag: #""state": "ENABLED", "variants": {"a": [1, 2], "b": {"x": 1}}, "defaultVariant": "a""#,
            path: "flags.f.variants.a", answers: [(.object, [1, 2], "a", .static, nil), (.boolean, nil, nil, .error, .typeMismatch)]),
        Case(name: "metadata null", flag: on + #", "metadata": null"#, path: "flags.f.metadata",
            answers: [(.boolean, true, "on", .static, nil)]),
        Case(name: "metadata []", flag: on + #", "metadata": []"#, path: "flags.f.metadata",
            answers: [(.boolean, nil, nil, .error, .general)]),
        Case(name: "metadata 0 on a disabled flag",
            flag: #""state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on", "metadata": 0"#,
            path: "flags.f.metadata", answers: [(.boolean, nil, nil, .error, .general)]),
    ]

    static func document(_ flag: String) -> String {
        #"{"flags": {"ok": {"state": "ENABLED", "variants": {"v": "served"}, "defaultVariant": "v"}, "f": {\#(flag)}}}"#
    }

    @Test(arguments: cases)
    func strictRefusesNamingTheProblem(_ c: Case) {
        let report = rejection(Self.document(c.flag))
        #expect(report.errors.map(\.path) == [c.path], "\(report)")
        #expect(report.errors.allSatisfy { $0.line != nil && $0.column != nil })
    }

    @Test(arguments: cases)
    func lenientServesEveryFlagAndAnswersAsTheReference(_ c: Case) throws {
        let snapshot = try compiled(Self.document(c.flag), mode: .lenient)
        #expect(snapshot.warnings.map(\.path).contains(c.path), "\(snapshot.warnings)")
        #expect(snapshot.evaluate("ok", context: EvaluationContext(), type: .string).value == "served")
        for (type, value, variant, reason, errorCode) in c.answers {
            let result = snapshot.evaluate("f", context: EvaluationContext(), type: type)
            #expect(result.value == value, "\(c.name) as \(type?.rawValue ?? "untyped")")
            #expect(result.variant == variant, "\(c.name) as \(type?.rawValue ?? "untyped")")
            #expect(result.reason == reason, "\(c.name) as \(type?.rawValue ?? "untyped"): \(result.errorMessage ?? "")")
            #expect(result.errorCode == errorCode, "\(c.name) as \(type?.rawValue ?? "untyped")")
            // The reply a daemon lends says the same.
            var lent: (served: String?, reason: Reason, errorCode: ErrorCode?)?
            snapshot.withResult("f", context: EvaluationContext(), type: type) { e in
                lent = (e.served.map { String(decoding: $0, as: UTF8.self) }, e.reason, e.errorCode)
            }
            let served = result.value.map { value in
                var text: [UInt8] = []
                EncodedResult.writeServed(value, variant: result.variant, into: &text)
                return String(decoding: text, as: UTF8.self)
            }
            #expect(lent?.served == served && lent?.reason == reason && lent?.errorCode == errorCode)
        }
    }

    /// What the reference refuses the whole file for (a flag without a state, without variants,
    /// with metadata that is not scalars, …) lenient mode loads *broken*: that one flag answers
    /// every evaluation with ERROR / PARSE_ERROR naming its problem, the other flags are served,
    /// and the problem is a warning. Strict mode refuses the file, naming it.
    @Test(arguments: [
        #""variants": {"on": true}"#,
        #""state": "on", "variants": {"on": true}"#,
        #""state": "ENABLED", "variants": {}"#,
        #""state": "ENABLED", "variants": [true]"#,
        #""state": "ENABLED", "variants": {"on": true}, "defaultVariant": 1"#,
        #""state": "ENABLED", "variants": {"on": true}, "metadata": [1]"#,
        #""state": "ENABLED", "variants": {"on": true}, "metadata": {"a": null}"#,
        #""state": "ENABLED", "variants": {"on": true}, "metadata": {"": 1}"#,
        #""state": "DISABLED""#,
    ])
    func lenientLoadsAFlagTheReferenceRefusesBroken(flag: String) throws {
        let strict = rejection(Self.document(flag))
        #expect(strict.errors.count == 1 && strict.errors[0].path.hasPrefix("flags.f"), "\(strict)")
        let snapshot = try compiled(Self.document(flag), mode: .lenient)
        #expect(snapshot.warnings.contains { $0.path == strict.errors[0].path && !$0.message.isEmpty })
        #expect(snapshot.evaluate("ok", context: EvaluationContext(), type: .string).value == "served")
        for type in [ValueType.boolean, .string, nil] {
            let result = snapshot.evaluate("f", context: EvaluationContext(), type: type)
            #expect(result.reason == .error && result.errorCode == .parseError && result.value == nil)
            #expect(result.errorMessage?.contains("could not be loaded") == true, "\(result)")
        }
        var lent: (Reason, ErrorCode?)?
        snapshot.withResult("f", context: EvaluationContext()) { lent = ($0.reason, $0.errorCode) }
        #expect(lent?.0 == .error && lent?.1 == .parseError)
        // A flag that is not even an object is loaded broken too; a document-level problem is not.
        _ = try compiled(#"{"flags": {"f": [1], "ok": {"state": "ENABLED", "variants": {"s": "served"}, "defaultVariant": "s"}}}"#, mode: .lenient)
        #expect(rejection(#"{"flags": [1]}"#, mode: .lenient).errors.count == 1)
    }

    /// Compile reuse keeps such a flag as it was compiled, and replays its warning.
    @Test func reuseReplaysTheWarningsOfALenientFlag() throws {
        let options = CompileOptions(mode: .lenient)
        let first = try Snapshot.compile(json: Array(Self.document(Self.cases[3].flag).utf8), options: options)
        let edited = Self.document(Self.cases[3].flag).replacingOccurrences(of: #""served""#, with: #""changed""#)
        let second = try Snapshot.compile(json: Array(edited.utf8), options: options, reusing: first)
        #expect(second.compiledCount == 1)
        #expect(second.warnings.map(\.path) == ["flags.f.targeting"])
        #expect(second.evaluate("f", context: EvaluationContext()).errorCode == .parseError)
        #expect(second.evaluate("ok", context: EvaluationContext()).value == "changed")
        // Strict mode refuses what lenient mode compiled, reused or not.
        #expect(throws: ValidationReport.self) {
            try Snapshot.compile(json: Array(edited.utf8), options: CompileOptions(mode: .strict), reusing: first)
        }
    }

    @Test func documentLevelOdditiesTheReferenceLoads() throws {
        // No `flags` at all: no flags. A false-like `$evaluators`, a `$schema` that is not a string: ignored.
        for document in [#"{"metadata": {"a": 1}}"#, #"{"flags": {}, "$evaluators": []}"#, #"{"flags": {}, "$schema": 3}"#] {
            _ = rejection(document)
            let snapshot = try compiled(document, mode: .lenient)
            #expect(snapshot.count == 0)
            #expect(snapshot.warnings.count == 1)
        }
    }
}
