import Foundation
import GuidonJSON
import Testing

@testable import GuidonEngine

/// The conformance configs under both modes: lenient loads them all (as flagd does);
/// strict rejects exactly the files holding targeting that cannot work, naming each flag.
@Suite struct StrictModeTests {
    /// Config → the flags strict mode must reject it for.
    static let rejected: [String: Set<String>] = [
        "errors.json": ["err-unknown-operator", "err-disabled-broken"],
        "refs.json": ["ref-unknown-evaluator"],
        "semver.json": ["sv-bad-operator", "sv-wrong-arity"],
        "strings.json": ["str-wrong-arity-one", "str-wrong-arity-three"],
        "fractional.json": ["frac-all-zero", "frac-over-max-weight"],
    ]

    static let configs = [
        "basics.json", "errors.json", "fractional.json", "jsonlogic.json", "metadata.json", "recipes.json",
        "refs.json", "semver.json", "strings.json", "timestamp.json",
    ]

    static func flagKey(of diagnostic: Diagnostic) -> String? {
        // "flags.<key>.…" or "flags[\"<key>\"]…"
        guard diagnostic.path.hasPrefix("flags.") else { return nil }
        return String(diagnostic.path.dropFirst(6).prefix { $0 != "." && $0 != "[" })
    }

    @Test(arguments: configs)
    func strictRejectsExactlyTheBrokenFlags(config: String) throws {
        let expected = Self.rejected[config] ?? []
        do {
            let snapshot = try ConformanceTests.loadConfig("configs/" + config, mode: .strict)
            #expect(expected.isEmpty, "strict mode accepted \(config), expected it to reject \(expected.sorted())")
            #expect(snapshot.count > 0)
        } catch let report as ValidationReport {
            let named = Set(report.errors.compactMap(Self.flagKey))
            #expect(named == expected, "\(config):\n\(report)")
            for error in report.errors {
                #expect(error.line != nil && error.column != nil, "no position for \(error)")
            }
        }
    }

    @Test(arguments: configs)
    func lenientLoadsEveryConfigAndWarnsAboutTheBrokenFlags(config: String) throws {
        let snapshot = try ConformanceTests.loadConfig("configs/" + config, mode: .lenient)
        let warned = Set(snapshot.warnings.compactMap(Self.flagKey))
        let expected = Self.rejected[config] ?? []
        #expect(expected.isSubset(of: warned), "\(config): warnings \(snapshot.warnings)")
        #expect(snapshot.warnings.allSatisfy { $0.severity == .warning })
    }
}
