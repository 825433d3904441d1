import GuidonJSON
import Testing

@Suite struct SkippingParseTests {
    @Test func valueEndsMatchQuotesAndBrackets() {
        let cases: [(String, Int)] = [
            (#"{"a": [1, {"b": "}"}]}, 2"#, 22),
            (#""say \"hi\"", 1"#, 12),
            ("12.5e3, 4", 6),
            ("true}", 4),
            ("[[], [[]]] ", 10),
            (#""unterminated \"#, 15),  // runs to the end
            ("{\"open\": [", 10),
        ]
        for (text, end) in cases {
            let bytes = Array(text.utf8)
            #expect(bytes.withUnsafeBytes { jsonValueEnd(from: 0, in: $0) } == end, "\(text)")
        }
    }

    @Test func skippedMembersStandAsNullAndTheRestIsParsed() throws {
        let text = #"{"flags": {"a": {"x": 1}, "b": [2, "]"], "c": 3}, "other": {"a": 4}}"#
        let bytes = Array(text.utf8)
        var seen: [String] = []
        let value = try JSONParser().parse(bytes, skippingIn: "flags") { index, key, start in
            let end = bytes.withUnsafeBytes { jsonValueEnd(from: start, in: $0) }
            seen.append("\(index) \(key) \(String(decoding: bytes[start..<end], as: UTF8.self))")
            return key == "c" ? nil : end
        }
        #expect(seen == [#"0 a {"x": 1}"#, #"1 b [2, "]"]"#, "2 c 3"])
        #expect(value == ["flags": ["a": nil, "b": nil, "c": 3], "other": ["a": 4]])
    }

    @Test func onlyTheRootMemberIsSkimmed() throws {
        var calls = 0
        let value = try JSONParser().parse(Array(#"{"x": {"flags": {"a": 1}}, "flags": 5}"#.utf8), skippingIn: "flags") { _, _, start in
            calls += 1
            return start + 1
        }
        #expect(calls == 0)
        #expect(value == ["x": ["flags": ["a": 1]], "flags": 5])
    }

    @Test func errorsOutsideSkippedValuesAreStillReported() {
        let parser = JSONParser(duplicateKeys: .reject)
        func error(_ text: String) -> JSONSyntaxError? {
            let bytes = Array(text.utf8)
            do throws(JSONSyntaxError) {
                _ = try parser.parse(bytes, skippingIn: "flags") { _, key, start in
                    key == "a" ? bytes.withUnsafeBytes { jsonValueEnd(from: start, in: $0) } : nil
                }
                return nil
            } catch {
                return error
            }
        }
        #expect(error(#"{"flags": {"a": {}, "a": {}}}"#)?.reason == #"duplicate key "a" in object"#)
        #expect(error(#"{"flags": {"a": {}, "b": [1,]}}"#)?.reason.hasPrefix("unexpected character ']'") == true)
        #expect(error(#"{"flags": {"a": {} "b": 1}}"#)?.reason.hasPrefix("expected ',' or '}'") == true)
        #expect(error(#"{"flags": {"a": {}}} x"#)?.reason.hasPrefix("unexpected character 'x'") == true)
    }
}
