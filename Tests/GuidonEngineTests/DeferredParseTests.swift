import GuidonJSON
import Testing

@testable import GuidonEngine

/// Flag definitions are parsed one at a time as they are compiled, after the rest of the
/// document: a definition that is not JSON is still reported as the document's one error,
/// located in the document.
@Suite struct DeferredParseTests {
    private func rejection(_ text: String, reusing previous: Snapshot? = nil) throws -> ValidationReport {
        do {
            _ = try Snapshot.compile(json: Array(text.utf8), reusing: previous)
        } catch {
            return error
        }
        throw TestFailure("\(text) compiled")
    }

    private struct TestFailure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    @Test func aDefinitionThatIsNotJSONIsTheOnlyError() throws {
        // Flag "a" has a validation error, "b" is not JSON; the members after them parse.
        let text = """
            {"flags": {
              "a": {"state": "ON", "variants": {"x": 1}},
              "b": {"state": ENABLED, "variants": {"x": 1}}
            }, "metadata": {"team": "t"}}
            """
        let report = try rejection(text)
        #expect(report.errors.count == 1)
        #expect(report.errors[0].path == "$")
        #expect(report.errors[0].line == 3)
        #expect(report.errors[0].column == 18)
        #expect(report.errors[0].message.contains("expected a value"))
    }

    @Test func aDefinitionChangedIntoNonJSONIsCaughtOnReload() throws {
        let a = #"{"flags": {"a": {"state": "ENABLED", "variants": {"x": 1}, "defaultVariant": "x"}, "#
        let good = a + #""b": {"state": "ENABLED", "variants": {"y": 2}, "defaultVariant": "y"}}}"#
        let previous = try Snapshot.compile(json: Array(good.utf8))
        // "a" is taken from `previous` unparsed; "b" now repeats a key.
        let head = a + #""b": {"state": "ENABLED", "variants": {"y": 2, "#
        let report = try rejection(head + #""y": 3}, "defaultVariant": "y"}}}"#, reusing: previous)
        #expect(report.errors.map(\.message) == [#"duplicate key "y" in object"#])
        #expect(report.errors.first?.line == 1)
        #expect(report.errors.first?.column == head.utf8.count + 1)
    }
}
