import GuidonJSON
import Testing

@testable import GuidonEngine

/// Compiles `json`, expecting a rejection; returns the report.
func rejection(_ json: String, mode: CompileOptions.Mode = .strict, sourceLocation: SourceLocation = #_sourceLocation) -> ValidationReport {
    do {
        _ = try Snapshot.compile(json: Array(json.utf8), options: CompileOptions(mode: mode))
        Issue.record("document was accepted", sourceLocation: sourceLocation)
        return ValidationReport(errors: [])
    } catch {
        return error
    }
}

func compiled(_ json: String, mode: CompileOptions.Mode = .strict, now: Int64 = 1_750_000_000) throws -> Snapshot {
    try Snapshot.compile(json: Array(json.utf8), options: CompileOptions(mode: mode, clock: { now }))
}

/// A document with one flag `f` built from the given members.
func flagDocument(_ members: String, extra: String = "") -> String {
    #"{"flags": {"f": {\#(members)}}\#(extra)}"#
}

let validVariants = #""state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on""#

@Suite struct ValidationTests {
    /// Asserts the report holds exactly one error, at `path`, with `message`.
    func expectSingleError(_ report: ValidationReport, path: String, message: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(report.errors.count == 1, "\(report)", sourceLocation: sourceLocation)
        guard let error = report.errors.first else { return }
        #expect(error.path == path, sourceLocation: sourceLocation)
        #expect(error.message == message, sourceLocation: sourceLocation)
        #expect(error.severity == .error, sourceLocation: sourceLocation)
    }

    // MARK: Syntax

    @Test func unparsableJSONReportsLineAndColumn() {
        let report = rejection("{\n  \"flags\": {\n    \"a\": {,}\n  }\n}")
        #expect(report.errors.count == 1)
        #expect(report.errors[0].path == "$")
        #expect(report.errors[0].line == 3)
        #expect(report.errors[0].column == 11)
        #expect(report.errors[0].message.contains("expected a string key"))
    }

