import GuidonJSON
import Testing

@testable import GuidonEngine

/// Issue 11, part 3: operator behaviours where Guidon differed from both the reference evaluator
/// and json-logic-js (each expectation here is what both answer, unless said otherwise).
@Suite struct OperatorDeviationTests {
    @Test(arguments: [
        (#"{"var": "s.length"}"#, #"{"s": "abc"}"#, "3"),
        (#"{"var": "s.length"}"#, #"{"s": "x🚀y"}"#, "3"),  // code points, as string indexes
        (#"{"var": "a.length"}"#, #"{"a": [1, 2]}"#, "2"),
        (#"{"var": "o.length"}"#, #"{"o": {"length": "own"}}"#, #""own""#),
        (#"{"var": ["n.length", "dflt"]}"#, #"{"n": 12}"#, #""dflt""#),
        (#"{"var": "s.length.x"}"#, #"{"s": "abc"}"#, "null"),  // json-logic-js (the reference stops at length)
        (#"{"missing": ["s.length", "e.length"]}"#, #"{"s": "abc", "e": ""}"#, "[]"),
        (#"{"missing_some": [2, ["a.length", "b"]]}"#, #"{"a": [], "b": 1}"#, "[]"),
        // Only null and "" name the whole data; a key whose text is empty names the member "".
        (#"{"var": [[], "dflt"]}"#, #"{"a": 1}"#, #""dflt""#),
        (#"{"var": {"merge": []}}"#, #"{"": 5}"#, "5"),
        (#"{"missing": [[[]]]}"#, #"{"a": 1}"#, "[[]]"),
    ])
    func varReadsLength(rule: String, data: String, expected: String) throws {
        #expect(try evaluate(rule, data).jsonEquals(try JSONParser().parse(expected)), "\(rule) on \(data)")
    }

    @Test func reduceTakesItsInitialValueAsWritten() throws {
        #expect(try evaluate(#"{"reduce": [[], {"var": "current"}, {"+": [1, 1]}]}"#) == .object(["+": [1, 1]]))
        #expect(try evaluate(#"{"reduce": [{"var": "x"}, {"var": "current"}, {"var": "y"}]}"#) == .object(["var": "y"]))
        #expect(try evaluate(#"{"reduce": [[1, 2], {"+": [{"var": "current"}, {"var": "accumulator"}]}, 10]}"#) == .int(13))
    }

    @Test func addAndMultiplyConvertLikeParseFloat() throws {
        #expect(try evaluate(#"{"+": [" ", 10]}"#).number?.isNaN == true)
        #expect(try evaluate(#"{"+": ["0x10", 1]}"#) == .double(1))
        #expect(try evaluate(#"{"*": ["0x10", 1]}"#) == .double(0))
        #expect(try evaluate(#"{"*": ["0b1", 2]}"#) == .double(0))
        #expect(try evaluate(#"{"+": ["\u00a0 7 apples", 1]}"#) == .double(8))
        #expect(try evaluate(#"{"+": ["1e", 1]}"#) == .double(2))
        #expect(try evaluate(#"{"+": ["-Infinity", 1]}"#) == .double(-.infinity))
        #expect(try evaluate(#"{"+": [false, 1]}"#).number?.isNaN == true)
        #expect(try evaluate(#"{"+": [{"a": 1, "b": 2}, 1]}"#).number?.isNaN == true)
        // `-`, `/`, `%` and comparisons convert with Number, as JavaScript's operators do.
        #expect(try evaluate(#"{"-": ["0x10", 0]}"#) == .double(16))
        #expect(try evaluate(#"{"<": [" ", 1]}"#) == .bool(true))
    }

    @Test(arguments: [#"{">=": ["2"]}"#, #"{"<": [1]}"#, #"{"<=": [null]}"#, #"{">": []}"#, #"{"<=": []}"#])
    func aComparisonWithOneOperandIsFalse(rule: String) throws {
        #expect(try evaluate(rule) == .bool(false))
    }

    @Test func strictEqualityWithAMissingOperand() throws {
        #expect(try evaluate(#"{"===": [null]}"#) == .bool(false))
        #expect(try evaluate(#"{"!==": [null]}"#) == .bool(true))
        #expect(try evaluate(#"{"==": [null]}"#) == .bool(true))
        #expect(try evaluate(#"{"==": [0]}"#) == .bool(false))
    }

    @Test func logReturnsItsArgument() throws {
        #expect(try evaluate(#"{"log": [{"var": "a"}]}"#, #"{"a": [1]}"#) == [1])
        #expect(try evaluate(#"{"log": "x"}"#) == "x")
        #expect(try evaluate(#"{"log": []}"#) == .null)
        let rule = Rule(try JSONParser().parse(#"{"log": 1}"#))
        #expect(rule.problems.isEmpty)
    }

    @Test func joinAndInFollowJsonLogicJs() throws {
        #expect(try evaluate(#"{"cat": ["a", null, "b"]}"#) == "ab")
        #expect(try evaluate(#"{"in": ["", ""]}"#) == .bool(false))
        #expect(try evaluate(#"{"in": ["", "a"]}"#) == .bool(true))
    }

    /// A flag whose targeting is `rule`, compiled leniently, evaluated with `context`.
    func answer(_ rule: String, variants: String = #"{"on": true, "off": false, "": true}"#, context: JSONObject = [:]) throws
        -> EvaluationResult
    {
        let document = #"{"flags": {"f": {"state": "ENABLED", "variants": \#(variants), "defaultVariant": "off", "targeting": \#(rule)}}}"#
        return try compiled(document, mode: .lenient).evaluate("f", context: EvaluationContext(json: context), type: .boolean)
    }

    /// Both references evaluate an operator's arguments before the operator.
    @Test(arguments: [
        #"{"fractional": [{"nope": []}]}"#,
        #"{"sem_ver": [{"Var": "n"}, ">=", "1.0.0"]}"#,
        #"{"starts_with": [{"nope": 1}]}"#,
        #"{"ends_with": ["a", {"$ref": "missing"}, "b"]}"#,
        #"{"if": [{"var": ["n", {"nope": 1}]}, "on", "off"]}"#,
        #"{"if": [{"<": [2, 1, {"nope": 1}]}, "on", "off"]}"#,
        #"{"fractional": ["seed", ["on", 1], [{"nope": 1}, 0]]}"#,
        #"{"fractional": [{"var": "missing"}, ["on", 1], ["off", {"nope": 1}]]}"#,
        #"{"if": [{"missing": [["a"], {"nope": 1}]}, "on", "off"]}"#,
    ])
    func aFailureInsideAnotherOperatorIsAParseError(rule: String) throws {
        let result = try answer(rule, context: ["n": 1, "a": 1])
        #expect(result.reason == .error)
        #expect(result.errorCode == .parseError, "\(rule): \(result)")
    }

    /// Special forms evaluate lazily in both references: a failure they do not reach is none.
    @Test func aFailureInABranchNotTakenIsNone() throws {
        #expect(try answer(#"{"if": [true, "on", {"nope": 1}]}"#).variant == "on")
        #expect(try answer(#"{"if": [{"or": [true, {"nope": 1}]}, "on", "off"]}"#).variant == "on")
        #expect(try answer(#"{"if": [{"reduce": [[], {"var": "current"}, {"nope": 1}]}, "on", "off"]}"#).variant == "on")
    }

    /// Found by the differential test: a lone `fractional` argument that is a rule is a bucket
    /// when it evaluates to one (the reference decides after evaluating it).
    @Test func aLoneComputedFractionalArgumentCanBeABucket() throws {
        let result = try answer(#"{"fractional": [{"if": [true, ["on", 1], ["off", 1]]}]}"#, context: ["targetingKey": "u3"])
        #expect(result.variant == "on")
        #expect(try answer(#"{"fractional": [{"var": "n"}]}"#, context: ["targetingKey": "u3", "n": 1]).reason == .default)
    }

    @Test func anEmptyTargetingResultNamesNoVariant() throws {
        for rule in [#"{"if": [true, ""]}"#, #"{"cat": [""]}"#, #"{"var": "e"}"#] {
            let result = try answer(rule, context: ["e": ""])
            #expect(result.reason == .error && result.errorCode == .general, "\(rule): \(result)")
        }
    }
}
