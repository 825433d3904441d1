import Foundation
import GuidonClient
import Testing

/// `consume` and `usage` against a real guidond counting in its embedded store.
@Suite(.serialized) struct UsageIntegrationTests {
    static let entitlements = """
        {"timezone": "UTC",
         "features": {"video": {"default": false, "limits": [{"per": "day", "max": 3}]}, "chat": {"default": true}},
         "plans": {"pro": {"displayName": "Pro", "order": 1, "grants": {"video": {}}}},
         "tenants": {"t1": {"plan": "pro", "status": "active"}, "t2": {"plan": "pro", "status": "active"}}}
        """

    @Test func consumeAndUsage() async throws {
        let daemon = try TestDaemon()
        try Self.entitlements.write(toFile: daemon.directory + "/ent.json", atomically: true, encoding: .utf8)
        daemon.extraArguments = ["--entitlements", daemon.directory + "/ent.json", "--state-dir", daemon.directory + "/state"]
        try daemon.start()
        defer { try? daemon.stop() }
        try await GuidonClient.withClient(configuration: GuidonClientConfiguration(socket: daemon.socket, timeout: .seconds(30))) { guidon in
            let first = try await guidon.consume("video", context: ["tenantId": "t1"], amount: 2, idempotencyKey: "k")
            #expect(first.allowed && first.used == 2 && first.limit == 3 && first.remaining == 1 && first.window == "day")
            let again = try await guidon.consume("video", context: ["tenantId": "t1"], amount: 2, idempotencyKey: "k")
            #expect(again.replayed && again.used == 2)
            let over = try await guidon.consume("video", context: ["tenantId": "t1"], amount: 2)
            #expect(!over.allowed && over.reason == "LIMIT_EXCEEDED" && over.used == 2)
            #expect(try await guidon.usage("video", context: ["tenantId": "t1"]).used == 2)
            let all = try await guidon.usage(context: ["tenantId": "t2"])
            #expect(all.map(\.feature) == ["video"] && all[0].used == 0)
            #expect(try await guidon.consume("chat", context: ["tenantId": "t1"]).reply["unlimited"] == true)
            await #expect(throws: GuidonClientError.self) { try await guidon.consume("nope", context: ["tenantId": "t1"]) }
            // Concurrent consumes over the pool: exactly the maximum allowed.
            let allowed = await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<12 { group.addTask { (try? await guidon.consume("video", context: ["tenantId": "t2"]))?.allowed ?? false } }
                return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(allowed == 3)
        }
    }
}
