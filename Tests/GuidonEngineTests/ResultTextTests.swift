import GuidonJSON
import Testing

@testable import GuidonEngine

/// The text a compiled flag writes once for its results, read back as JSON.
@Suite struct ResultTextTests {
    /// `{` + `members` + `}`, parsed.
    private func object(_ members: [UInt8]) throws -> JSONObject {
        try #require(try JSONParser(duplicateKeys: .reject).parse(Array("{".utf8) + members + Array("}".utf8)).object)
    }

    /// The lent members, one after the other.
    private func joined(_ members: UnsafeRawBufferPointer?...) -> [UInt8] {
        members.reduce(into: []) { text, member in text += member.map(Array.init) ?? [] }
    }

    @Test func everyVariantsMembersReadBackAsWritten() throws {
        // More variants than a table scans, of every kind of value, with names that need escaping.
        let names = (0..<11).map { "v\($0)" } + ["quote \" é", ""]
        let values: [JSONValue] = [
            true, false, 0, -7, 2.5, "", "caf\u{e9} \"\\\n", ["a": [1, .null]], [:], 1e300, "v", "x", ["nested": ["deep": "yes"]],
        ]
        let metadata: JSONObject = ["owner": "team", "notes": "tab\there", "n": 3]
        let text = ResultText.make(flagKey: "k\u{e9}y \"q\"", variants: VariantTable(names: names, values: values), metadata: metadata)
        #expect(text.hasMembers)
        #expect(text.metadata == metadata)
        #expect(try JSONParser().parse(text.metadataJSON) == .object(metadata))
        for i in names.indices {
            let both = text.withMembers(flag: true, variant: i) { flag, variant, json in
                #expect(Array(json) == text.metadataJSON)
                return joined(flag, variant)
            }
            #expect(try object(both) == ["flag": "k\u{e9}y \"q\"", "value": values[i], "variant": .string(names[i])])
            let variantOnly = text.withMembers(flag: false, variant: i) { flag, variant, _ in
                #expect(flag == nil)
                return joined(variant)
            }
            #expect(variantOnly.first == UInt8(ascii: ","), "a variant's members follow the flag's")
            #expect(try object(Array(variantOnly.dropFirst())) == ["value": values[i], "variant": .string(names[i])])
        }
        let flagOnly = text.withMembers(flag: true, variant: nil) { flag, variant, _ in
            #expect(variant == nil)
            return joined(flag)
        }
        #expect(try object(flagOnly) == ["flag": "k\u{e9}y \"q\""])
    }

    @Test func metadataAloneHasNoMembers() throws {
        #expect(!ResultText.none.hasMembers)
        #expect(ResultText.none.metadataJSON == Array("{}".utf8))
        #expect(ResultText.make(JSONObject()).metadataJSON == Array("{}".utf8))
        let text = ResultText.make(["a": "b"])
        #expect(!text.hasMembers)
        #expect(text.metadataJSON == Array(#"{"a":"b"}"#.utf8))
        text.withMembers(flag: true, variant: nil) { flag, variant, metadata in
            #expect(flag == nil && variant == nil)
            #expect(Array(metadata) == Array(#"{"a":"b"}"#.utf8))
        }
    }
}
