import Foundation
import GuidonEngine
import GuidonJSON
import Testing

@testable import GuidonOFREP

/// A served configuration stand-in: a snapshot and a revision (guidond's `ServedConfig` answers
/// through the same snapshot functions).
struct SnapshotSource: OFREPSource {
    var snapshot: Snapshot
    var revision: String
    var flagSetMetadata: JSONObject { snapshot.metadata }

    func withResult(_ key: String, context: @autoclosure () -> EvaluationContext, type: ValueType?, _ body: (EncodedResult) -> Void) {
        snapshot.withResult(key, context: context(), type: type, body)
    }

    func forEachResult(context: @autoclosure () -> EvaluationContext, _ body: (EncodedResult) -> Void) {
        snapshot.forEachResult(context: context(), body)
    }
}

enum Fixture {
    static let document = #"""
        {
          "metadata": {"flagSetId": "shop", "owner": "team"},
          "flags": {
            "new-checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
              "targeting": {"if": [{"==": [{"var": "tier"}, "gold"]}, "on", "off"]}, "metadata": {"ticket": "SHOP-1"}},
            "copy": {"state": "ENABLED", "variants": {"plain": "Buy \"now\"", "quoted": "a\\\",\"variant\":\"x"}, "defaultVariant": "plain",
              "targeting": {"if": [{"var": "quoted"}, "quoted", null]}},
            "theme": {"state": "ENABLED", "variants": {"classic": {"variant": "inner", "rounded": false}}, "defaultVariant": "classic"},
            "ratio": {"state": "ENABLED", "variants": {"one": 1.0, "half": 0.5}, "defaultVariant": "one"},
            "off-switch": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"},
            "no-default": {"state": "ENABLED", "variants": {"on": true, "off": false},
              "targeting": {"if": [{"var": "beta"}, "on", null]}},
            "broken": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": "on"},
            "a/b é": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}
          }
        }
        """#

    static let snapshot: Snapshot = {
        do { return try Snapshot.compile(json: Array(document.utf8), options: CompileOptions(mode: .lenient)) } catch {
            fatalError("fixture: \(error)")
        }
    }()

    static let source = SnapshotSource(snapshot: snapshot, revision: "0123456789abcdef")

    static func json(_ bytes: [UInt8]) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) as? [String: Any])
    }

    static func request(_ target: OFREPRequest.Target, _ body: String, contentType: String? = "application/json") throws -> OFREPRequest {
        try OFREPRequest(target: target, body: Array(body.utf8), contentType: contentType)
    }

    static func respond(_ target: OFREPRequest.Target, _ body: String = "{}") throws -> (status: Int, json: [String: Any], raw: OFREPResponse) {
        let response = OFREPResponder.respond(to: try request(target, body), from: source)
        return (response.status, try json(response.body), response)
    }
}

@Suite("OFREP requests: the body, the context and their refusals")
struct OFREPRequestTests {
    @Test func aContextIsReadAsTheQuerySocketReadsOne() throws {
        let request = try Fixture.request(.flag("f"), #"{"context":{"targetingKey":"user-1","tier":"gold","n":2},"later":true}"#)
        #expect(request.context.targetingKey == "user-1")
        #expect(request.context.attributes["tier"] == "gold")
        #expect(request.context.attributes["n"] == .int(2))
        #expect(request.context.attributes["targetingKey"] == nil)
        // A targetingKey that is not a string is an attribute, as on the socket.
        let numeric = try Fixture.request(.allFlags, #"{"context":{"targetingKey":7}}"#)
        #expect(numeric.context.targetingKey == nil)
        #expect(numeric.context.attributes["targetingKey"] == .int(7))
    }

    @Test("no body, an empty object, no context, a null context and no targetingKey are all accepted", arguments: [
        "", "{}", #"{"context":null}"#, #"{"context":{}}"#, #"{"metadata":{"x":1}}"#,
    ])
    func missingContextsAreAccepted(body: String) throws {
        let request = try Fixture.request(.allFlags, body)
        #expect(request.context == EvaluationContext())
        #expect(request.contextDigest == OFREPRequest(target: .allFlags).contextDigest)
    }

    @Test func jsonContentTypesAreAcceptedAndOthersRefused() throws {
        for type in ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.acme+json", nil] {
            #expect(throws: Never.self) { try Fixture.request(.allFlags, #"{"context":{}}"#, contentType: type) }
        }
        let refused = #expect(throws: OFREPError.self) {
            try Fixture.request(.flag("k"), #"{"context":{}}"#, contentType: "application/x-www-form-urlencoded")
        }
        #expect(refused?.code == .parseError)
        #expect(refused?.status == 400)
        #expect(refused?.key == "k")
        #expect(refused?.message.contains("application/x-www-form-urlencoded") == true)
        // An empty body has no type to be wrong about.
        #expect(throws: Never.self) { try Fixture.request(.allFlags, "", contentType: "text/plain") }
    }

    @Test("malformed bodies are PARSE_ERROR, with where", arguments: [
        (#"{"context":{"a":1,}}"#, "column 19"),
        (#"{"context":"#, "line 1"),
        (#"{"context":{"a":1,"a":2}}"#, "a"),
        (String(repeating: "[", count: 40) + String(repeating: "]", count: 40), "deep"),
        ("[1,2]", "not array"),
        ("\"context\"", "not string"),
        ("\u{FF}", "line 1"),
    ])
    func malformedBodies(body: String, mentions: String) throws {
        let error = #expect(throws: OFREPError.self) { try Fixture.request(.allFlags, body) }
        #expect(error?.code == .parseError)
        #expect(error?.key == nil)
        #expect(error?.message.contains(mentions) == true, "\(error?.message ?? "")")
    }

    @Test("a context that is not an object is INVALID_CONTEXT", arguments: [#"{"context":[]}"#, #"{"context":"u"}"#, #"{"context":1}"#])
    func contextsThatAreNotObjects(body: String) throws {
        let error = #expect(throws: OFREPError.self) { try Fixture.request(.flag("x"), body) }
        #expect(error?.code == .invalidContext)
        #expect(error?.status == 400)
        #expect(error?.message.hasPrefix("\"context\" must be an object") == true)
    }

    @Test func theContextDigestIgnoresMemberOrderButNotContent() throws {
        let a = try Fixture.request(.allFlags, #"{"context":{"targetingKey":"u","b":{"y":1,"x":[1,{"q":2,"p":1}]},"a":true}}"#)
        let b = try Fixture.request(.allFlags, #"{ "context" : {"a":true, "b":{"x":[1,{"p":1,"q":2}],"y":1}, "targetingKey":"u"} }"#)
        let c = try Fixture.request(.allFlags, #"{"context":{"targetingKey":"v","b":{"y":1,"x":[1,{"q":2,"p":1}]},"a":true}}"#)
        let d = try Fixture.request(.allFlags, #"{"context":{"targetingKey":"u","b":{"y":1,"x":[{"q":2,"p":1},1]},"a":true}}"#)
        #expect(a.contextDigest == b.contextDigest)
        #expect(a.contextDigest != c.contextDigest)
        #expect(a.contextDigest != d.contextDigest, "array order is content")
    }
}

@Suite("OFREP responses: shapes, status codes, reasons, variants")
struct OFREPResponderTests {
    @Test func aTargetedFlag() throws {
        let (status, json, raw) = try Fixture.respond(.flag("new-checkout"), #"{"context":{"targetingKey":"u","tier":"gold"}}"#)
        #expect(status == 200)
        #expect(raw.etag == nil, "only the bulk endpoint has an ETag")
        #expect(json["key"] as? String == "new-checkout")
        #expect(json["value"] as? Bool == true)
        #expect(json["variant"] as? String == "on")
        #expect(json["reason"] as? String == "TARGETING_MATCH")
        #expect(json["metadata"] as? [String: String] == ["flagSetId": "shop", "owner": "team", "ticket": "SHOP-1"])
        #expect(String(decoding: raw.body, as: UTF8.self).hasPrefix(#"{"key":"new-checkout","value":true,"reason":"TARGETING_MATCH","variant":"on","metadata":{"#))
        let other = try Fixture.respond(.flag("new-checkout"), #"{"context":{"tier":"silver"}}"#)
        #expect(other.json["value"] as? Bool == false)
        #expect(other.json["reason"] as? String == "TARGETING_MATCH")
    }

    @Test func staticAndDefaultReasonsWithoutAContext() throws {
        let theme = try Fixture.respond(.flag("theme"), "")
        #expect(theme.json["reason"] as? String == "STATIC")
        #expect(theme.json["variant"] as? String == "classic")
        #expect(theme.json["value"] as? NSDictionary == ["variant": "inner", "rounded": false], "an object value may have a member named variant")
        let copy = try Fixture.respond(.flag("copy"), "{}")
        #expect(copy.json["reason"] as? String == "DEFAULT")
        #expect(copy.json["value"] as? String == #"Buy "now""#)
        #expect(copy.json["variant"] as? String == "plain")
    }

    @Test func aStringValueThatLooksLikeAVariantMemberStaysAValue() throws {
        let copy = try Fixture.respond(.flag("copy"), #"{"context":{"quoted":true}}"#)
        #expect(copy.json["value"] as? String == #"a\","variant":"x"#)
        #expect(copy.json["variant"] as? String == "quoted")
    }

    @Test func floatsKeepTheirFraction() throws {
        let (_, _, raw) = try Fixture.respond(.flag("ratio"))
        #expect(String(decoding: raw.body, as: UTF8.self).contains(#""value":1.0,"#), "a float flag's 1.0 must not become the integer 1")
    }

    @Test func aDisabledFlagDefersToTheCodeDefault() throws {
        let (status, json, _) = try Fixture.respond(.flag("off-switch"))
        #expect(status == 200)
        #expect(json["reason"] as? String == "DISABLED")
        #expect(json["value"] == nil, "no value: the provider uses the code default")
        #expect(json.keys.contains("variant") && json["variant"] is NSNull, "variant is always present, null when none")
    }

    @Test func noDefaultVariantDefersToTheCodeDefault() throws {
        let none = try Fixture.respond(.flag("no-default"), #"{"context":{}}"#)
        #expect(none.status == 200)
        #expect(none.json["reason"] as? String == "DEFAULT")
        #expect(none.json["value"] == nil)
        #expect(none.json["variant"] is NSNull)
        let beta = try Fixture.respond(.flag("no-default"), #"{"context":{"beta":true}}"#)
        #expect(beta.json["value"] as? Bool == true)
    }

    @Test func anUnknownFlagIs404FlagNotFound() throws {
        let (status, json, _) = try Fixture.respond(.flag("nope"))
        #expect(status == 404)
        #expect(json["key"] as? String == "nope")
        #expect(json["errorCode"] as? String == "FLAG_NOT_FOUND")
        #expect(json["errorDetails"] as? String == "flag 'nope' is not defined")
        #expect(json["metadata"] == nil)
    }

    @Test func aFlagThatCannotBeEvaluatedIs400WithItsCode() throws {
        let (status, json, _) = try Fixture.respond(.flag("broken"))
        #expect(status == 400)
        #expect(json["key"] as? String == "broken")
        #expect(json["errorCode"] as? String == "PARSE_ERROR")
        #expect((json["errorDetails"] as? String)?.isEmpty == false)
        #expect(json["metadata"] as? [String: String] == ["flagSetId": "shop", "owner": "team"])
    }

    @Test func keysWithSlashesAndUnicode() throws {
        let (status, json, _) = try Fixture.respond(.flag("a/b é"))
        #expect(status == 200)
        #expect(json["key"] as? String == "a/b é")
    }

    @Test func bulkEvaluationListsEveryFlagInOrderWithFailuresInPlace() throws {
        let (status, json, raw) = try Fixture.respond(.allFlags, #"{"context":{"targetingKey":"u","tier":"gold"}}"#)
        #expect(status == 200)
        let flags = try #require(json["flags"] as? [[String: Any]])
        #expect(flags.map { $0["key"] as? String } == ["new-checkout", "copy", "theme", "ratio", "off-switch", "no-default", "broken", "a/b é"])
        #expect(flags[0]["value"] as? Bool == true)
        #expect(flags[4]["reason"] as? String == "DISABLED")
        #expect(flags[6]["errorCode"] as? String == "PARSE_ERROR")
        #expect(flags[6]["value"] == nil && flags[6]["reason"] == nil)
        #expect(flags.allSatisfy { $0["errorCode"] != nil || $0.keys.contains("variant") })
        #expect(flags.compactMap { $0["reason"] as? String }.allSatisfy { ["STATIC", "TARGETING_MATCH", "DEFAULT", "DISABLED"].contains($0) })
        #expect(json["metadata"] as? [String: String] == ["flagSetId": "shop", "owner": "team"])
        let etag = try #require(raw.etag)
        #expect(etag.hasPrefix("\"0123456789abcdef-") && etag.hasSuffix("\"") && etag.count == 35)
    }

    @Test func theBulkETagCoversRevisionContextAndAnswers() throws {
        func etag(_ body: String, revision: String = "0123456789abcdef") throws -> String? {
            var source = Fixture.source
            source.revision = revision
            return OFREPResponder.respond(to: try Fixture.request(.allFlags, body), from: source).etag
        }
        let gold = #"{"context":{"targetingKey":"u","tier":"gold"}}"#
        #expect(try etag(gold) == etag(#"{"context":{"tier":"gold","targetingKey":"u"}}"#), "member order is not content")
        #expect(try etag(gold) != etag(#"{"context":{"targetingKey":"v","tier":"gold"}}"#), "another context, another tag, even with the same answers")
        #expect(try etag(gold) != etag(gold, revision: "fedcba9876543210"), "another revision, another tag")
        #expect(OFREPResponder.etag(revision: "r", contextDigest: 1, body: [1]) != OFREPResponder.etag(revision: "r", contextDigest: 1, body: [2]),
            "answers that changed by themselves (a time rule) change the tag")
    }

    @Test func refusalShapes() throws {
        let single = try Fixture.json(OFREPResponder.response(for: OFREPError(.invalidContext, "why \"so\"", key: "k")).body)
        #expect(single as NSDictionary == ["key": "k", "errorCode": "INVALID_CONTEXT", "errorDetails": #"why "so""#])
        let bulk = OFREPResponder.response(for: OFREPError(.parseError, "bad"))
        #expect(bulk.status == 400)
        #expect(try Fixture.json(bulk.body) as NSDictionary == ["errorCode": "PARSE_ERROR", "errorDetails": "bad"])
        let general = OFREPResponder.generalError(status: 500, details: "x")
        #expect(general.status == 500 && String(decoding: general.body, as: UTF8.self) == #"{"errorDetails":"x"}"#)
    }
}

@Suite("OFREP: splitting a result's served text into value and variant")
struct ServedSplitTests {
    @Test("value and variant are told apart without parsing the value", arguments: [
        (#","value":true,"variant":"on""#, "true", #""on""#),
        (#","value":true"#, "true", nil),
        (#","value":"x""#, #""x""#, nil),
        (#","value":"x","variant":"v""#, #""x""#, #""v""#),
        (#","value":"a\",\"variant\":\"b""#, #""a\",\"variant\":\"b""#, nil),
        (#","value":"a\\","variant":"b\\\"c""#, #""a\\""#, #""b\\\"c""#),
        (#","value":{"k":1,"variant":"x"}"#, #"{"k":1,"variant":"x"}"#, nil),
        (#","value":["variant","x"],"variant":"y""#, #"["variant","x"]"#, #""y""#),
        (#","value":"","variant":"""#, #""""#, #""""#),
        (#","value":null,"variant":"a""#, "null", #""a""#),
    ] as [(String, String, String?)])
    func split(served: String, value: String, variant: String?) {
        let bytes = Array(served.utf8)
        bytes.withUnsafeBytes { buffer in
            let (v, n) = OFREPResponder.split(buffer)
            #expect(String(decoding: v, as: UTF8.self) == value)
            #expect(n.map { String(decoding: $0, as: UTF8.self) } == variant)
        }
    }
}
