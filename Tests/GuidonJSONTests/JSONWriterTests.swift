import GuidonJSON
import Testing

@Suite struct JSONWriterTests {
    @Test func compactOutput() {
        let value: JSONValue = ["name": "guidon", "tags": [1, 2.5, true, nil], "nested": ["empty": [:], "list": []]]
        #expect(JSONWriter.string(value) == #"{"name":"guidon","tags":[1,2.5,true,null],"nested":{"empty":{},"list":[]}}"#)
    }

    @Test func stringEscapes() {
        #expect(JSONWriter.string("quote \" backslash \\ slash / tab \t nl \n cr \r bs \u{08} ff \u{0C}")
            == #""quote \" backslash \\ slash / tab \t nl \n cr \r bs \b ff \f""#)
        #expect(JSONWriter.string("\u{0}\u{1F}\u{7F}") == #""\u0000\u001f\#u{7F}""#)
        #expect(JSONWriter.string("ü 日本 🚀") == "\"ü 日本 🚀\"")
    }

    /// Strings are scanned eight bytes at a time: whatever the length and wherever a character
    /// to escape falls, the text is what a byte-by-byte escaper writes.
    @Test func escapesLandAnywhereInAWord() {
        func reference(_ text: String) -> String {
            var out: [UInt8] = [UInt8(ascii: "\"")]
            for b in text.utf8 {
                switch b {
                case UInt8(ascii: "\""): out += Array(#"\""#.utf8)
                case UInt8(ascii: "\\"): out += Array(#"\\"#.utf8)
                case 0x0A: out += Array(#"\n"#.utf8)
                case 0x0D: out += Array(#"\r"#.utf8)
                case 0x09: out += Array(#"\t"#.utf8)
                case 0x08: out += Array(#"\b"#.utf8)
                case 0x0C: out += Array(#"\f"#.utf8)
                case 0..<0x20:
                    let hex = Array("0123456789abcdef".utf8)
                    out += Array(#"\u00"#.utf8) + [hex[Int(b >> 4)], hex[Int(b & 0xF)]]
                default: out.append(b)
                }
            }
            out.append(UInt8(ascii: "\""))
            return String(decoding: out, as: UTF8.self)
        }
        let specials: [Character] = ["\"", "\\", "\n", "\u{1}", "\u{1F}", " ", "\u{7F}", "é"]
        for length in 0...19 {
            for position in 0..<max(length, 1) {
                for special in specials {
                    var characters = Array(repeating: Character("a"), count: length)
                    if length > 0 { characters[position] = special }
                    let text = String(characters)
                    #expect(JSONWriter.string(.string(text)) == reference(text), "\(Array(text.utf8))")
                }
            }
        }
    }

    @Test func numbers() {
        #expect(JSONWriter.string(.int(Int64.min)) == "-9223372036854775808")
        #expect(JSONWriter.string(.int(0)) == "0")
        #expect(JSONWriter.string(.double(250)) == "250.0")
        #expect(JSONWriter.string(.double(0.1)) == "0.1")
        #expect(JSONWriter.string(.double(5e-324)) == "5e-324")
        #expect(JSONWriter.string(.double(1e100)) == "1e+100")
        #expect(JSONWriter.string(.double(.nan)) == "null")
        #expect(JSONWriter.string(.double(-.infinity)) == "null")
    }

    @Test(arguments: [
        #"{"a":[1,-2,3.25,1e-05,"x\ny",null,true,false,{"b":{}}]}"#,
        #"["\u0000","\ud83d\ude80","\u00e9",-0.0,9223372036854775807,1.7976931348623157e308]"#,
        #""""#,
    ])
    func roundTrip(text: String) throws {
        let value = try JSONParser().parse(text)
        let written = JSONWriter.string(value)
        let reparsed = try JSONParser().parse(written)
        #expect(reparsed == value)
        #expect(JSONWriter.string(reparsed) == written)
    }

    @Test func objectEqualityIgnoresMemberOrder() throws {
        let a = try JSONParser().parse(#"{"x": 1, "y": [1, 2]}"#)
        let b = try JSONParser().parse(#"{"y": [1, 2], "x": 1}"#)
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        #expect(a != (try JSONParser().parse(#"{"y": [2, 1], "x": 1}"#)))
    }

    @Test func jsonEqualsComparesNumbersByValue() {
        #expect(JSONValue.int(1).jsonEquals(.double(1)))
        #expect(JSONValue.int(1) != .double(1))
        #expect(JSONValue.array([1, ["a": 2]]).jsonEquals([1.0, ["a": 2.0]]))
        #expect(!JSONValue.string("1").jsonEquals(.int(1)))
    }
}