    @Test func duplicateKeysAreRejected() {
        let report = rejection(#"{"flags": {"a": {"state": "ENABLED", "state": "DISABLED", "variants": {"x": 1}}}}"#)
        #expect(report.errors.first?.message == "duplicate key \"state\" in object")
        #expect(report.errors.first?.line == 1)
        #expect(report.errors.first?.column == 38)
    }

    // MARK: Document structure

    @Test func documentMustBeAnObject() {
        expectSingleError(rejection("[1, 2]"), path: "$",
            message: "a flag document must be a JSON object with a \"flags\" member, not an array")
    }

    @Test func missingFlags() {
        expectSingleError(rejection(#"{"metadata": {}}"#), path: "$",
            message: "missing \"flags\": a flag document needs a \"flags\" object (flag key → flag definition)")
    }

    @Test func flagsMustBeAnObject() {
        expectSingleError(rejection(#"{"flags": ["a"]}"#), path: "flags",
            message: "must be an object mapping flag keys to flag definitions, not an array")
    }

    @Test func flagMustBeAnObject() {
        expectSingleError(rejection(#"{"flags": {"beta": true}}"#), path: "flags.beta",
            message: "a flag must be an object with \"state\" and \"variants\", not a boolean")
    }

    @Test func evaluatorsMustBeAnObject() {
        expectSingleError(rejection(#"{"flags": {}, "$evaluators": [1]}"#), path: "$evaluators",
            message: "must be an object mapping names to JSON Logic rules, not an array")
    }

    @Test func schemaMustBeAString() {
        expectSingleError(rejection(#"{"flags": {}, "$schema": 3}"#), path: "$schema",
            message: "must be a string (a schema URL), not an integer")
    }

    // MARK: state

    @Test func missingState() {
        expectSingleError(rejection(flagDocument(#""variants": {"on": true}"#)), path: "flags.f",
            message: "missing \"state\" (\"ENABLED\" or \"DISABLED\")")
    }

    @Test func badState() {
        expectSingleError(rejection(flagDocument(#""state": "enabled", "variants": {"on": true}"#)), path: "flags.f.state",
            message: "\"enabled\" is not a valid state; use \"ENABLED\" or \"DISABLED\" (states are upper-case)")
        expectSingleError(rejection(flagDocument(#""state": true, "variants": {"on": true}"#)), path: "flags.f.state",
            message: "true is not a valid state; use \"ENABLED\" or \"DISABLED\"")
    }

    // MARK: variants

    @Test func missingVariants() {
        expectSingleError(rejection(flagDocument(#""state": "ENABLED""#)), path: "flags.f",
            message: "missing \"variants\": an object mapping variant names to values, e.g. {\"on\": true, \"off\": false}")
    }

    @Test func variantsMustBeAnObject() {
        expectSingleError(rejection(flagDocument(#""state": "ENABLED", "variants": [true, false]"#)), path: "flags.f.variants",
            message: "must be an object mapping variant names to values, not an array")
    }

    @Test func emptyVariants() {
        expectSingleError(rejection(flagDocument(#""state": "ENABLED", "variants": {}"#)), path: "flags.f.variants",
            message: "a flag needs at least one variant")
    }

    @Test func mixedVariantTypes() {
        expectSingleError(rejection(flagDocument(#""state": "ENABLED", "variants": {"on": true, "off": "no"}"#)),
            path: "flags.f.variants.off",
            message: "is a string, but variant \"on\" is a boolean; all variants of a flag must have the same type")
    }

    @Test func integersAndFloatsAreOneType() throws {
        let snapshot = try compiled(flagDocument(#""state": "ENABLED", "variants": {"a": 1, "b": 2.5}, "defaultVariant": "a""#))
        #expect(snapshot.count == 1)
    }

    @Test func nullAndArrayVariantsAreRejected() {
        let report = rejection(flagDocument(#""state": "ENABLED", "variants": {"a": null, "b": [1]}"#))
        #expect(report.errors.map(\.path) == ["flags.f.variants.a", "flags.f.variants.b"])
        #expect(report.errors.map(\.message) == [
            "variant values must be booleans, strings, numbers or objects, not a null",
            "variant values must be booleans, strings, numbers or objects, not an array",
        ])
    }

    // MARK: defaultVariant

    @Test func defaultVariantMustNameAVariant() {
        let doc = #"{"flags": {"beta": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "of"}}}"#
        let report = rejection(doc)
        expectSingleError(report, path: "flags.beta.defaultVariant",
            message: "\"of\" is not one of the variants (\"on\", \"off\"); did you mean \"on\"? (serving the default would fail with GENERAL)")
        #expect(report.errors[0].line == 1)
        #expect(report.errors[0].column == 99)
    }

    @Test func defaultVariantWithoutCloseMatch() {
        expectSingleError(rejection(flagDocument(#""state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "enabled-for-all""#)),
            path: "flags.f.defaultVariant",
            message: "\"enabled-for-all\" is not one of the variants (\"on\", \"off\") (serving the default would fail with GENERAL)")
    }

    @Test func defaultVariantMustBeAStringOrNull() {
        expectSingleError(rejection(flagDocument(#""state": "ENABLED", "variants": {"on": true}, "defaultVariant": 1"#)),
            path: "flags.f.defaultVariant", message: "must be a variant name (a string) or null, not an integer")
    }

    @Test func absentNullOrEmptyDefaultVariantMeansNone() throws {
        for member in ["", #", "defaultVariant": null"#, #", "defaultVariant": """#] {
            let snapshot = try compiled(flagDocument(#""state": "ENABLED", "variants": {"on": true}"# + member))
            let result = snapshot.evaluate("f", context: EvaluationContext())
            #expect(result.reason == .default)
            #expect(result.value == nil)
            #expect(snapshot.info("f")?.defaultVariant == nil)
        }
    }

    // MARK: targeting

    @Test func targetingMustBeAnObject() {
        expectSingleError(rejection(flagDocument(validVariants + #", "targeting": "on""#)), path: "flags.f.targeting",
            message: "must be a JSON Logic rule (an object), or {} for none, not a string (flagd answers PARSE_ERROR)")
    }

    @Test func unknownOperatorWithSuggestion() {
        let report = rejection(flagDocument(validVariants + #", "targeting": {"if": [{"starts-with": [{"var": "email"}, "a"]}, "on", "off"]}"#))
        expectSingleError(report, path: "flags.f.targeting.if[0].starts-with",
            message: "unknown operator \"starts-with\"; did you mean \"starts_with\"?")
    }

    @Test func unknownReference() {
        let report = rejection(flagDocument(validVariants + #", "targeting": {"if": [{"$ref": "staf"}, "on", "off"]}"#,
            extra: #", "$evaluators": {"staff": {"==": [1, 1]}}"#))
        expectSingleError(report, path: "flags.f.targeting.if[0].$ref",
            message: "no evaluator named \"staf\" in $evaluators (defined: \"staff\")")
    }

    @Test func referenceCycle() {
        let report = rejection(flagDocument(validVariants + #", "targeting": {"$ref": "a"}"#,
            extra: #", "$evaluators": {"a": {"!": {"$ref": "b"}}, "b": {"!": {"$ref": "a"}}}"#))
        #expect(report.errors.count == 1)
        #expect(report.errors.first?.path == "$evaluators.b.!.$ref")
        #expect(report.errors.first?.message == "evaluator \"a\" refers to itself through $ref")
    }

    @Test func problemsInsideEvaluatorsAreReportedAtTheEvaluator() {
        let report = rejection(flagDocument(validVariants + #", "targeting": {"$ref": "x"}"#,
            extra: #", "$evaluators": {"x": {"ends_with": [{"var": "email"}]}}"#))
        expectSingleError(report, path: "$evaluators.x.ends_with",
            message: "\"ends_with\" takes 2 arguments (a string and a suffix), but has 1 argument")
    }

    @Test(arguments: [
        (#"{"==": [1, 2, 3]}"#, "targeting.==", "\"==\" takes 2 arguments, but has 3 arguments"),
        (#"{"<": [1]}"#, "targeting.<", "\"<\" takes 2 arguments (or 3, for a range), but has 1 argument"),
        (#"{"!": [1, 2]}"#, "targeting.!", "\"!\" takes 1 argument, but has 2 arguments"),
        (#"{"-": [1, 2, 3]}"#, "targeting.-", "\"-\" takes 1 or 2 arguments (further ones would be ignored), but has 3 arguments"),
        (#"{"/": [1]}"#, "targeting./", "\"/\" takes 2 arguments, but has 1 argument"),
        (#"{"in": ["a"]}"#, "targeting.in", "\"in\" takes 2 arguments (what to look for, and a string or list to look in), but has 1 argument"),
        (#"{"var": ["a", 1, 2]}"#, "targeting.var", "\"var\" takes a path and an optional default, but has 3 arguments"),
        (#"{"map": [[1]]}"#, "targeting.map", "\"map\" takes 2 arguments (a list, and the rule applied to each item), but has 1 argument"),
        (#"{"substr": ["abc"]}"#, "targeting.substr", "\"substr\" takes a string, a start and an optional length, but has 1 argument"),
        (#"{"missing_some": [1]}"#, "targeting.missing_some", "\"missing_some\" takes 2 arguments (how many are needed, and a list of keys), but has 1 argument"),
        (#"{"sem_ver": [{"var": "v"}, ">="]}"#, "targeting.sem_ver", "\"sem_ver\" takes 3 arguments (version, operator, version), but has 2 arguments"),
        (#"{"sem_ver": [{"var": "v"}, "=>", "1.0.0"]}"#, "targeting.sem_ver[1]", "\"=>\" is not a sem_ver operator; use one of \"=\", \"!=\", \"<\", \"<=\", \">\", \">=\", \"^\", \"~\""),
        (#"{"sem_ver": [{"var": "v"}, ">=", "1.x"]}"#, "targeting.sem_ver[2]", "\"1.x\" is not a semantic version (expected e.g. \"1.4.0\")"),
        (#"{"starts_with": [{"var": "v"}, 7]}"#, "targeting.starts_with[1]", "\"starts_with\" compares strings, but this argument is an integer; the result would always be null"),
        (#"{"fractional": []}"#, "targeting.fractional", "\"fractional\" needs at least one bucket, e.g. [\"on\", 50]"),
        (#"{"fractional": ["seed"]}"#, "targeting.fractional", "\"fractional\" has a bucketing value but no buckets"),
        (#"{"fractional": [["on", 50.0], ["off", 50]]}"#, "targeting.fractional[0][1]", "a fractional weight must be an integer, not 50.0; the result would always be null"),
        (#"{"fractional": [["on", 1, 2]]}"#, "targeting.fractional[0]", "a fractional bucket must be [name] or [name, weight], but this one has 3 elements"),
        (#"{"fractional": [["on"], "off"]}"#, "targeting.fractional[1]", "a fractional bucket must be [name] or [name, weight], not a string"),
        (#"{"fractional": [["on", 0], ["off", 0]]}"#, "targeting.fractional", "every fractional weight is 0; the result would always be null"),
        (#"{"fractional": [["on", 2147483647], ["off", 1]]}"#, "targeting.fractional", "fractional weights add up to 2147483648, more than the maximum 2147483647; the result would always be null"),
    ])
    func targetingProblems(rule: String, path: String, message: String) {
        let report = rejection(flagDocument(validVariants + #", "targeting": "# + rule))
        expectSingleError(report, path: "flags.f." + path, message: message)
        #expect(report.errors.first?.line == 1)
    }

    // MARK: metadata

    @Test func metadataValuesMustBeScalars() {
        let report = rejection(flagDocument(validVariants + #", "metadata": {"owner": "x", "tags": ["a"]}"#,
            extra: #", "metadata": {"nested": {"a": 1}, "ok": 1.5}"#))
        #expect(report.errors.map(\.path) == ["metadata.nested", "flags.f.metadata.tags"])
        #expect(report.errors.map(\.message) == [
            "metadata values must be strings, numbers or booleans, not an object",
            "metadata values must be strings, numbers or booleans, not an array",
        ])
    }

    @Test func metadataMustBeAnObject() {
        expectSingleError(rejection(flagDocument(validVariants + #", "metadata": "owner=x""#)), path: "flags.f.metadata",
            message: "must be an object of strings, numbers and booleans, not a string")
    }

    // MARK: Reporting

    @Test func everyProblemIsReportedAtOnce() {
        let doc = """
            {
              "flags": {
                "a": {"state": "ON", "variants": {"x": 1}},
                "b": {"state": "ENABLED", "variants": {"x": 1, "y": "2"}, "defaultVariant": "z"},
                "c": {"state": "ENABLED", "variants": {"x": 1}, "targeting": {"nope": []}}
              }
            }
            """
        let report = rejection(doc)
        #expect(report.errors.map(\.path) == [
            "flags.a.state", "flags.b.variants.y", "flags.b.defaultVariant", "flags.c.targeting.nope",
        ])
        #expect(report.errors.map(\.line) == [3, 4, 4, 5])
        #expect(report.description.contains("error: flags.a.state (line 3, column 20): \"ON\" is not a valid state"))
    }

    @Test func oddKeysAreQuotedInPaths() {
        let report = rejection(#"{"flags": {"new checkout.v2": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "b"}}}"#)
        #expect(report.errors.first?.path == #"flags["new checkout.v2"].defaultVariant"#)
    }

    @Test func unknownMembersAreWarnings() throws {
        let snapshot = try compiled(#"{"flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "owner": "me"}}, "extra": 1}"#)
        #expect(snapshot.warnings.map(\.path) == ["extra", "flags.f.owner"])
        #expect(snapshot.warnings.allSatisfy { $0.severity == .warning })
        #expect(snapshot.warnings[1].message.hasPrefix("unknown member \"owner\" is ignored"))
    }

    @Test func warningsTravelWithARejection() {
        let report = rejection(#"{"flags": {"f": {"state": "ON", "variants": {"on": true}, "owner": "me"}}}"#)
        #expect(report.errors.count == 1)
        #expect(report.warnings.map(\.path) == ["flags.f.owner"])
    }

    // MARK: Strict and lenient

    @Test func lenientLoadsBrokenTargetingAndAnswersLikeTheReference() throws {
        let doc = #"""
            {"flags": {
              "regex": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "b",
                        "targeting": {"if": [{"regex_match": [{"var": "email"}, "^a"]}, "a", "b"]}},
              "ref": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "b",
                      "targeting": {"if": [{"$ref": "missing"}, "a", "b"]}},
              "arity": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "b",
                        "targeting": {"if": [{"starts_with": [{"var": "email"}]}, "a", "b"]}},
              "fine": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a"}
            }}
            """#
        let strict = rejection(doc)
        #expect(strict.errors.map(\.path) == [
            "flags.regex.targeting.if[0].regex_match", "flags.ref.targeting.if[0].$ref", "flags.arity.targeting.if[0].starts_with",
        ])
        let snapshot = try compiled(doc, mode: .lenient)
        #expect(snapshot.warnings.map(\.path) == strict.errors.map(\.path))
        let context = EvaluationContext(json: ["email": "alice@example.com"])
        let regex = snapshot.evaluate("regex", context: context)
        #expect(regex.reason == .error && regex.errorCode == .parseError && regex.value == nil)
        #expect(regex.errorMessage?.contains("regex_match") == true)
        let ref = snapshot.evaluate("ref", context: context)
        #expect(ref.reason == .error && ref.errorCode == .parseError)
        let arity = snapshot.evaluate("arity", context: context)
        #expect(arity.reason == .targetingMatch && arity.variant == "b")  // null falls through the if
        #expect(snapshot.evaluate("fine", context: context).reason == .static)
    }
}
