import GuidonEditing
import GuidonEngine
import GuidonJSON
import Testing

/// Every impossible edit is refused with a code and a message that says what and why.
@Suite struct BadInputTests {
    let base = VerbTests.base

    func expect(_ action: FlagOperation.Action, flag: String = "feature", _ code: EditError.Code, _ words: String,
                sourceLocation: SourceLocation = #_sourceLocation) {
        let error = refusal(base, flag, action)
        #expect(error?.code == code, "\(String(describing: error))", sourceLocation: sourceLocation)
        #expect(error?.message.contains(words) == true, "\(String(describing: error?.message)) lacks \(words)", sourceLocation: sourceLocation)
    }

    @Test func unknownFlagsAndVariants() {
        expect(.setState(enabled: false), flag: "featur", .noSuchFlag, #"did you mean "feature""#)
        expect(.delete, flag: "nope", .noSuchFlag, #"no flag "nope""#)
        expect(.create(definition: ["state": "ENABLED", "variants": ["on": true]]), .flagExists, "already exists")
        expect(.setDefault(variant: "onn"), .noSuchVariant, #"did you mean "on""#)
        expect(.rollout(percentage: 5, variant: "maybe", otherVariant: nil), .noSuchVariant, #"no variant "maybe""#)
        expect(.target(.users(["u"]), variant: "x", deny: false), .noSuchVariant, "its variants")
        expect(.split([SplitWeight(variant: "on", weight: 1), SplitWeight(variant: "of", weight: 1)]), .noSuchVariant, "did you mean")
        expect(.schedule(variant: "nope", start: 1, end: 2), .noSuchVariant, "nope")
    }

    @Test func percentages() {
        expect(.rollout(percentage: 120, variant: nil, otherVariant: nil), .invalidArgument, "between 0 and 100, not 120")
        expect(.rollout(percentage: -1, variant: nil, otherVariant: nil), .invalidArgument, "between 0 and 100")
        expect(.rollout(percentage: .nan, variant: nil, otherVariant: nil), .invalidArgument, "between 0 and 100")
        expect(.rollout(percentage: 10.125, variant: nil, otherVariant: nil), .invalidArgument, "two decimals")
        expect(.rollout(percentage: 10, variant: nil, otherVariant: nil), flag: "color", .invalidArgument, "name the variant")
        expect(.rollout(percentage: 10, variant: "on", otherVariant: "on"), .invalidArgument, "must differ")
    }

    @Test func splits() {
        expect(.split([SplitWeight(variant: "on", weight: 0), SplitWeight(variant: "off", weight: 0)]), .invalidArgument, "all zero")
        expect(.split([SplitWeight(variant: "on", weight: -1), SplitWeight(variant: "off", weight: 5)]), .invalidArgument, "negative")
        expect(.split([SplitWeight(variant: "on", weight: 1)]), .invalidArgument, "at least two")
        expect(.split([SplitWeight(variant: "on", weight: 1), SplitWeight(variant: "on", weight: 1)]), .invalidArgument, "twice")
        expect(.split([SplitWeight(variant: "on", weight: Int64(Int32.max)), SplitWeight(variant: "off", weight: 1)]), .invalidArgument, "less than")
    }

    @Test func schedules() {
        expect(.schedule(variant: "on", start: 200, end: 100), .invalidArgument, "is not after the start")
        expect(.schedule(variant: "on", start: 100, end: 100), .invalidArgument, "is not after the start")
        expect(.schedule(variant: "on", start: nil, end: nil), .invalidArgument, "a start, an end")
        expect(.clearSchedule, .invalidArgument, "no schedule")
        #expect(Instant.parse("2026-11-27T00:00:00Z") == 1_795_737_600)
        #expect(Instant.parse("2026-11-27T01:00:00+01:00") == 1_795_737_600)
        #expect(Instant.parse("2026-11-27") == 1_795_737_600)
        #expect(Instant.parse("2026-11-27T00:00:00.750Z") == 1_795_737_600)
        for bad in ["", "tomorrow", "2026-02-30", "2026-11-27T25:00Z", "2026-11-27T10:00", "1795737600", "2026-11-27T10:00Zjunk"] {
            #expect(Instant.parse(bad) == nil, "\(bad)")
        }
    }

    @Test func wrongTypesAreRefusedWithTheValidationReport() throws {
        let error = try #require(refusal(base, "feature", .replace(definition: ["state": "ENABLED", "variants": ["on": true, "off": "no"]])))
        #expect(error.code == .invalidDocument)
        let report = try #require(error.report)
        #expect(report.errors.contains { $0.path == "flags.feature.variants.off" && $0.message.contains("same type") })
        #expect(report.errors.first?.line != nil)

        expect(.create(definition: ["state": "ENABLED", "variants": ["a": 1, "b": true]]), flag: "new", .invalidDocument, "does not validate")
        expect(.create(definition: "on"), flag: "new", .invalidArgument, "must be an object")
        expect(.setMetadata(name: "x", value: ["nested": true]), .invalidArgument, "strings, numbers or booleans")
        expect(.removeMetadata(name: "x"), .invalidArgument, "no metadata")
        expect(.target(Subjects(attribute: "tier", values: [["a": 1]]), variant: "on", deny: false), .invalidArgument, "strings or numbers")
        expect(.target(Subjects(attribute: "tier", values: []), variant: "on", deny: false), .invalidArgument, "at least one")
        expect(.untarget(.users(["ghost"]), variant: nil), .invalidArgument, "does not target")
    }

    @Test func targetingOutsideTheChainIsRefusedByTheVerbsThatNeedIt() throws {
        let odd = Array(#"{"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {"if": [{"var": "beta"}, {"cat": ["o", "n"]}, "off"]}}}}"#.utf8)
        let error = try #require(refusal(odd, "f", .rollout(percentage: 5, variant: nil, otherVariant: nil)))
        #expect(error.code == .unsupportedTargeting)
        #expect(error.message.contains("computed value"))
        #expect(error.message.contains("flags.replace"))
        // Verbs that do not touch targeting still work.
        #expect(try edit(odd, "f", .setState(enabled: false)).changed)
        // A split across three variants is not a rollout.
        #expect(refusal(exampleFile, "checkout-button-copy", .rollout(percentage: 5, variant: "urgent", otherVariant: nil))?.code == .unsupportedTargeting)
    }

    @Test func brokenDocumentsAreReported() throws {
        let error = try #require(refusal(Array(#"{"flags": {"f": {"state": }}}"#.utf8), "f", .setState(enabled: true)))
        #expect(error.code == .invalidDocument)
        #expect(error.message.contains("line 1"))
        #expect(refusal(Array(#"{"nothing": 1}"#.utf8), "f", .delete)?.code == .invalidDocument)
        #expect(refusal(Array("[]".utf8), "f", .delete)?.code == .invalidDocument)
    }
}
