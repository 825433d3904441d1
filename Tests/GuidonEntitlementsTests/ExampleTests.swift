import GuidonEngine
import GuidonJSON
import Testing

@testable import GuidonEntitlements

@Suite struct ExampleTests {
    @Test func exampleCompilesWithoutWarnings() throws {
        let e = try example()
        #expect(e.warnings.isEmpty, "\(e.warnings)")
        #expect(e.features.count == 14)
        #expect(e.plans.map(\.name) == ["starter", "growth", "enterprise"])
        #expect(e.tenantCount == 7)
        #expect(e.timezone == "Europe/Berlin")
        var out: [UInt8] = []
        e.writeEntitlements(tenant: "5", now: december15, into: &out)
        print(String(decoding: out, as: UTF8.self))
    }
}
