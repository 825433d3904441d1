import GuidonJSON
import Testing

/// Parses `text`, expecting a syntax error; returns it.
func syntaxError(_ bytes: [UInt8], parser: JSONParser = JSONParser(), sourceLocation: SourceLocation = #_sourceLocation) -> JSONSyntaxError? {
    do {
        let value = try parser.parse(bytes)
        Issue.record("parsed as \(value)", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

func syntaxError(_ text: String, parser: JSONParser = JSONParser(), sourceLocation: SourceLocation = #_sourceLocation) -> JSONSyntaxError? {
    syntaxError(Array(text.utf8), parser: parser, sourceLocation: sourceLocation)
}

@Suite struct JSONParserTests {
    let parser = JSONParser()

    @Test func scalarsAndStructure() throws {
        #expect(try parser.parse(" null ") == .null)
        #expect(try parser.parse("true") == .bool(true))
        #expect(try parser.parse("[1, 2.5, \"x\", {}]") == [1, 2.5, "x", [:]])
        let object = try parser.parse(#"{"b": 1, "a": [true, null]}"#)
        #expect(object.object?.keys == ["b", "a"])  // document order is kept
        #expect(object == ["a": [true, nil], "b": 1])
    }

    // MARK: Strings

    @Test func escapes() throws {
        #expect(try parser.parse(#""\" \\ \/ \b \f \n \r \t""#) == .string("\" \\ / \u{08} \u{0C} \n \r \t"))
        #expect(try parser.parse(#""\u0041\u00e9\u65E5\u0000""#) == .string("Aé日\u{0}"))
        #expect(try parser.parse(#""plain ü and escaped \u00fc""#) == .string("plain ü and escaped ü"))
    }

    @Test func surrogatePairs() throws {
        #expect(try parser.parse(#""\ud83d\ude80""#) == .string("🚀"))
        #expect(try parser.parse(#""\uD834\uDD1E clef""#) == .string("𝄞 clef"))
    }

    @Test func loneSurrogatesAreRejected() {
        #expect(syntaxError(#""\ud83d""#)?.reason == "lone high surrogate \\uD83D in string")
        #expect(syntaxError(#""\ud83dx""#)?.reason == "lone high surrogate \\uD83D in string")
        #expect(syntaxError(#""\ud83d\u0041""#)?.reason == "high surrogate not followed by a low surrogate in string")
        let low = syntaxError(#"["ok", "\ude80"]"#)
        #expect(low?.reason == "lone low surrogate \\uDE80 in string")
        #expect(low?.column == 9)  // the backslash of the escape
    }

    @Test func badEscapes() {
        #expect(syntaxError(#""\x""#)?.reason == "invalid escape '\\x' in string")
        #expect(syntaxError(#""\u12G4""#)?.reason == "invalid hex digit in \\u escape")
        #expect(syntaxError(#""\u12"#)?.reason == "incomplete \\u escape in string")
    }

    @Test func controlCharactersMustBeEscaped() {
        let error = syntaxError("\"a\tb\"")
        #expect(error?.reason == "unescaped control character 0x9 in string")
        #expect(error?.column == 3)
    }

    @Test func unterminatedString() {
        let error = syntaxError("{\"key\": \"value")
        #expect(error?.reason == "unterminated string")
        #expect(error?.column == 9)
    }

    @Test func invalidUTF8IsRejectedWhereItIs() {
        // A stray continuation byte, an overlong encoding, a UTF-8-encoded surrogate, a truncated sequence.
        for (bytes, column) in [
            (Array("\"ab".utf8) + [0x80] + Array("\"".utf8), 4),
            (Array("\"".utf8) + [0xC0, 0xAF] + Array("\"".utf8), 2),
            (Array("\"x".utf8) + [0xED, 0xA0, 0x80] + Array("\"".utf8), 3),
            (Array("\"é".utf8) + [0xE6, 0x97] + Array("\"".utf8), 4),
            // The same after an escape (the slow path).
            (Array("\"\\n".utf8) + [0xFF] + Array("\"".utf8), 4),
        ] {
            let error = syntaxError(bytes)
            #expect(error?.reason == "invalid UTF-8 in string")
            #expect(error?.column == column, "\(bytes)")
        }
    }

    // MARK: Numbers

    @Test func integersAndFloatsStayApart() throws {
        #expect(try parser.parse("2") == .int(2))
        #expect(try parser.parse("2.0") == .double(2))
        #expect(try parser.parse("-0") == .int(0))
        #expect(try parser.parse("-0.0") == .double(-0.0))
        #expect(try parser.parse("1e2") == .double(100))
        #expect(try parser.parse("1E-2") == .double(0.01))
    }

    @Test func numbersAtTheEdges() throws {
        #expect(try parser.parse("9223372036854775807") == .int(Int64.max))
        #expect(try parser.parse("-9223372036854775808") == .int(Int64.min))
        #expect(try parser.parse("9223372036854775808") == .double(9_223_372_036_854_775_808))
        #expect(try parser.parse("-9223372036854775809") == .double(-9_223_372_036_854_775_809))
        #expect(try parser.parse("1.7976931348623157e308") == .double(.greatestFiniteMagnitude))
        #expect(try parser.parse("5e-324") == .double(.leastNonzeroMagnitude))
        #expect(try parser.parse("1e-400") == .double(0))
        #expect(try parser.parse("0.30000000000000004") == .double(0.30000000000000004))
    }

    @Test(arguments: [
        ("01", "invalid number: leading zeros are not allowed", 1),
        ("-", "invalid number: expected a digit", 2),
        ("-a", "invalid number: expected a digit", 2),
        ("1.", "invalid number: expected a digit after '.'", 3),
        (".5", "unexpected character '.', expected a value", 1),
        ("1e", "invalid number: expected a digit in the exponent", 3),
        ("1e+", "invalid number: expected a digit in the exponent", 4),
        ("+1", "unexpected character '+', expected a value", 1),
        ("1e400", "number 1e400 is out of range", 1),
        ("-1e400", "number -1e400 is out of range", 1),
        ("0x10", "unexpected character 'x' after the JSON value", 2),
        ("NaN", "unexpected character 'N', expected a value", 1),
    ])
    func invalidNumbers(text: String, reason: String, column: Int) {
        let error = syntaxError(text)
        #expect(error?.reason == reason)
        #expect(error?.column == column)
    }

    // MARK: Structure errors and positions

    @Test func errorsCarryLineAndColumn() {
        let text = "{\n  \"flags\": {\n    \"a\": tru\n  }\n}"
        let error = syntaxError(text)
        #expect(error?.reason == "invalid literal, expected 'true'")
        #expect(error?.line == 3)
        #expect(error?.column == 10)
        #expect(error?.offset == 24)
        #expect(error?.description == "line 3, column 10: invalid literal, expected 'true'")
    }

    @Test(arguments: [
        ("[1, 2", "unexpected end of input inside an array", 1, 6),
        ("[1 2]", "expected ',' or ']' in array, found character '2'", 1, 4),
        ("[1,]", "unexpected character ']', expected a value", 1, 4),
        ("{\"a\" 1}", "expected ':' after object key \"a\", found character '1'", 1, 6),
        ("{\"a\": 1,}", "expected a string key in object, found character '}'", 1, 9),
        ("{a: 1}", "expected a string key in object, found character 'a'", 1, 2),
        ("{\"a\": 1\n\"b\": 2}", "expected ',' or '}' in object, found character '\"'", 2, 1),
        ("", "unexpected end of input, expected a value", 1, 1),
        ("  \n  ", "unexpected end of input, expected a value", 2, 3),
        ("{} {}", "unexpected character '{' after the JSON value", 1, 4),
        ("// comment\n{}", "unexpected character '/', expected a value", 1, 1),
        ("\u{FEFF}{}", "unexpected byte 0xEF, expected a value", 1, 1),
    ])
    func structuralErrors(text: String, reason: String, line: Int, column: Int) {
        let error = syntaxError(text)
        #expect(error?.reason == reason)
        #expect(error?.line == line)
        #expect(error?.column == column)
    }

    @Test func columnsCountBytes() {
        // "ü" is two bytes: the error after it is reported at byte column 8.
        #expect(syntaxError("[\"ü\", x]")?.column == 8)
    }

    // MARK: Limits and duplicates

    @Test func depthLimit() throws {
        let limited = JSONParser(maxDepth: 4)
        #expect(try limited.parse("[[[[1]]]]") == [[[[1]]]])
        #expect(try limited.parse(#"{"a": [{"b": [2]}]}"#) == ["a": [["b": [2]]]])
        let error = syntaxError("[[[[[1]]]]]", parser: limited)
        #expect(error?.reason == "nesting deeper than 4 levels")
        #expect(error?.column == 5)
        // The default limit (256) stops hostile input long before the stack would.
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(syntaxError(deep)?.reason == "nesting deeper than 256 levels")
        let ok = String(repeating: "[", count: 256) + String(repeating: "]", count: 256)
        #expect(throws: Never.self) { try JSONParser().parse(ok) }
    }

    @Test func duplicateKeys() throws {
        let text = #"{"a": 1, "b": 2, "a": 3}"#
        let lastWins = try JSONParser(duplicateKeys: .lastWins).parse(text)
        #expect(lastWins.object?.keys == ["a", "b"])
        #expect(lastWins.object?["a"] == 3)
        let error = syntaxError(text, parser: JSONParser(duplicateKeys: .reject))
        #expect(error?.reason == "duplicate key \"a\" in object")
        #expect(error?.column == 18)
        // Keys that differ only in escaping are the same key.
        #expect(syntaxError(#"{"é": 1, "\u00e9": 2}"#, parser: JSONParser(duplicateKeys: .reject)) != nil)
    }

    @Test func largeObjectsUseTheIndex() throws {
        let members = (0..<100).map { "\"k\($0)\": \($0)" }.joined(separator: ", ")
        let object = try #require(try parser.parse("{\(members)}").object)
        #expect(object.count == 100)
        #expect(object["k57"] == 57)
        #expect(object["k100"] == nil)
        var copy = object
        copy["k3"] = nil
        #expect(copy.count == 99 && copy["k3"] == nil && copy["k4"] == 4 && copy["k99"] == 99)
    }
}
