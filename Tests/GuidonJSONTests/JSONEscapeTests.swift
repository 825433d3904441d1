@testable import GuidonJSON
import Testing

@Suite("JSON escape sequences")
struct JSONEscapeTests {
    /// Decodes the escape at the start of `text`; returns the UTF-8 produced and the end offset.
    func decode(_ text: String) throws(JSONEscape.Problem) -> (String, Int) {
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        let result: Result<Int, JSONEscape.Problem> = bytes.withUnsafeBytes { raw in
            do throws(JSONEscape.Problem) {
                return .success(try JSONEscape.decode(raw, backslash: 0, into: &out))
            } catch { return .failure(error) }
        }
        let end = try result.get()
        return (String(decoding: out, as: UTF8.self), end)
    }

    @Test func simpleEscapes() throws {
        let cases: [(String, String)] = [
            (#"\""#, "\""), (#"\\"#, "\\"), (#"\/"#, "/"), (#"\b"#, "\u{08}"), (#"\f"#, "\u{0C}"),
            (#"\n"#, "\n"), (#"\r"#, "\r"), (#"\t"#, "\t"),
        ]
        for (escape, expected) in cases {
            let (decoded, end) = try decode(escape + "rest")
            #expect(decoded == expected)
            #expect(end == 2, "the offset after \(escape)")
        }
    }

    @Test func unicodeEscapesOfEveryLength() throws {
        #expect(try decode(#"\u0041"#) == ("A", 6))
        #expect(try decode(#"\u00e9"#) == ("é", 6))
        #expect(try decode(#"\u20AC"#) == ("€", 6))
        #expect(try decode(#"\uD83D\uDE80"#) == ("🚀", 12))
        #expect(try decode(#"\uFFFF"#).1 == 6)
    }

    @Test func problemsSayWhatAndWhere() {
        func problem(_ text: String) -> JSONEscape.Problem? {
            do { _ = try decode(text); return nil } catch { return error }
        }
        #expect(problem(#"\x"#) == JSONEscape.Problem(reason: "invalid escape '\\x' in string", offset: 0))
        #expect(problem(#"\u12G4"#) == JSONEscape.Problem(reason: "invalid hex digit in \\u escape", offset: 4))
        #expect(problem(#"\u12"#) == JSONEscape.Problem(reason: "incomplete \\u escape in string", offset: 2))
        #expect(problem(#"\uD800"#)?.reason == "lone high surrogate \\uD800 in string")
        #expect(problem(#"\uD800\u0041"#)?.reason == "high surrogate not followed by a low surrogate in string")
        #expect(problem(#"\uDC00"#)?.reason == "lone low surrogate \\uDC00 in string")
        #expect(problem("\\") == JSONEscape.Problem(reason: "unterminated string", offset: 0))
    }
}
