import GuidonJSON
import Testing

@Suite struct SkippingParseTests {
    /// Skips the members named in `known` when their text is there, as a caller that knows
    /// the text would.
    static func parse(_ text: String, known: [String: String], seen: inout [String]) throws(JSONSyntaxError) -> (value: JSONValue, spans: [String]) {
        let bytes = Array(text.utf8)
        var log: [String] = []
        let (value, spans) = try JSONParser(duplicateKeys: .reject).parse(bytes, skippingIn: "flags") { index, key, start in
            log.append("\(index) \(key)")
            guard let value = known[key] else { return nil }
            let end = start + value.utf8.count
            guard end <= bytes.count, bytes[start..<end].elementsEqual(value.utf8) else { return nil }
            return end
        }
        seen = log
        return (value, spans.map { String(decoding: bytes[$0], as: UTF8.self) })
    }

    @Test func skippedMembersStandAsNullAndTheRestIsParsed() throws {
        let text = #"{"flags": {"a": {"x": 1}, "b": [2, "]"],"c":3, "d": {"y": 2}}, "other": {"a": 4}}"#
        var seen: [String] = []
        let (value, spans) = try Self.parse(text, known: ["a": #"{"x": 1}"#, "b": #"[2, "]"]"#, "d": #"{"y": 3}"#], seen: &seen)
        #expect(seen == ["0 a", "1 b", "2 c", "3 d"])
        #expect(value == ["flags": ["a": nil, "b": nil, "c": 3, "d": ["y": 2]], "other": ["a": 4]])
        #expect(spans == [#"{"x": 1}"#, #"[2, "]"]"#, "3", #"{"y": 2}"#])
    }

    @Test func shouldSkipSeesTheMembersBeforeAndCanSayNo() throws {
        let bytes = Array(#"{"v": 1, "flags": {"a": {}}, "w": 2}"#.utf8)
        for answer in [true, false] {
            var before: [JSONObject] = []
            let (value, spans) = try JSONParser().parse(bytes, skippingIn: "flags", when: { before.append($0); return answer }) { _, _, start in
                start + 2
            }
            #expect(before == [["v": 1]])
            #expect(value == ["v": 1, "flags": ["a": answer ? nil : [:]], "w": 2])
            #expect(spans.count == 1)
        }
    }

    @Test func onlyTheRootMemberIsSkimmed() throws {
        var seen: [String] = []
        let (value, spans) = try Self.parse(#"{"x": {"flags": {"a": 1}}, "flags": 5}"#, known: ["a": "1"], seen: &seen)
        #expect(seen.isEmpty && spans.isEmpty)
        #expect(value == ["x": ["flags": ["a": 1]], "flags": 5])
    }

    @Test func errorsOutsideSkippedValuesAreStillReported() {
        func error(_ text: String) -> JSONSyntaxError? {
            var seen: [String] = []
            do throws(JSONSyntaxError) {
                _ = try Self.parse(text, known: ["a": "{}"], seen: &seen)
                return nil
            } catch {
                return error
            }
        }
        #expect(error(#"{"flags": {"a": {}, "a": {}}}"#)?.reason == #"duplicate key "a" in object"#)
        #expect(error(#"{"flags": {"a": {}, "b": [1,]}}"#)?.reason.hasPrefix("unexpected character ']'") == true)
        #expect(error(#"{"flags": {"a": {} "b": 1}}"#)?.reason.hasPrefix("expected ',' or '}'") == true)
        #expect(error(#"{"flags": {"a": {}}} x"#)?.reason.hasPrefix("unexpected character 'x'") == true)
        #expect(error(#"{"flags": {"a": {}, "b": tru}}"#)?.reason.hasPrefix("invalid literal") == true)
    }
}
