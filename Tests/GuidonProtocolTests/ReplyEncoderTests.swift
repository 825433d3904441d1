@testable import GuidonEngine
import GuidonJSON
import GuidonProtocol
import Testing

private func line(_ write: (inout [UInt8]) -> Void) throws -> JSONObject {
    var out: [UInt8] = []
    write(&out)
    #expect(out.last == UInt8(ascii: "\n"))
    #expect(out.dropLast().contains(UInt8(ascii: "\n")) == false, "a reply is exactly one line")
    let value = try JSONParser(duplicateKeys: .reject).parse(Array(out.dropLast()))
    return try #require(value.object)
}

@Suite("Reply encoder")
struct ReplyEncoderTests {
    let matched = EvaluationResult(
        flagKey: "new-checkout", value: true, variant: "on", reason: .targetingMatch,
        metadata: ["updatedBy": "maria", "version": 3])

    @Test func evalReplyCarriesEveryMember() throws {
        let reply = try line { ReplyEncoder.eval(id: "req-1", result: matched, default: false, into: &$0) }
        #expect(reply.keys == ["id", "flag", "value", "variant", "reason", "metadata"])
        #expect(reply["id"] == "req-1")
        #expect(reply["value"] == true)
        #expect(reply["variant"] == "on")
        #expect(reply["reason"] == "TARGETING_MATCH")
        #expect(reply["metadata"] == ["updatedBy": "maria", "version": 3])
    }

