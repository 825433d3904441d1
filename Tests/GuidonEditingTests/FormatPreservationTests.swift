import Foundation
import GuidonEditing
import GuidonEngine
import GuidonJSON
import Testing

/// Minimal edits of the bundled example file: only the changed flag's text changes, and what is
/// written anew looks like the text around it.
@Suite struct FormatPreservationTests {
    /// The example file with `old` replaced by `new` exactly once.
    func example(replacing old: String, with new: String) throws -> String {
        let original = text(exampleFile)
        let parts = original.components(separatedBy: old)
        try #require(parts.count == 2, "\(old) occurs \(parts.count - 1) times")
        return parts.joined(separator: new)
    }

    @Test func aRolloutChangesTheTwoWeightsAndNothingElse() throws {
        let edited = try edit(exampleFile, "search-v2", .rollout(percentage: 50, variant: nil, otherVariant: nil))
        #expect(text(edited.document) == (try example(replacing: #"["on", 10], ["off", 90]"#, with: #"["on", 50], ["off", 50]"#)))
        #expect(edited.summary == "search-v2: rollout 10 % → 50 %")
        #expect(edited.changed)
    }

    @Test func byAndReasonReplaceTheMetadataValuesInPlace() throws {
        let edited = try edit(exampleFile, "search-v2", .rollout(percentage: 25, variant: nil, otherVariant: nil),
                              by: "ana", reason: "latency review passed")
        var expected = try example(replacing: #"["on", 10], ["off", 90]"#, with: #"["on", 25], ["off", 75]"#)
        expected = expected.replacingOccurrences(
            of: "\"updatedBy\": \"maria.lopez\",\n        \"notes\": \"10 % rollout by user; raise after the latency review.\"",
            with: "\"updatedBy\": \"ana\",\n        \"notes\": \"latency review passed\"")
        #expect(text(edited.document) == expected)
    }

    @Test func theKillSwitchChangesOneWord() throws {
        let edited = try edit(exampleFile, "theme", .setState(enabled: false))
        let (prefix, suffix) = difference(exampleFile, edited.document)
        #expect(text(Array(exampleFile[prefix..<(exampleFile.count - suffix)])) == "EN")
        #expect(text(Array(edited.document[prefix..<(edited.document.count - suffix)])) == "DIS")
        #expect(edited.summary == "theme: state ENABLED → DISABLED")
    }

    @Test func aNewTargetingRuleFollowsTheFileIndentationAndGoesBeforeMetadata() throws {
        let edited = try edit(exampleFile, "theme", .target(.users(["user-7"]), variant: "fresh", deny: false))
        let expected = try example(
            replacing: """
                      "defaultVariant": "classic",
                      "metadata": {
                        "updatedBy": "design",
                """,
            with: """
                      "defaultVariant": "classic",
                      "targeting": {
                        "if": [{"in": [{"var": "targetingKey"}, ["user-7"]]}, "fresh"]
                      },
                      "metadata": {
                        "updatedBy": "design",
                """)
        #expect(text(edited.document) == expected)
    }

    @Test func aCreatedFlagIsAppendedAfterTheLastOneInTheFileStyle() throws {
        let definition: JSONValue = [
            "state": "ENABLED", "variants": ["on": true, "off": false], "defaultVariant": "off",
            "metadata": ["updatedBy": "ci", "ticket": "REL-1"],
        ]
        let edited = try edit(exampleFile, "release-42", .create(definition: definition))
        let expected = try example(
            replacing: """
                        "ticket": "DSN-12"
                      }
                    }
                  },
                """,
            with: """
                        "ticket": "DSN-12"
                      }
                    },
                    "release-42": {
                      "state": "ENABLED",
                      "variants": {"on": true, "off": false},
                      "defaultVariant": "off",
                      "metadata": {"updatedBy": "ci", "ticket": "REL-1"}
                    }
                  },
                """)
        #expect(text(edited.document) == expected)
    }

    @Test func deletingTheLastFlagTakesItsCommaAndLeavesTheRestAlone() throws {
        let edited = try edit(exampleFile, "theme", .delete)
        let original = text(exampleFile)
        let start = try #require(original.range(of: ",\n    \"theme\": {"))
        let end = try #require(original.range(of: "\"ticket\": \"DSN-12\"\n      }\n    }"))
        var expected = original
        expected.removeSubrange(start.lowerBound..<end.upperBound)
        #expect(text(edited.document) == expected)
        #expect(edited.after == nil)
    }

    @Test func deletingAFlagInTheMiddleTakesItsLine() throws {
        let edited = try edit(exampleFile, "recommendations", .delete)
        let original = text(exampleFile)
        let start = try #require(original.range(of: "\"recommendations\": {"))
        let end = try #require(original.range(of: "\"max-cart-items\": {"))
        var expected = original
        expected.removeSubrange(start.lowerBound..<end.lowerBound)
        #expect(text(edited.document) == expected)
    }

    @Test func everyVerbLeavesEveryOtherFlagByteForByte() throws {
        let actions: [(String, FlagOperation.Action)] = [
            ("bulk-export", .target(Subjects(attribute: "tenantId", values: ["tenant-0777"]), variant: nil, deny: true)),
            ("beta-dashboard", .untarget(.users(["user-2002"]), variant: nil)),
            ("checkout-button-copy", .split([SplitWeight(variant: "control", weight: 50), SplitWeight(variant: "urgent", weight: 50),
                                              SplitWeight(variant: "friendly", weight: 0)])),
            ("black-friday-banner", .schedule(variant: "show", start: 1_800_000_000, end: 1_800_086_400)),
            ("new-checkout", .rollout(percentage: 5, variant: nil, otherVariant: nil)),
            ("max-cart-items", .setDefault(variant: "large")),
            ("internal-tools", .setMetadata(name: "ticket", value: "OPS-211")),
            ("recommendations", .removeMetadata(name: "ticket")),
        ]
        let document = try JSONParser().parse(exampleFile)
        for (flag, action) in actions {
            let edited = try edit(exampleFile, flag, action)
            // The flag's own text is the only place that changed…
            let original = text(exampleFile)
            let start = try #require(original.range(of: "\"\(flag)\": {"))
            let prefixBytes = original[..<start.lowerBound].utf8.count
            let (prefix, suffix) = difference(exampleFile, edited.document)
            #expect(prefix >= prefixBytes, "\(flag): changed before its own text")
            // …and every other flag, `$schema`, `metadata` and `$evaluators` parse as before.
            let after = try JSONParser().parse(edited.document)
            for (key, value) in document.object!["flags"]!.object! where key != flag {
                #expect(after.object!["flags"]!.object![key] == value, "\(flag): flag \(key) changed")
            }
            for key in ["$schema", "metadata", "$evaluators"] {
                #expect(after.object![key] == document.object![key])
            }
            #expect(edited.document != exampleFile && suffix < exampleFile.count)
        }
    }

    @Test func aCompactFileStaysCompact() throws {
        let compact = Array(#"{"flags":{"a":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off"}}}"#.utf8)
        let rolled = try edit(compact, "a", .rollout(percentage: 20, variant: nil, otherVariant: nil))
        #expect(text(rolled.document) == #"{"flags":{"a":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off","targeting":{"fractional":[["on",20],["off",80]]}}}}"#)
        let created = try edit(compact, "b", .create(definition: ["state": "DISABLED", "variants": ["x": 1]]))
        #expect(text(created.document) == #"{"flags":{"a":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off"},"b":{"state":"DISABLED","variants":{"x":1}}}}"#)
    }

    @Test func fourSpacesTabsAndCRLFAreFollowed() throws {
        for (unit, newline) in [("    ", "\n"), ("\t", "\n"), ("  ", "\r\n")] {
            let source = ["{", "\(unit)\"flags\": {", "\(unit)\(unit)\"a\": {", "\(unit)\(unit)\(unit)\"state\": \"ENABLED\",",
                          "\(unit)\(unit)\(unit)\"variants\": {\"on\": true, \"off\": false}", "\(unit)\(unit)}", "\(unit)}", "}", ""]
                .joined(separator: newline)
            let edited = try edit(Array(source.utf8), "a", .setMetadata(name: "owner", value: "team-a"))
            let expected = ["{", "\(unit)\"flags\": {", "\(unit)\(unit)\"a\": {", "\(unit)\(unit)\(unit)\"state\": \"ENABLED\",",
                            "\(unit)\(unit)\(unit)\"variants\": {\"on\": true, \"off\": false},",
                            "\(unit)\(unit)\(unit)\"metadata\": {\"owner\": \"team-a\"}", "\(unit)\(unit)}", "\(unit)}", "}", ""]
                .joined(separator: newline)
            #expect(text(edited.document) == expected, "indent \(unit.debugDescription)")
        }
    }

    @Test func anEmptyFlagsObjectGetsItsFirstFlag() throws {
        let empty = Array("{\n  \"flags\": {}\n}\n".utf8)
        let edited = try edit(empty, "a", .create(definition: ["state": "ENABLED", "variants": ["on": true]]))
        #expect(text(edited.document) == "{\n  \"flags\": {\n    \"a\": {\n      \"state\": \"ENABLED\",\n      \"variants\": {\"on\": true}\n    }\n  }\n}\n")
        let compact = Array(#"{"flags":{}}"#.utf8)
        #expect(text(try edit(compact, "a", .create(definition: ["state": "ENABLED", "variants": ["on": true]])).document)
                == #"{"flags":{"a":{"state":"ENABLED","variants":{"on":true}}}}"#)
    }

    @Test func removingTheOnlyAndTheLastMembersKeepsTheJSONValid() throws {
        let source = Array(#"{"flags": {"a": {"state": "ENABLED", "variants": {"on": true}, "metadata": {"x": 1}}}}"#.utf8)
        let edited = try edit(source, "a", .removeMetadata(name: "x"))
        #expect(text(edited.document) == #"{"flags": {"a": {"state": "ENABLED", "variants": {"on": true}}}}"#)
        let only = try edit(Array(#"{"flags": {"a": {"state": "ENABLED", "variants": {"on": true}}}}"#.utf8), "a", .delete)
        #expect(text(only.document) == #"{"flags": {}}"#)
    }
}
