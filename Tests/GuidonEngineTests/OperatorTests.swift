import GuidonJSON
import Testing

@testable import GuidonEngine

func evaluate(_ rule: String, _ data: String = "{}") throws -> JSONValue {
    let parsedRule = try JSONParser().parse(rule)
    let parsedData = try JSONParser().parse(data)
    return try Rule(parsedRule).evaluate(data: parsedData)
}

/// One operator behaviour per row: rule, data, expected result (compared as JSON, numbers by value).
@Suite struct OperatorTests {
    static let cases: [(String, String, String)] = [
        // var
        (#"{"var": "a.b.1"}"#, #"{"a": {"b": [5, 6]}}"#, "6"),
        (#"{"var": ["a.x", "dflt"]}"#, #"{"a": {}}"#, #""dflt""#),
        (#"{"var": ""}"#, "[1, 2]", "[1, 2]"),
        (#"{"var": {"cat": ["a", ".", "b"]}}"#, #"{"a": {"b": 3}}"#, "3"),
        (#"{"var": "s.1"}"#, #"{"s": "x🚀y"}"#, #""🚀""#),
        (#"{"var": "a.01"}"#, #"{"a": [1, 2]}"#, "null"),
        // missing / missing_some
        (#"{"missing": ["a", "b.c"]}"#, #"{"a": 1, "b": {"c": ""}}"#, #"["b.c"]"#),
        (#"{"missing_some": [1, ["a", "b"]]}"#, #"{"b": 0}"#, "[]"),
        // if
        (#"{"if": [false, 1, null, 2, 3]}"#, "{}", "3"),
        (#"{"?:": [0, "a", "b"]}"#, "{}", #""b""#),
        // equality, JavaScript-style
        (#"{"==": [" 42 ", 42]}"#, "{}", "true"),
        (#"{"==": ["0x10", 16]}"#, "{}", "true"),
        (#"{"==": ["", 0]}"#, "{}", "true"),
        (#"{"==": [null, 0]}"#, "{}", "false"),
        (#"{"==": [{"a": 1, "b": 2}, "[object Object]"]}"#, "{}", "true"),
        (#"{"==": ["\u00e9", "e\u0301"]}"#, "{}", "false"),  // code points, not canonical equivalence
        (#"{"===": [[1, 2], [1, 2]]}"#, "{}", "true"),
        (#"{"!==": [1, 1.0]}"#, "{}", "false"),
        // ordering
        (#"{"<": ["a", "b", "c"]}"#, "{}", "true"),
        (#"{"<": [[2], 10]}"#, "{}", "true"),
        (#"{"<=": [null, 0]}"#, "{}", "true"),
        (#"{">": [65, 40, 18]}"#, "{}", "true"),  // 3-argument ">" is a descending range
        (#"{">": [65, 70, 18]}"#, "{}", "false"),
        (#"{">=": [10, 10, 1]}"#, "{}", "true"),
        (#"{"<": ["abc", "abd"]}"#, "{}", "true"),
        (#"{"<": [1, "x"]}"#, "{}", "false"),
        // logic
        (#"{"!": [[]]}"#, "{}", "true"),
        (#"{"!!": ["0"]}"#, "{}", "true"),
        (#"{"and": [1, "x", [0]]}"#, "{}", "[0]"),
        (#"{"or": [0, "", null]}"#, "{}", "null"),
        // arithmetic
        (#"{"+": ["1e3", 1]}"#, "{}", "1001"),
        (#"{"+": [true, 1]}"#, "{}", "null"),  // parseFloat(true) is NaN (json-logic-js)
        (#"{"+": [null, 1]}"#, "{}", "1"),  // null is 0 (the reference evaluator; pinned by the conformance suite)
        (#"{"+": ["12abc", " 3", [4, 5]]}"#, "{}", "19"),  // parseFloat: a numeric prefix, leading white space
        (#"{"+": [" ", 10]}"#, "{}", "null"),  // NaN: parseFloat is not Number
        (#"{"*": ["0x10", 1]}"#, "{}", "0"),
        (#"{"*": ["3"]}"#, "{}", #""3""#),  // json-logic-js folds `*` without a start value: one operand as it is
        (#"{"+": ["-.5e1x"]}"#, "{}", "-5"),
        (#"{"-": ["0x10", " "]}"#, "{}", "16"),  // `-` converts with Number: hexadecimal, blank is 0
        (#"{"-": [9223372036854775807, -1]}"#, "{}", "9223372036854775808.0"),
        (#"{"*": [3, 0.5]}"#, "{}", "1.5"),
        (#"{"%": [-7, 3]}"#, "{}", "-1"),
        (#"{"%": [7.5, -2]}"#, "{}", "1.5"),
        (#"{"min": [3, "2", 4]}"#, "{}", "2"),
        (#"{"max": [1, "x"]}"#, "{}", "null"),  // NaN, which JSON writes as null
        (#"{"max": []}"#, "{}", "null"),
        // in
        (#"{"in": ["b", "abc"]}"#, "{}", "true"),
        (#"{"in": [1.5, "v1.5"]}"#, "{}", "true"),
        (#"{"in": [{"var": "t"}, ["gold", "silver", "a", "b", "c", "d", "e", "f", "g", "h"]]}"#, #"{"t": "h"}"#, "true"),
        (#"{"in": [{"var": "t"}, ["gold", "silver", "a", "b", "c", "d", "e", "f", "g", "h"]]}"#, #"{"t": "i"}"#, "false"),
        (#"{"in": [{"var": "t"}, ["1", "2"]]}"#, #"{"t": 1}"#, "false"),
        // strings
        (#"{"cat": [1e21, "|", 0.000001, "|", 1e-7, "|", 123456789012345680000, "|", -0.5]}"#, "{}",
            #""1e+21|0.000001|1e-7|123456789012345680000|-0.5""#),
        (#"{"cat": [null, true, [1, [2, null]], {"a": 1, "b": 2}]}"#, "{}", #""true1,2,[object Object]""#),  // join: null is ""
        (#"{"substr": ["🚀abc", 1]}"#, "{}", #""abc""#),
        (#"{"substr": ["abcdef", -3, -1]}"#, "{}", #""de""#),
        (#"{"substr": ["abc", "x", 2]}"#, "{}", #""ab""#),
        // arrays
        (#"{"merge": [[1], 2, [[3]]]}"#, "{}", "[1, 2, [3]]"),
        (#"{"map": [[1, 2], {"+": [{"var": ""}, 1]}]}"#, "{}", "[2, 3]"),
        (#"{"filter": [[1, 2, 3], {"%": [{"var": ""}, 2]}]}"#, "{}", "[1, 3]"),
        (#"{"reduce": [[1, 2, 3], {"+": [{"var": "accumulator"}, {"var": "current"}]}]}"#, "{}", "6"),
        (#"{"all": [[1, 2], {">": [{"var": ""}, 0]}]}"#, "{}", "true"),
        (#"{"none": [[1, 2], {">": [{"var": ""}, 1]}]}"#, "{}", "false"),
        (#"{"some": ["12", true]}"#, "{}", "false"),
        // custom operators
        (#"{"starts_with": [{"var": "p"}, "/admin"]}"#, #"{"p": "/admin/users"}"#, "true"),
        (#"{"ends_with": ["file.pdf", ".PDF"]}"#, "{}", "false"),
        (#"{"ends_with": ["a", "ba"]}"#, "{}", "false"),
        (#"{"starts_with": [["a"], "a"]}"#, "{}", "null"),
        (#"{"sem_ver": ["100000000000000000000.0.0", ">", "99999999999999999999.9.9"]}"#, "{}", "true"),
        (#"{"sem_ver": ["1.2.3-rc.1", "<", "1.2.3"]}"#, "{}", "true"),
        (#"{"sem_ver": ["1.2.3-alpha.10", ">", "1.2.3-alpha.9"]}"#, "{}", "true"),
        (#"{"sem_ver": ["1.2.3-01", "=", "1.2.3"]}"#, "{}", "null"),
        (#"{"sem_ver": [{"var": "v"}, {"var": "op"}, "2.0.0"]}"#, #"{"v": "2.1.0", "op": "~"}"#, "false"),
        (#"{"sem_ver": [{"var": "v"}, {"var": "op"}, "2.0.0"]}"#, #"{"v": "2.1.0", "op": "≥"}"#, "null"),
        (#"{"sem_ver": ["2.0.0", "^", "2.9.1"]}"#, "{}", "true"),
        (#"{"sem_ver": [2.0, "=", "2.0.0"]}"#, "{}", "true"),
        (#"{"sem_ver": [1e16, "!=", "2.0.0"]}"#, "{}", "null"),  // the reference reads "1e+16": no version
        (#"{"fractional": [["only"]]}"#, #"{"targetingKey": "k", "$flagd": {"flagKey": "f"}}"#, #""only""#),
        (#"{"fractional": [{"var": "seed"}, ["a", 0], ["b", 0]]}"#, #"{"seed": ["c", 1], "targetingKey": "k", "$flagd": {"flagKey": "f"}}"#, #""c""#),
        (#"{"fractional": ["x", ["a", {"var": "w"}], ["b", 0]]}"#, #"{"w": 1.5}"#, "null"),
        (#"{"fractional": ["x", ["a", true]]}"#, "{}", "null"),
    ]

    @Test(arguments: cases)
    func operatorBehaviour(rule: String, data: String, expected: String) throws {
        let result = try evaluate(rule, data)
        let want = try JSONParser().parse(expected)
        if case .double(let d) = result, d.isNaN {
            #expect(want == .null, "\(rule) → NaN")
        } else {
            #expect(result.jsonEquals(want), "\(rule) on \(data) → \(result), expected \(expected)")
        }
    }

    @Test func divisionByZeroIsInfinite() throws {
        #expect(try evaluate(#"{"/": [1, 0]}"#) == .double(.infinity))
        #expect(try evaluate(#"{"/": [-1, 0]}"#) == .double(-.infinity))
    }

    @Test func integerArithmeticStaysIntegral() throws {
        #expect(try evaluate(#"{"-": [100, {"var": "p"}]}"#, #"{"p": 30}"#) == .int(70))
        #expect(try evaluate(#"{"+": ["20"]}"#) == .double(20))
        #expect(try evaluate(#"{"/": [4, 2]}"#) == .double(2))
    }

    @Test func unknownOperatorFailsOnlyWhenReached() throws {
        #expect(try evaluate(#"{"or": [true, {"nope": [1]}]}"#) == .bool(true))
        #expect(throws: Evaluator.Failure.self) { try evaluate(#"{"and": [true, {"nope": [1]}]}"#) }
    }

    @Test func constantSubtreesAreFolded() throws {
        let rule = Rule(try JSONParser().parse(#"{"if": [{"<": [1, 2]}, {"cat": ["a", "b"]}, "c"]}"#))
        guard case .constant(let v) = rule.node else {
            Issue.record("not folded: \(rule.node)")
            return
        }
        #expect(v == "ab")
    }

    @Test func literalVarPathsArePreSplit() throws {
        let rule = Rule(try JSONParser().parse(#"{"var": "$flagd.flagKey"}"#))
        guard case .variable(let path, nil) = rule.node else {
            Issue.record("unexpected node \(rule.node)")
            return
        }
        #expect(path.segments == ["$flagd", "flagKey"])
        #expect(path.root == .flagd)
    }
}

@Suite struct FractionalHashTests {
    func hash(_ bytes: [UInt8]) -> UInt32 {
        var h = Murmur3()
        bytes.withUnsafeBytes { h.combine($0) }
        return h.finalize()
    }

    func cborHash(_ value: JSONValue) -> UInt32 {
        var h = Murmur3()
        CBOR.encode(value, into: &h)
        return h.finalize()
    }

    @Test func murmurKnownVectors() {
        #expect(hash([]) == 0)
        #expect(hash(Array("hello".utf8)) == 0x248b_fa47)
        #expect(hash(Array("The quick brown fox jumps over the lazy dog".utf8)) == 0x2e4f_f723)
    }

    @Test func workedExampleFromTheSuite() {
        let bytes: [UInt8] = [0x82, 0x6e] + Array("frac-coin-flip".utf8) + [0x65] + Array("alice".utf8)
        #expect(hash(bytes) == 1_082_795_878)
        #expect(cborHash(["frac-coin-flip", "alice"]) == 1_082_795_878)
        #expect(Fractional.scale(1_082_795_878, total: 100) == 25)
    }

    @Test func canonicalCBOR() {
        #expect(cborHash(.int(0)) == hash([0x00]))
        #expect(cborHash(.int(24)) == hash([0x18, 0x18]))
        #expect(cborHash(.int(-1)) == hash([0x20]))
        #expect(cborHash(.int(-500)) == hash([0x39, 0x01, 0xF3]))
        #expect(cborHash(.int(Int64.max)) == hash([0x1B, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]))
        #expect(cborHash(.double(42.0)) == cborHash(.int(42)))
        #expect(cborHash(.double(-0.0)) == hash([0x00]))
        #expect(cborHash(.double(1.5)) == hash([0xF9, 0x3E, 0x00]))
        #expect(cborHash(.double(100000.5)) == hash([0xFA, 0x47, 0xC3, 0x50, 0x40]))
        #expect(cborHash(.double(0.1)) == hash([0xFB, 0x3F, 0xB9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9A]))
        #expect(cborHash(.double(1e19)) == hash([0x1B, 0x8A, 0xC7, 0x23, 0x04, 0x89, 0xE8, 0x00, 0x00]))
        #expect(cborHash(.bool(true)) == hash([0xF5]))
        #expect(cborHash(.null) == hash([0xF6]))
        // Members sorted by encoded key: shorter keys first, then bytes.
        #expect(cborHash(["bb": 1, "a": 2, "ab": 3]) == hash([0xA3, 0x61, 0x61, 0x02, 0x62, 0x61, 0x62, 0x03, 0x62, 0x62, 0x62, 0x01]))
    }
}

@Suite struct DepthTests {
    /// The parser's nesting limit (256) bounds rule depth; the deepest rule it lets
    /// through compiles and evaluates without exhausting the stack of a task.
    @Test func deepestParsableRuleEvaluates() async throws {
        let depth = 125  // 5 levels of document around 2 × 125 levels of rule: 255 of the 256 allowed
        let rule = String(repeating: #"{"!": ["#, count: depth) + "true" + String(repeating: "]}", count: depth)
        let doc = flagDocument(validVariants + #", "targeting": {"if": ["# + rule + #", "on", "off"]}"#)
        #expect(syntaxError(doc) == nil)
        let snapshot = try compiled(doc)
        let result = snapshot.evaluate("f", context: EvaluationContext(json: ["x": 1]))
        #expect(result.variant == "off")  // 125 negations of true
        let unfolded = String(repeating: #"{"!": ["#, count: depth) + #"{"var": "x"}"# + String(repeating: "]}", count: depth)
        let dynamic = try compiled(flagDocument(validVariants + #", "targeting": {"if": ["# + unfolded + #", "on", "off"]}"#))
        #expect(dynamic.evaluate("f", context: EvaluationContext(json: ["x": 1])).variant == "off")
        #expect(dynamic.evaluate("f", context: EvaluationContext(json: ["x": 0])).variant == "on")
    }
}

private func syntaxError(_ text: String) -> JSONSyntaxError? {
    do {
        _ = try JSONParser().parse(text)
        return nil
    } catch {
        return error
    }
}
