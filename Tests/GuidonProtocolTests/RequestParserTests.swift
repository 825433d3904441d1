import GuidonEngine
import GuidonJSON
import GuidonProtocol
import Testing

private func parse(_ line: String) throws(RequestError) -> Request {
    try RequestParser().parse(line)
}

private func parseBytes(_ bytes: [UInt8]) throws(RequestError) -> Request {
    try RequestParser().parse(bytes)
}

/// The error a line is refused with (fails the test when it is accepted).
private func refusal(_ line: String, sourceLocation: SourceLocation = #_sourceLocation) -> RequestError? {
    refusal(Array(line.utf8), sourceLocation: sourceLocation)
}

private func refusal(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> RequestError? {
    do {
        let request = try parseBytes(bytes)
        Issue.record("accepted: \(request)", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

@Suite("Request parser: well-formed requests")
struct RequestParserAcceptTests {
    @Test func evalWithEverything() throws {
        var r = try parse(#"{"op":"eval","id":7,"flag":"new-checkout","type":"boolean","default":false,"context":{"targetingKey":"user-42","tier":"gold","age":41,"beta":true,"tags":["a","b"],"geo":{"country":"FR"}}}"#)
        #expect(r.op == .eval)
        #expect(r.id == .int(7))
        #expect(r.flag == "new-checkout")
        #expect(r.flags == nil)
        #expect(r.type == .boolean)
        #expect(r.defaultValue == .bool(false))
        #expect(r.context.targetingKey == "user-42")
        #expect(r.context.attributes["tier"] == "gold")
        #expect(r.context.attributes["age"] == .int(41))
        #expect(r.context.attributes["tags"] == ["a", "b"])
        #expect(r.context.attributes["geo"] == ["country": "FR"])
        #expect(r.context.attributes["targetingKey"] == nil)
    }

    @Test func memberOrderAndWhitespaceDoNotMatter() throws {
        let r = try parse(" \t{ \"context\" : { } , \"flag\":\"x\" ,\"op\" :\"eval\" } \r")
        #expect(r.op == .eval && r.flag == "x" && r.id == nil)
    }

    @Test func multiFlagEval() throws {
        let r = try parse(#"{"op":"eval","flags":["a","b","a"],"context":{}}"#)
        #expect(r.flags == ["a", "b", "a"])
        #expect(r.flag == nil)
    }

    @Test(arguments: Request.Operation.allCases.filter { $0 != .eval && $0 != .consume })
    func operationsWithoutMembers(op: Request.Operation) throws {
        #expect(try parse(#"{"op":"\#(op.rawValue)"}"#).op == op)
    }

    @Test func consumeAndUsage() throws {
        let consume = try parse(#"{"op":"consume","feature":"video","amount":3,"idempotencyKey":"k-1","context":{"tenantId":"5"}}"#)
        #expect(consume.op == .consume && consume.feature == "video" && consume.amount == 3 && consume.idempotencyKey == "k-1")
        #expect(try parse(#"{"op":"consume","feature":"video"}"#).amount == 1)
        #expect(try parse(#"{"op":"consume","feature":"video","amount":2.0}"#).amount == 2)
        #expect(try parse(#"{"op":"consume","feature":"video","amount":9007199254740991}"#).amount == 9_007_199_254_740_991)
        let usage = try parse(#"{"op":"usage","context":{"tenantId":"5"}}"#)
        #expect(usage.op == .usage && usage.feature == nil)
        for bad in [
            #"{"op":"consume"}"#, #"{"op":"consume","feature":""}"#, #"{"op":"consume","feature":7}"#,
            #"{"op":"consume","feature":"v","amount":0}"#, #"{"op":"consume","feature":"v","amount":-3}"#,
            #"{"op":"consume","feature":"v","amount":1.25}"#, #"{"op":"consume","feature":"v","amount":9007199254740992}"#,
            #"{"op":"consume","feature":"v","amount":1e400}"#, #"{"op":"consume","feature":"v","amount":"2"}"#,
            #"{"op":"consume","feature":"v","amount":null}"#, #"{"op":"consume","feature":"v","idempotencyKey":""}"#,
            #"{"op":"consume","feature":"v","idempotencyKey":["k"]}"#, #"{"op":"consume","feature":"v","amount":1,"amount":2}"#,
            #"{"op":"usage","amount":1}"#, #"{"op":"usage","idempotencyKey":"k"}"#, #"{"op":"usage","feature":""}"#,
        ] {
            #expect(throws: RequestError.self, "\(bad)") { try parse(bad) }
        }
    }

    @Test(arguments: [
        (#""abc""#, JSONValue.string("abc")), ("-12", .int(-12)), ("1.5", .double(1.5)),
        ("true", .bool(true)), ("null", .null),
    ])
    func idsAreAnyScalar(text: String, expected: JSONValue) throws {
        #expect(try parse(#"{"op":"ping","id":\#(text)}"#).id == expected)
    }

    @Test func nonStringTargetingKeyStaysAnAttribute() throws {
        var r = try parse(#"{"op":"eval","flag":"f","context":{"targetingKey":42}}"#)
        #expect(r.context.targetingKey == nil)
        #expect(r.context.attributes["targetingKey"] == .int(42))
    }

    @Test func unknownMembersAreIgnored() throws {
        let r = try parse(#"{"op":"ping","trace":{"span":[1,2,{"x":null}]},"v":2}"#)
        #expect(r.op == .ping)
    }

    @Test func defaultMustMatchTheType() throws {
        #expect(try parse(#"{"op":"eval","flag":"f","type":"float","default":3}"#).defaultValue == .int(3))
        #expect(try parse(#"{"op":"eval","flag":"f","type":"object","default":{"a":1}}"#).defaultValue == ["a": 1])
        let e = refusal(#"{"op":"eval","flag":"f","type":"boolean","default":"yes"}"#)
        #expect(e?.code == .invalidRequest)
        #expect(e?.message.contains("not a boolean") == true)
    }
}

@Suite("Request parser: JSON edge cases")
struct RequestParserJSONTests {
    @Test func escapesAreDecoded() throws {
        let r = try parse(#"{"op":"eval","flag":"a\"b\\c\/d\b\f\n\r\t\u00e9\u20AC","context":{}}"#)
        #expect(r.flag == "a\"b\\c/d\u{8}\u{c}\n\r\t\u{e9}\u{20ac}")
    }

    @Test func surrogatePairsAreCombined() throws {
        let r = try parse(#"{"op":"eval","flag":"\ud83d\ude00 \uD834\uDD1E","context":{}}"#)
        #expect(r.flag == "😀 𝄞")
    }

    @Test(arguments: [#""\ud83d""#, #""\ude00""#, #""\ud83d\u0041""#, #""\ud83dx""#, #""\u12""#, #""\u12G4""#])
    func loneOrBrokenSurrogatesAreRefused(text: String) {
        #expect(refusal(#"{"op":"eval","flag":\#(text)}"#)?.code == .invalidRequest)
    }

    @Test func rawUTF8IsKept() throws {
        #expect(try parse(#"{"op":"eval","flag":"café-€-😀"}"#).flag == "café-€-😀")
    }

    @Test(arguments: [
        [0xC3, 0x28], [0xFF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xC0, 0xAF], [0xE2, 0x82],
    ] as [[UInt8]])
    func invalidUTF8IsRefused(bad: [UInt8]) {
        let bytes = Array(#"{"op":"eval","flag":""#.utf8) + bad + Array(#""}"#.utf8)
        let e = refusal(bytes)
        #expect(e?.code == .invalidRequest)
        #expect(e?.message.contains("UTF-8") == true)
    }

    @Test func invalidUTF8InAKeyIsRefused() {
        let bytes = Array(#"{"op":"ping",""#.utf8) + [0xFF] + Array(#"":1}"#.utf8)
        #expect(refusal(bytes)?.code == .invalidRequest)
    }

    @Test func controlCharactersMustBeEscaped() {
        #expect(refusal("{\"op\":\"eval\",\"flag\":\"a\u{01}b\"}")?.code == .invalidRequest)
        #expect(refusal("{\"op\":\"eval\",\"flag\":\"a\tb\"}")?.code == .invalidRequest)
    }

    @Test func nestingIsLimited() throws {
        func nested(_ depth: Int) -> String {
            // The request object is level 1, the context level 2.
            String(repeating: "[", count: depth - 2) + String(repeating: "]", count: depth - 2)
        }
        let limit = RequestParser().maxDepth
        _ = try parse(#"{"op":"eval","flag":"f","context":{"x":\#(nested(limit))}}"#)
        let e = refusal(#"{"op":"eval","flag":"f","context":{"x":\#(nested(limit + 1))}}"#)
        #expect(e?.message.contains("nesting") == true)
        // Far beyond the limit: refused without exhausting the stack.
        let deep = String(repeating: "[", count: 100_000)
        #expect(refusal(#"{"op":"ping","x":\#(deep)"#)?.code == .invalidRequest)
        let deepObjects = String(repeating: #"{"a":"#, count: 100_000)
        #expect(refusal(#"{"op":"eval","flag":"f","context":\#(deepObjects)"#)?.code == .invalidRequest)
    }

    @Test(arguments: [
        #"{"op":"ping","op":"ping"}"#,
        #"{"op":"ping","id":1,"id":2}"#,
        #"{"op":"ping","x":1,"x":2}"#,
        #"{"op":"eval","flag":"f","context":{"a":1,"a":2}}"#,
        #"{"op":"eval","flag":"f","context":{"targetingKey":"u","targetingKey":"v"}}"#,
        #"{"op":"eval","flag":"f","context":{"o":{"k":1,"k":1}}}"#,
        #"{"op":"eval","flag":"f","context":{"o":{"k":1,"\u006b":1}}}"#,
    ])
    func duplicateMembersAreRefused(line: String) {
        let e = refusal(line)
        #expect(e?.code == .invalidRequest)
        #expect(e?.message.contains("duplicate") == true)
    }

    @Test func numbersAtTheEdges() throws {
        func attribute(_ text: String) throws -> JSONValue? {
            var r = try parse(#"{"op":"eval","flag":"f","context":{"n":\#(text)}}"#)
            return r.context.attributes["n"]
        }
        #expect(try attribute("9223372036854775807") == .int(.max))
        #expect(try attribute("-9223372036854775808") == .int(.min))
        #expect(try attribute("9223372036854775808") == .double(9_223_372_036_854_775_808))
        #expect(try attribute("-0") == .int(0))
        #expect(try attribute("0.0") == .double(0))
        #expect(try attribute("1e2") == .double(100))
        #expect(try attribute("1E-2") == .double(0.01))
        #expect(try attribute("1.7976931348623157e308") == .double(.greatestFiniteMagnitude))
        #expect(try attribute("5e-324") == .double(.leastNonzeroMagnitude))
        #expect(try attribute("1e-400") == .double(0))
    }

    @Test(arguments: ["01", "-", "1.", ".5", "1e", "1e+", "+1", "0x10", "1e400", "-1e400", "NaN", "Infinity", "--1", "1.5.2"])
    func malformedNumbersAreRefused(text: String) {
        #expect(refusal(#"{"op":"eval","flag":"f","context":{"n":\#(text)}}"#)?.code == .invalidRequest)
    }

    @Test(arguments: [
        "", "   ", "[]", #""op""#, "null", "{", "}", #"{"op":"ping""#, #"{"op":"ping",}"#, #"{"op" "ping"}"#,
        #"{op:"ping"}"#, #"{'op':'ping'}"#, #"{"op":"ping"} {}"#, #"{"op":"ping"}x"#, #"{"op":"ping",/*c*/"id":1}"#,
        #"{"op":"eval","flag":"f","context":{"a":[1,]}}"#, #"{"op":"eval","flag":"f","context":{"a":tru}}"#,
        #"{"op":"eval","flag":"f","context":{"a":"unterminated}}"#, #"{"op":"eval","flag":"f","context":{"a":"\x"}}"#,
    ])
    func malformedJSONIsRefused(line: String) {
        #expect(refusal(line)?.code == .invalidRequest)
    }
}

@Suite("Request parser: protocol errors")
struct RequestParserErrorTests {
    @Test func unknownOp() {
        let e = refusal(#"{"id":"x","op":"explode"}"#)
        #expect(e?.code == .unknownOp)
        #expect(e?.id == "x")
        #expect(e?.message.contains("explode") == true)
    }

    /// Every `document.verb` op is an admin operation: refused as FORBIDDEN (with the op named),
    /// also for documents and verbs this version does not know, and also with escapes in the name.
    @Test(arguments: [#"{"id":2,"op":"flags.rollout","flag":"a","percentage":5}"#, #"{"op":"entitlements.grant","id":2}"#,
                      #"{"id":2,"op":"flags\u002edelete"}"#])
    func adminOpsAreForbidden(line: String) {
        let e = refusal(line)
        #expect(e?.code == .forbidden)
        #expect(e?.id == 2)
        #expect(e?.message.contains("admin operation") == true)
        #expect(e?.details["op"]?.string?.contains(".") == true)
    }

    @Test(arguments: [
        (#"{"id":1}"#, "missing \"op\""),
        (#"{"op":1}"#, "\"op\" must be a string"),
        (#"{"op":"eval"}"#, "eval needs"),
        (#"{"op":"eval","flag":"a","flags":["b"]}"#, "not both"),
        (#"{"op":"eval","flag":7}"#, "\"flag\" must be a string"),
        (#"{"op":"eval","flags":"a"}"#, "\"flags\" must be an array"),
        (#"{"op":"eval","flags":["a",1]}"#, "\"flags\" must be an array of strings"),
        (#"{"op":"eval","flag":"a","type":"bool"}"#, "unknown type \"bool\""),
        (#"{"op":"eval","flag":"a","type":1}"#, "\"type\" must be a string"),
        (#"{"op":"eval","flag":"a","context":[]}"#, "\"context\" must be an object"),
        (#"{"op":"eval","flag":"a","context":"u"}"#, "\"context\" must be an object"),
        (#"{"op":"ping","id":[1]}"#, "\"id\" must be"),
        (#"{"op":"ping","id":{}}"#, "\"id\" must be"),
    ])
    func wrongMembers(line: String, message: String) {
        let e = refusal(line)
        #expect(e?.code == .invalidRequest)
        #expect(e?.message.contains(message) == true, "\(e?.message ?? "")")
    }

    @Test func theIdIsEchoedWhenItWasReadBeforeTheProblem() {
        #expect(refusal(#"{"id":"r1","op":"eval","flag":5}"#)?.id == "r1")
        #expect(refusal(#"{"op":"eval","flag":5,"id":"r1"}"#)?.id == nil)
    }

    @Test func errorsSayWhere() {
        let e = refusal(#"{"op":"ping",  "id":1,}"#)
        #expect(e?.message.hasPrefix("column 23:") == true, "\(e?.message ?? "")")
    }
}
