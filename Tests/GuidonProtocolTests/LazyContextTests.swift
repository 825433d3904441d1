import CAllocCounter
import GuidonEngine
import GuidonJSON
import GuidonProtocol
import Testing

/// A kept `Request` holds a flat context as checked text and decodes it when it is read; a
/// one-off parse decodes it at once. These tests hold the two to the same requests and the
/// same refusals (message and column), whatever the kept request held before.
@Suite("Request parser: contexts decoded when read")
struct LazyContextTests {
    /// Member names, each taking a different path: plain ASCII, the targeting key, empty,
    /// escaped, non-ASCII (precomposed and decomposed: equal for Swift, so repeated), mixed case.
    static let names = [#""a""#, #""targetingKey""#, #""""#, #""\u0061""#, #""targ\u0065tingKey""#, "\"\u{E9}\"", "\"e\u{301}\"", #""A""#]

    /// Values: plain and escaped strings, non-ASCII, numbers at and past the edges, literals
    /// (and broken ones), nesting (with a repeated name inside), raw control characters.
    static let values = [
        #""gold""#, #""""#, "\"caf\u{E9}\"", #""caf\u00e9""#, #""\x""#, "\"tab\there\"", "\"del\u{7F}\"",
        "1", "-0", "1.5e3", "9223372036854775808", "01", "1e999", "-", "1.", "true", "false", "null", "tru", "nul",
        "[1]", "[]", #"{"k":1}"#, #"{"k":1,"k":2}"#, "{}",
    ]

    /// Context objects: every name with every value, pairs of members (repeated names too),
    /// broken structure, whitespace everywhere, up to and past 16 members.
    static let contexts: [String] = {
        var contexts: [String] = ["{}", "{ }", "{", "{,}", #"{"a"}"#, #"{"a":}"#, #"{"a" 1}"#, #"{"a":1,}"#,
            #"{"a":1 "b":2}"#, #"{"a":1;"b":2}"#, #"{"a":1"#, #"{"a":"x"#, #"{a:1}"#, #"{"a":1}}"#,
            " {\t\"a\" :\r\n\"b\" , \"c\":  3 \n}", #"{"tier":"gold","tier":"silver"}"#,
            #"{"targetingKey":1,"targetingKey":"u"}"#, #"{"targetingKey":"u","targetingKey":2}"#]
        for name in names {
            for value in values { contexts.append("{\(name):\(value)}") }
        }
        for first in names {
            for second in names { contexts.append("{\(first):\"x\",\(second):7}") }
        }
        for count in [15, 16, 17, 40] {
            contexts.append("{" + (0..<count).map { "\"m\($0)\":\($0)" }.joined(separator: ",") + "}")
            contexts.append("{" + (0..<count).map { "\"m\($0 % 15)\":\($0)" }.joined(separator: ",") + "}")
        }
        return contexts
    }()

    /// Every context in two requests: before and after the other members.
    static let lines: [[UInt8]] = {
        var lines = contexts.flatMap { context in
            [#"{"op":"eval","flag":"f","context":\#(context)}"#, #"{"context":\#(context),"op":"eval","flag":"f","id":1}"#]
        }.map { Array($0.utf8) }
        // Bytes that are not UTF-8, in values and in names.
        for bad: [UInt8] in [[0xFF], [0xC3], [0xC3, 0x28], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xC3, 0xA9]] {
            lines.append(Array(#"{"op":"eval","flag":"f","context":{"a":""#.utf8) + bad + Array(#""}}"#.utf8))
            lines.append(Array(#"{"op":"eval","flag":"f","context":{""#.utf8) + bad + Array(#"":1}}"#.utf8))
        }
        return lines
    }()

    private func outcomes(_ line: [UInt8], kept: inout Request) -> (eager: Outcome, lazy: Outcome) {
        line.withUnsafeBytes { raw in
            let (lazy, eager) = Outcome.keptAndFresh(raw, RequestParser(), &kept)
            return (eager, lazy)
        }
    }

    @Test func acceptsAndRefusesExactlyAsAnEagerDecode() {
        var kept = Request(op: .ping)
        var refusals = 0
        // Each line after the one before and after itself (its context text is then kept).
        for line in Self.lines + Self.lines.reversed() + Self.lines {
            let (eager, lazy) = outcomes(line, kept: &kept)
            #expect(lazy == eager, "\(String(decoding: line, as: UTF8.self))")
            if case .refused = eager { refusals += 1 }
        }
        // The corpus does exercise both sides.
        #expect(refusals > Self.lines.count && refusals < 2 * Self.lines.count)
    }

    /// The check reads strings eight bytes at a time: every byte value, at every place in a
    /// name and in a value (and so at every place in a word), is taken as an eager decode takes it.
    @Test func everyByteAtEveryPlace() {
        var kept = Request(op: .ping)
        for byte in UInt8.min...UInt8.max {
            for place in 0..<17 {
                var text = Array("abcdefghijklmnopq".utf8)
                text[place] = byte
                let name = Array(#"{"op":"eval","flag":"f","context":{"targetingKey":"u","#.utf8) + [0x22] + text + Array(#"":"v"}}"#.utf8)
                let value = Array(#"{"op":"eval","flag":"f","context":{"targetingKey":"u","k":""#.utf8) + text + Array(#""}}"#.utf8)
                for line in [name, value] {
                    let (eager, lazy) = outcomes(line, kept: &kept)
                    #expect(lazy == eager, "byte \(byte) at \(place)")
                }
            }
        }
    }

    /// A member whose bytes are the ones at the same place in the context decoded before is taken
    /// from it: contexts whose members move, change role (targeting key or attribute), value or
    /// type from one line to the next decode as a one-off parse decodes them.
    @Test func unchangedMembersAreTakenFromTheContextBefore() {
        let contexts = [
            #"{"targetingKey":"u","a":1,"b":"x"}"#, #"{"targetingKey":"u","a":1,"b":"x"}"#,
            #"{"a":1,"targetingKey":"u","b":"x"}"#, #"{"targetingKey":"v","a":1,"b":"x"}"#,
            #"{"targetingKey":7,"a":1,"b":"x"}"#, #"{"targetingKey":"7","a":1,"b":"x"}"#,
            #"{"targetingKey":"u","a":"1","b":"x"}"#, #"{"b":"x","a":1}"#, #"{"b":"x","a":1,"c":null}"#,
            #"{ "b":"x","a":1}"#, #"{"b":"x" ,"a":1}"#, #"{"b":"y","a":1}"#, #"{"a":1}"#, #"{}"#, #"{"a":1}"#,
            #"{"a":"\u0031"}"#, #"{"a":1}"#, #"{"a":"1"}"#,
        ]
        var kept = Request(op: .ping)
        for context in contexts + contexts.reversed() {
            let line = Array(#"{"op":"eval","flag":"f","context":\#(context)}"#.utf8)
            let (eager, lazy) = outcomes(line, kept: &kept)
            #expect(lazy == eager, "\(context)")
        }
    }

    /// A context that differs from the one decoded before in one string value only is taken by
    /// comparing it with that one: values made shorter, longer, empty, or into text that only
    /// looks like the same members (a quote, an escape, a control character, non-ASCII, bytes
    /// that are not UTF-8, further members), in each member, one after the other (so that the
    /// members after a changed one move), read on every line or on every other, decode as a
    /// one-off parse decodes them, and are refused as it refuses them.
    @Test func aContextChangedInOneStringIsTheSame() {
        let replacements: [[UInt8]] = [
            [], Array("x".utf8), Array("user-0043".utf8), Array("a-much-longer-value-than-before-0".utf8),
            Array(#"","z":""#.utf8), Array(#"\""#.utf8), Array(#"\n"#.utf8), Array(#"\u0041"#.utf8), [0x09], [0x7F],
            Array("caf\u{E9}".utf8), [0xC3, 0xA9], [0xC3], [0xFF], Array(#""}"#.utf8), Array("\"".utf8),
        ]
        var members: [(name: String, value: [UInt8])] = [
            ("targetingKey", Array("user-0042".utf8)), ("tier", Array("gold".utf8)),
            ("n", []), ("email", Array("ana@example.com".utf8)), ("appVersion", Array("2.6.1".utf8)),
        ]
        func line(_ members: [(name: String, value: [UInt8])]) -> [UInt8] {
            var context = Array("{".utf8)
            for (i, member) in members.enumerated() {
                if i > 0 { context.append(UInt8(ascii: ",")) }
                // One member is a number, to be passed over.
                context += member.name == "n" ? Array(#""n":1.5"#.utf8) : Array("\"\(member.name)\":\"".utf8) + member.value + [0x22]
            }
            return Array(#"{"op":"eval","flag":"f","context":"#.utf8) + context + Array("}}".utf8)
        }
        let parser = RequestParser()
        for readEvery in [1, 2] {
            var kept = Request(op: .ping)
            var count = 0
            for round in 0..<2 {
                for m in members.indices where members[m].name != "n" {
                    for replacement in replacements + [Array("value-\(round)".utf8)] {
                        var changed = members
                        changed[m].value = replacement
                        let text = line(changed)
                        count += 1
                        let eager = text.withUnsafeBytes { raw in Outcome { () throws(RequestError) in try parser.parse(raw) } }
                        let lazy = text.withUnsafeBytes { raw in
                            Outcome { () throws(RequestError) in
                                try parser.parse(raw, into: &kept)
                                if count % readEvery == 0 { _ = kept.context }
                                return kept
                            }
                        }
                        #expect(lazy == eager, "\(String(decoding: text, as: UTF8.self))")
                        // Keep the accepted ones: the next member changes from there.
                        if case .request = eager { members = changed }
                    }
                }
            }
        }
    }

    /// A context that is never read stays text through the next lines; reading it later (after
    /// a line with the same context, or after a refused line) gives the same context.
    @Test func aContextReadLaterIsTheSame() throws {
        let parser = RequestParser()
        let user = #"{"op":"eval","flag":"f","context":{"targetingKey":"user-1","tier":"gold","n":1.5}}"#
        let other = #"{"op":"eval","flag":"f","context":{"targetingKey":"user-2","tier":"gold"}}"#
        var expected = try parser.parse(user)
        var kept = Request(op: .ping)
        for line in [user, other, user, user] {
            bytes(line) { try? parser.parse($0, into: &kept) }
        }
        bytes(#"{"op":"eval","flag":"f","context":{"targetingKey":"user-1","tier":"gold","n":1.5},"type":"nope"}"#) { raw in
            let refused = Outcome { () throws(RequestError) in
                try parser.parse(raw, into: &kept)
                return kept
            }
            guard case .refused = refused else {
                Issue.record("accepted an unknown type")
                return
            }
        }
        bytes(user) { try? parser.parse($0, into: &kept) }
        #expect(kept.context == expected.context)
        #expect(kept.context.targetingKey == "user-1" && kept.context.attributes["n"] == .double(1.5))
        // Without a context, the context is empty, read or not.
        bytes(#"{"op":"eval","flag":"f"}"#) { try? parser.parse($0, into: &kept) }
        #expect(kept.context == EvaluationContext())
    }

    /// A context set by hand is the request's context; the next line's is that line's, even
    /// when its text is the one decoded before.
    @Test func aContextSetByHandIsNotTakenForTheLastLines() throws {
        let parser = RequestParser()
        let line = #"{"op":"eval","flag":"f","context":{"targetingKey":"user-1"}}"#
        var kept = Request(op: .ping)
        bytes(line) { try? parser.parse($0, into: &kept) }
        kept.context = EvaluationContext(targetingKey: "someone else")
        #expect(kept.context.targetingKey == "someone else")
        bytes(line) { try? parser.parse($0, into: &kept) }
        #expect(kept.context.targetingKey == "user-1")
    }

    /// The point of it: a flag that does not read the context costs no decoding, so users whose
    /// strings are too long to be stored inline (each would take an allocation to decode) cost
    /// no more allocations than users with short ones: none in an optimised build (as
    /// `guidon-bench engine` shows), whatever an unoptimised one takes per line. A targeted
    /// flag decodes the same lines into the same replies as a one-off parse does.
    @Test func usersAreDecodedOnlyForFlagsThatReadThem() throws {
        let snapshot = try Snapshot.compile(json: Array(Self.flags.utf8))
        func lines(_ flag: String, long: Bool) -> [[UInt8]] {
            (0..<8).map { user in
                let key = long ? "0b6f3c52-1c4e-4f0a-9d55-7f1e2a9c4b1\(user)" : "user-\(user)"
                let email = long ? "user.\(user)@a-long-domain.example" : "u\(user)@a.example"
                return Array(#"{"op":"eval","flag":"\#(flag)","context":{"targetingKey":"\#(key)","email":"\#(email)","tier":"gold"}}"#.utf8)
            }
        }
        let parser = RequestParser()
        var kept = Request(op: .ping)
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        func answer(_ line: [UInt8]) {
            out.removeAll(keepingCapacity: true)
            answerKept(line, parser: parser, request: &kept, snapshot: snapshot, out: &out)
        }
        func oneOff(_ line: [UInt8]) throws -> [UInt8] {
            var request = try parser.parse(line)
            let result = snapshot.evaluate(request.flag ?? "", context: request.context, type: request.type, now: 1_750_000_000)
            var reply: [UInt8] = []
            ReplyEncoder.eval(id: request.id, result: result, default: request.defaultValue, into: &reply)
            return reply
        }
        var reasons: Set<String> = []
        for line in lines("static-banner", long: true) + lines("staff-only", long: true) + lines("staff-only", long: false)
            + lines("static-banner", long: true)
        {
            answer(line)
            #expect(try out == oneOff(line))
            reasons.insert(String(decoding: out, as: UTF8.self).contains(#""reason":"STATIC""#) ? "static" : "targeted")
        }
        #expect(reasons == ["static", "targeted"])

        guard guidon_alloc_counting() != 0 else { return }  // sanitizer builds keep their own allocator
        func allocations(_ users: [[UInt8]]) -> Int {
            for line in users { answer(line) }
            let before = guidon_thread_alloc_count()
            for _ in 0..<10 {
                for line in users { answer(line) }
            }
            return Int(guidon_thread_alloc_count() - before)
        }
        // A context of another shape decoded last, so that no line is taken as a change of it
        // (which an unoptimised build does with one allocation fewer than it checks a line).
        answer(Array(#"{"op":"eval","flag":"staff-only","context":{"email":"x"}}"#.utf8))
        #expect(allocations(lines("static-banner", long: true)) == allocations(lines("static-banner", long: false)))
        // The other way round, the test can tell: decoding long strings does allocate.
        #expect(allocations(lines("staff-only", long: true)) > allocations(lines("staff-only", long: false)))
    }

    static let flags = """
        {"flags": {
          "static-banner": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
          "staff-only": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                         "targeting": {"if": [{"ends_with": [{"var": "email"}, "@a-long-domain.example"]}, "on", "off"]}}
        }}
        """
}
