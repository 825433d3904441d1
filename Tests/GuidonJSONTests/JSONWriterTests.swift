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