    /// A reply without an id, for a result with a value, is gathered on the stack and appended
    /// once; with an id it goes piece by piece. Both must write the same members, byte for byte,
    /// after the id, whatever the reason and however long the text (the stack path stops at
    /// 1 KiB).
    @Test func gatheredReplyIsTheSameBytes() throws {
        let long = String(repeating: "x", count: 2_000)
        let results = [
            matched,
            EvaluationResult(flagKey: "s", value: "plain", variant: "a", reason: .static, metadata: [:]),
            EvaluationResult(flagKey: "d", value: 1.5, variant: nil, reason: .default, metadata: ["k": "v"]),
            EvaluationResult(flagKey: "off", value: false, variant: "off", reason: .disabled, metadata: [:]),
            EvaluationResult(flagKey: "big", value: .string(long), variant: "long", reason: .targetingMatch, metadata: ["n": 1]),
        ]
        for result in results {
            var withoutID: [UInt8] = []
            var withID: [UInt8] = []
            ReplyEncoder.eval(id: nil, result: result, default: nil, into: &withoutID)
            ReplyEncoder.eval(id: 42, result: result, default: nil, into: &withID)
            let prefix = Array(#"{"id":42,"#.utf8)
            #expect(Array(withID.prefix(prefix.count)) == prefix)
            #expect([UInt8(ascii: "{")] + withID.dropFirst(prefix.count) == withoutID, "\(result.flagKey)")
            // Appended after what the buffer held.
            var after: [UInt8] = Array("before\n".utf8)
            ReplyEncoder.eval(id: nil, result: result, default: nil, into: &after)
            #expect(after == Array("before\n".utf8) + withoutID)
            _ = try line { ReplyEncoder.eval(id: nil, result: result, default: nil, into: &$0) }
        }
    }

    /// Multi-flag replies gather several results on the stack before appending them, flushing
    /// when the 1 KiB buffer runs short and writing straight to the reply a result that is not
    /// the common kind (no value, an error) or longer than the buffer. Whatever the mix, the bytes
    /// are each result's members as the piece-by-piece path writes them, in order.
    @Test func gatheredManyAndAllAreTheSameBytes() throws {
        let long = String(repeating: "y", count: 1_500)
        var results: [EvaluationResult] = []
        for i in 0..<40 {
            switch i % 5 {
            case 0: results.append(EvaluationResult(flagKey: "f\(i)", value: .int(Int64(i)), variant: "v", reason: .static, metadata: ["i": .int(Int64(i))]))
            case 1: results.append(EvaluationResult(flagKey: "missing-\(i)", value: nil, variant: nil, reason: .error, errorCode: .flagNotFound, errorMessage: "flag 'missing-\(i)' is not defined"))
            case 2: results.append(EvaluationResult(flagKey: "none-\(i)", value: nil, variant: nil, reason: .default))
            case 3 where i % 10 == 3: results.append(EvaluationResult(flagKey: "long-\(i)", value: .string(long), variant: "l", reason: .targetingMatch))
            default: results.append(EvaluationResult(flagKey: "t-\(i)", value: "x", variant: "x", reason: .targetingMatch, metadata: ["team": "growth"]))
            }
        }
        /// `{members}` as `eval` writes them with an id (piece by piece, never gathered).
        func element(_ r: EvaluationResult, default defaultValue: JSONValue?) -> [UInt8] {
            var withID: [UInt8] = []
            ReplyEncoder.eval(id: 42, result: r, default: defaultValue, into: &withID)
            return [UInt8(ascii: "{")] + withID.dropFirst(#"{"id":42,"#.utf8.count).dropLast()
        }
        for count in [0, 1, 7, 8, 9, 16, 40] {
            let some = Array(results.prefix(count))
            for defaultValue: JSONValue? in [nil, "fallback"] {
                var many = Array("before\n".utf8)
                ReplyEncoder.evalMany(id: nil, results: some, default: defaultValue, into: &many)
                var expected = Array("before\n".utf8) + Array(#"{"results":["#.utf8)
                for (i, r) in some.enumerated() {
                    if i > 0 { expected.append(UInt8(ascii: ",")) }
                    expected += element(r, default: defaultValue)
                }
                expected += Array("]}\n".utf8)
                #expect(many == expected, "\(count) results, default \(String(describing: defaultValue))")
            }
            var all: [UInt8] = []
            ReplyEncoder.evalAll(id: nil, results: some, into: &all)
            var expected = Array(#"{"results":{"#.utf8)
            for (i, r) in some.enumerated() {
                if i > 0 { expected.append(UInt8(ascii: ",")) }
                expected += Array("\"\(r.flagKey)\":".utf8) + element(r, default: nil)
            }
            expected += Array("}}\n".utf8)
            #expect(all == expected, "evalAll, \(count) results")
        }
    }

    @Test func fallbackServesTheCallersDefault() throws {
        let missing = EvaluationResult(
            flagKey: "nope", value: nil, variant: nil, reason: .error, errorCode: .flagNotFound, errorMessage: "flag 'nope' is not defined")
        let withDefault = try line { ReplyEncoder.eval(id: nil, result: missing, default: ["a": [1, 2]], into: &$0) }
        #expect(withDefault["id"] == nil)
        #expect(withDefault["value"] == ["a": [1, 2]])
        #expect(withDefault["errorCode"] == "FLAG_NOT_FOUND")
        #expect(withDefault["errorMessage"] == "flag 'nope' is not defined")
        #expect(withDefault["variant"] == nil)
        let without = try line { ReplyEncoder.eval(id: nil, result: missing, default: nil, into: &$0) }
        #expect(without["value"] == nil)
        #expect(without["metadata"] == [:])
    }

    /// A compiled flag hands out its metadata already encoded; the reply is the same bytes as
    /// for a result built by hand, and changing a result's metadata changes its text.
    @Test func preEncodedMetadataGivesTheSameReply() throws {
        let json = #"""
            {"metadata": {"flagSetId": "shop"}, "flags": {"f": {"state": "ENABLED", "variants": {"on": true},
              "defaultVariant": "on", "metadata": {"notes": "Quote \" and \u00e9 and \n", "n": 1.5, "owner": "team"}}}}
            """#
        let snapshot = try Snapshot.compile(json: Array(json.utf8))
        let compiled = snapshot.evaluate("f", context: EvaluationContext())
        let byHand = EvaluationResult(
            flagKey: compiled.flagKey, value: compiled.value, variant: compiled.variant, reason: compiled.reason,
            metadata: compiled.metadata)
        #expect(byHand == compiled)
        var fromCompiled: [UInt8] = []
        var fromByHand: [UInt8] = []
        ReplyEncoder.eval(id: 1, result: compiled, default: nil, into: &fromCompiled)
        ReplyEncoder.eval(id: 1, result: byHand, default: nil, into: &fromByHand)
        #expect(fromCompiled == fromByHand)
        #expect(try line { $0 = fromCompiled }["metadata"] == ["flagSetId": "shop", "notes": "Quote \" and \u{e9} and \n", "n": 1.5, "owner": "team"])

        var changed = compiled
        changed.metadata["owner"] = "someone else"
        #expect(try JSONParser().parse(changed.encodedMetadata).object?["owner"] == "someone else")
        #expect(try line { ReplyEncoder.eval(id: nil, result: changed, default: nil, into: &$0) }["metadata"]?.object?["owner"] == "someone else")
        #expect(compiled.metadata["owner"] == "team", "the compiled flag's metadata is untouched")
    }

    /// A compiled flag hands out its key and served variant already encoded: every kind of result
    /// (each variant, served as defined or converted to the type asked for, every reason, errors)
    /// gives the same bytes as the same result built by hand, and changing a result changes its text.
    @Test func preEncodedMembersGiveTheSameReply() throws {
        let snapshot = try Snapshot.compile(json: Array(Self.everyKindOfResult.utf8))
        var results: [EvaluationResult] = []
        for pick: JSONValue in ["a", "n\u{e9}", "i", "d", "o", "q", "nope", .null, 7] {
            let context = EvaluationContext(attributes: ["pick": pick])
            for type in [nil] + ValueType.allCases {
                results += snapshot.evaluate(snapshot.flags.map(\.key) + ["missing"], context: context, type: type)
            }
        }
        #expect(Set(results.map(\.reason)) == [.static, .targetingMatch, .default, .disabled, .error])
        func encoded(_ r: EvaluationResult) -> (flag: Bool, variant: Bool) {
            r.withSharedMembers { flag, served, _ in (flag != nil, served != nil) }
        }
        #expect(results.contains { encoded($0).variant } && results.contains { !encoded($0).variant && $0.value != nil })
        for compiled in results {
            let byHand = EvaluationResult(
                flagKey: compiled.flagKey, value: compiled.value, variant: compiled.variant, reason: compiled.reason,
                errorCode: compiled.errorCode, errorMessage: compiled.errorMessage, metadata: compiled.metadata)
            #expect(encoded(byHand) == (false, false))
            for defaultValue: JSONValue? in [nil, 0] {
                var fromCompiled: [UInt8] = []
                var fromByHand: [UInt8] = []
                ReplyEncoder.eval(id: 1, result: compiled, default: defaultValue, into: &fromCompiled)
                ReplyEncoder.eval(id: 1, result: byHand, default: defaultValue, into: &fromByHand)
                #expect(fromCompiled == fromByHand, "\(compiled)")
                ReplyEncoder.evalAll(id: 1, results: [compiled, compiled], into: &fromCompiled)
                ReplyEncoder.evalAll(id: 1, results: [byHand, byHand], into: &fromByHand)
                #expect(fromCompiled == fromByHand, "\(compiled)")
            }
        }

        let served = snapshot.evaluate("static", context: EvaluationContext())
        #expect(encoded(served) == (true, true))
        func reply(_ result: EvaluationResult) throws -> JSONObject {
            try line { ReplyEncoder.eval(id: nil, result: result, default: nil, into: &$0) }
        }
        var changed = served
        changed.flagKey = "other"
        #expect(try reply(changed)["flag"] == "other" && reply(changed)["value"] == 3)
        changed = served
        changed.value = "three"
        #expect(try reply(changed)["value"] == "three" && reply(changed)["variant"] == "i")
        changed = served
        changed.variant = "j"
        #expect(try reply(changed)["variant"] == "j" && reply(changed)["flag"] == "static")
        changed = served
        changed.metadata = ["m": 1]
        #expect(try reply(changed)["metadata"] == ["m": 1] && reply(changed)["value"] == 3)
        #expect(try reply(served) == ["flag": "static", "value": 3, "variant": "i", "reason": "STATIC", "metadata": [:]])
    }

    /// The daemon's path, the results lent by the snapshot without making an `EvaluationResult`,
    /// writes exactly the bytes of the public path, for one flag, a batch and every flag.
    @Test func lentResultsGiveTheSameReplyAsResults() throws {
        let snapshot = try Snapshot.compile(json: Array(Self.everyKindOfResult.utf8))
        let keys = snapshot.flags.map(\.key) + ["missing"]
        var replies = 0
        for pick: JSONValue in ["a", "n\u{e9}", "i", "d", "o", "q", "nope", .null, 7] {
            let context = EvaluationContext(attributes: ["pick": pick])
            for type in [nil] + ValueType.allCases {
                for defaultValue: JSONValue? in [nil, 0] {
                    for key in keys {
                        var lent: [UInt8] = []
                        snapshot.withResult(key, context: context, type: type, now: 0) {
                            ReplyEncoder.eval(id: 1, result: $0, default: defaultValue, into: &lent)
                        }
                        var made: [UInt8] = []
                        let result = snapshot.evaluate(key, context: context, type: type, now: 0)
                        ReplyEncoder.eval(id: 1, result: result, default: defaultValue, into: &made)
                        #expect(lent == made, "\(result)")
                        replies += 1
                    }
                    var lent: [UInt8] = []
                    ReplyEncoder.evalMany(id: "b", default: defaultValue, into: &lent) { each in
                        snapshot.forEachResult(keys, context: context, type: type, now: 0, each)
                    }
                    var made: [UInt8] = []
                    let results = snapshot.evaluate(keys, context: context, type: type, now: 0)
                    ReplyEncoder.evalMany(id: "b", results: results, default: defaultValue, into: &made)
                    #expect(lent == made)
                    #expect(try JSONParser().parse(Array(lent.dropLast())).object?["results"]?.array?.count == keys.count)
                }
            }
            var lent: [UInt8] = []
            ReplyEncoder.evalAll(id: nil, into: &lent) { each in snapshot.forEachResult(context: context, now: 0, each) }
            var made: [UInt8] = []
            ReplyEncoder.evalAll(id: nil, results: snapshot.evaluateAll(context: context, now: 0), into: &made)
            #expect(lent == made)
            #expect(try JSONParser().parse(Array(lent.dropLast())).object?["results"]?.object?.count == snapshot.count)
        }
        #expect(replies == 9 * 6 * 2 * keys.count)
    }

    @Test(arguments: [Reason.static, .targetingMatch, .default, .disabled, .error])
    func everyReasonIsWrittenAsItsName(reason: Reason) throws {
        let result = EvaluationResult(flagKey: "f", value: nil, variant: nil, reason: reason)
        let reply = try line { ReplyEncoder.eval(id: nil, result: result, default: nil, into: &$0) }
        #expect(reply["reason"] == .string(reason.rawValue))
        #expect(reply["metadata"] == .object([:]))
    }

    @Test func stringsAreEscaped() throws {
        let odd = EvaluationResult(flagKey: "q\"\\\n\u{1}é", value: "line\nbreak", variant: "v", reason: .static)
        let reply = try line { ReplyEncoder.eval(id: "\u{0}", result: odd, default: nil, into: &$0) }
        #expect(reply["flag"] == "q\"\\\n\u{1}é")
        #expect(reply["value"] == "line\nbreak")
        #expect(reply["id"] == "\u{0}")
    }

    @Test func manyKeepsTheOrderAsked() throws {
        let other = EvaluationResult(flagKey: "b", value: 2, variant: "two", reason: .static)
        let reply = try line { ReplyEncoder.evalMany(id: 9, results: [other, matched, other], default: nil, into: &$0) }
        let flags = try #require(reply["results"]?.array).map { $0.object?["flag"] }
        #expect(flags == ["b", "new-checkout", "b"])
    }

    @Test func evalAllIsKeyedByFlag() throws {
        let other = EvaluationResult(flagKey: "b", value: 2.5, variant: "x", reason: .static)
        let reply = try line { ReplyEncoder.evalAll(id: nil, results: [matched, other], into: &$0) }
        let results = try #require(reply["results"]?.object)
        #expect(results.keys == ["new-checkout", "b"])
        #expect(results["b"]?.object?["value"] == .double(2.5))
    }

    @Test func errorAndPing() throws {
        let error = try line { ReplyEncoder.error(RequestError(code: .tooLarge, message: "too long", id: 4), into: &$0) }
        #expect(error == ["id": 4, "error": ["code": "TOO_LARGE", "message": "too long"]])
        let ping = try line { ReplyEncoder.ping(id: nil, configVersion: "abc", flagCount: 12, into: &$0) }
        #expect(ping == ["ok": true, "configVersion": "abc", "revision": "abc", "flags": 12])
        let conflict = try line {
            ReplyEncoder.error(RequestError(code: .conflict, message: "moved on", id: 5, details: ["revision": "0123456789abcdef"]), into: &$0)
        }
        #expect(conflict == ["id": 5, "error": ["code": "CONFLICT", "message": "moved on", "revision": "0123456789abcdef"]])
    }

    @Test func replyPutsTheIdFirst() throws {
        let reply = try line { ReplyEncoder.reply(id: "z", ["ok": true, "id": "ignored"], into: &$0) }
        #expect(reply.keys == ["id", "ok"])
        #expect(reply["id"] == "z")
    }

    @Test func timestamps() {
        #expect(Timestamp.rfc3339(0) == "1970-01-01T00:00:00Z")
        #expect(Timestamp.rfc3339(951_782_400) == "2000-02-29T00:00:00Z")
        #expect(Timestamp.rfc3339(1_795_737_600) == "2026-11-27T00:00:00Z")
        #expect(Timestamp.rfc3339(-1) == "1969-12-31T23:59:59Z")
        #expect(Timestamp.clock(1_795_737_600 + 12 * 3600 + 3 * 60 + 59) == "12:03")
    }

    @Test func eventLine() throws {
        let diff = SnapshotDiffFixture.make(added: ["a"], changed: [], removed: ["z"])
        let event = try line { ReplyEncoder.line(ConfigurationChanged(configVersion: "v2", diff: diff).json, into: &$0) }
        #expect(event == ["event": "configurationChanged", "configVersion": "v2", "added": ["a"], "changed": [], "removed": ["z"]])
    }

    /// Flags whose results cover every reason, variants served as defined and converted,
    /// type mismatches, a default variant or none, and keys and values that need escaping.
    static let everyKindOfResult = #"""
        {"flags": {
          "k\u00e9y \"q\"": {"state": "ENABLED", "variants": {"a": "caf\u00e9 \"\\\n", "n\u00e9": "x"},
            "defaultVariant": "a", "targeting": {"if": [{"var": "pick"}, {"var": "pick"}, null]}},
          "numbers": {"state": "ENABLED", "variants": {"i": 3, "d": 2.5}, "defaultVariant": "i", "targeting": {"var": "pick"}},
          "objects": {"state": "ENABLED", "variants": {"o": {"a": [1, null]}, "q": {}}, "targeting": {"var": "pick"}},
          "static": {"state": "ENABLED", "variants": {"i": 3}, "defaultVariant": "i"},
          "no-default": {"state": "ENABLED", "variants": {"a": 1}, "targeting": {"var": "pick"}},
          "off": {"state": "DISABLED", "variants": {"a": 1}, "defaultVariant": "a"}
        }}
        """#
}

/// `SnapshotDiff` has no public initializer; build one by diffing two small snapshots.
enum SnapshotDiffFixture {
    static func make(added: [String], changed: [String], removed: [String]) -> SnapshotDiff {
        let old = compile(removed.map { ($0, true) } + changed.map { ($0, true) })
        let new = compile(added.map { ($0, true) } + changed.map { ($0, false) })
        return new.diff(from: old)
    }

    static func compile(_ flags: [(String, Bool)]) -> Snapshot {
        let members = flags.map { #""\#($0.0)":{"state":"ENABLED","variants":{"on":\#($0.1)},"defaultVariant":"on"}"# }
        return try! Snapshot.compile(json: Array(#"{"flags":{\#(members.joined(separator: ","))}}"#.utf8))
    }
}
