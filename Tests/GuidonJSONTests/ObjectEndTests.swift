import GuidonJSON
import Testing

/// Delimiting an object by its structure, and parsing it later on its own.
@Suite struct ObjectEndTests {
    private func end(_ text: String, from start: Int = 0) -> Int? {
        JSONParser.objectEnd(in: Array(text.utf8), from: start)
    }

    @Test func findsTheClosingBraceOfWellFormedObjects() throws {
        let values: [JSONValue] = [
            [:], ["a": 1], ["a": ["b": [1, [2, ["c": "}"]]]]], ["quote\"}": "\\", "brackets": "[{]}", "e": "caf\u{e9}"],
            ["list": [[], [[]], [:]], "n": -1.5e3, "t": true, "null": nil],
        ]
        for value in values {
            let text = JSONWriter.string(value)
            #expect(end(text) == text.utf8.count, "\(text)")
            #expect(end("[" + text + ", 1]", from: 1) == text.utf8.count + 1)
        }
        let spaced = "{ \"a\" : [ 1 , { } ] ,\n \"b\" : \"x\\\"}\" }"
        #expect(end(spaced + " , 2") == spaced.utf8.count)
    }

    @Test func leavesWhatItCannotDelimitToTheParser() {
        #expect(end("[1]") == nil, "not an object")
        #expect(end(#""{}""#) == nil)
        #expect(end(#"{"a": [1}"#) == nil, "mismatched")
        #expect(end(#"{"a": {"b": 1]}"#) == nil)
        #expect(end(#"{"a": 1"#) == nil, "cut short")
        #expect(end(#"{"a": "}"#) == nil, "an unterminated string")
        #expect(end(#"{"a": "\"#) == nil)
        let deep = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(end("{\"a\": " + deep + "}") == nil, "deeper than 64 levels")
        let shallower = String(repeating: "[", count: 62) + String(repeating: "]", count: 62)
        #expect(end("{\"a\": " + shallower + "}") != nil)
    }

    /// What the structure alone lets through, the later parse rejects, at the right place in the document.
    @Test func theLaterParseChecksEverythingElseWithDocumentPositions() throws {
        let text = "{\"flags\": {\n  \"a\": {\"ok\": [1, 2]},\n  \"b\": {\"state\": ENABLED}\n}}"
        let bytes = Array(text.utf8)
        var starts: [Int] = []
        let (value, spans) = try JSONParser(duplicateKeys: .reject).parse(bytes, skippingIn: "flags") { _, _, start in
            starts.append(start)
            return JSONParser.objectEnd(in: bytes, from: start)
        }
        #expect(value == ["flags": ["a": nil, "b": nil]])
        #expect(spans.map(\.lowerBound) == starts)
        let parser = JSONParser(duplicateKeys: .reject)
        #expect(try parser.parse(bytes, valueIn: spans[0], depth: 2) == ["ok": [1, 2]])
        #expect(throws: JSONSyntaxError.self) { try parser.parse(bytes, valueIn: spans[1], depth: 2) }
        do {
            _ = try parser.parse(bytes, valueIn: spans[1], depth: 2)
        } catch {
            #expect(error.line == 3)
            #expect(error.column == 18)
            #expect(error.reason.contains("expected a value"))
        }
        let duplicate = Array(#"{"x": {"k": 1, "k": 2}}"#.utf8)
        #expect(throws: JSONSyntaxError.self) { try parser.parse(duplicate, valueIn: 6..<duplicate.count - 1, depth: 2) }
        // The depth limit counts from the document's root.
        let nested = Array(#"{"x": [[1]]}"#.utf8)
        #expect(throws: JSONSyntaxError.self) { try JSONParser(maxDepth: 3).parse(nested, valueIn: 6..<nested.count - 1, depth: 2) }
        #expect(try JSONParser(maxDepth: 4).parse(nested, valueIn: 6..<nested.count - 1, depth: 2) == [[1]])
    }
}
