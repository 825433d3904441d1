import GuidonJSON
import Testing

/// Located parses and delimited members: where every part of a value is.
@Suite struct LocatedParseTests {
    func slice(_ bytes: [UInt8], _ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }

    @Test func everyMemberAndElementKnowsItsText() throws {
        let text = Array(#"  {"a" : [1, {"b": "x\"y"}, true] ,"c":{}}  "#.utf8)
        let located = try JSONParser().parseLocated(text)
        #expect(slice(text, located.range) == #"{"a" : [1, {"b": "x\"y"}, true] ,"c":{}}"#)
        #expect(located.value == ["a": [1, ["b": "x\"y"], true], "c": [:]])
        let a = try #require(located.member("a"))
        #expect(slice(text, a.keyRange) == #""a""#)
        #expect(slice(text, a.range) == #""a" : [1, {"b": "x\"y"}, true]"#)
        #expect(a.value.elements.map { slice(text, $0.range) } == ["1", #"{"b": "x\"y"}"#, "true"])
        #expect(slice(text, a.value.elements[1].member("b")!.value.range) == #""x\"y""#)
        #expect(located.member("c")?.value.members.isEmpty == true)
    }

    @Test func repeatedKeysAndBadTextAreErrorsWithDocumentPositions() {
        #expect(throws: JSONSyntaxError.self) { try JSONParser().parseLocated(Array(#"{"a": 1, "a": 2}"#.utf8)) }
        do {
            _ = try JSONParser().parseLocated(Array("{\n  \"a\": [1,]\n}".utf8))
            Issue.record("parsed a trailing comma")
        } catch {
            #expect(error.line == 2)
        }
    }

    @Test func membersAreDelimitedWithoutParsingTheirValues() throws {
        let text = Array(#"{"flags": {"x": {"deep": [[[{"}": "]"}]]]}, "y": 2.5, "z": "s"}, "n": null}"#.utf8)
        let root = try JSONParser().members(ofObjectAt: 0, in: text)
        #expect(root.members.map(\.key) == ["flags", "n"])
        #expect(slice(text, root.range) == String(decoding: text, as: UTF8.self))
        let flags = try JSONParser().members(ofObjectAt: root.member("flags")!.valueRange.lowerBound, in: text)
        #expect(flags.members.map { slice(text, $0.valueRange) } == [#"{"deep": [[[{"}": "]"}]]]}"#, "2.5", #""s""#])
        #expect(flags.members.map { slice(text, $0.range) }.first == #""x": {"deep": [[[{"}": "]"}]]]}"#)
        #expect(throws: JSONSyntaxError.self) { try JSONParser().members(ofObjectAt: 0, in: Array(#"{"a": [1, 2}"#.utf8)) }
        #expect(throws: JSONSyntaxError.self) { try JSONParser().members(ofObjectAt: 0, in: Array(#"{"a": 1, "a": 2}"#.utf8)) }
        #expect(throws: JSONSyntaxError.self) { try JSONParser().members(ofObjectAt: 0, in: Array(#"{"a": tru}"#.utf8)) }
    }

    @Test func aKnownEndIsNotSteppedOver() throws {
        let text = Array(#"{"flags": {"x": [1, {"y": "}"}]}, "n": null, "t": {"a": 1}}"#.utf8)
        let plain = try JSONParser().members(ofObjectAt: 0, in: text)
        var asked: [String] = []
        let known = try JSONParser().members(ofObjectAt: 0, in: text) { key, start in
            asked.append(key)
            return key == "flags" ? JSONParser().valueEnd(in: text, from: start) : nil
        }
        #expect(known == plain)
        #expect(asked == ["flags", "t"])  // only object and array values are asked about
    }

    @Test func valueEndsFollowTheStructure() {
        let parser = JSONParser()
        #expect(parser.valueEnd(in: Array(#"["]", {"a": [1]}] x"#.utf8), from: 0) == 17)
        #expect(parser.valueEnd(in: Array(#""a\"b" ,"#.utf8), from: 0) == 6)
        #expect(parser.valueEnd(in: Array("123, 4".utf8), from: 0) == 3)
        #expect(parser.valueEnd(in: Array("[1, 2".utf8), from: 0) == nil)
        #expect(parser.valueEnd(in: Array("[1}".utf8), from: 0) == nil)
    }
}
