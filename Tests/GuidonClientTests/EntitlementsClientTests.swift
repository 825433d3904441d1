import Foundation
import GuidonClient
import Testing

/// `entitlements` and `tenants`, and features through `evaluate`, against the real guidond
/// serving protocol/examples/entitlements.json.
@Suite struct EntitlementsClientTests {
    static let exampleEntitlements: String = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return (try? String(contentsOf: root.appendingPathComponent("protocol/examples/entitlements.json"), encoding: .utf8)) ?? ""
    }()

    func withEntitlements(_ body: (TestDaemon) async throws -> Void) async throws {
        let daemon = try TestDaemon()
        let path = daemon.directory + "/entitlements.json"
        try Self.exampleEntitlements.write(toFile: path, atomically: true, encoding: .utf8)
        daemon.extraArguments = ["--entitlements", path]
        try daemon.start()
        do {
            try await body(daemon)
        } catch {
            try? daemon.stop()
            throw error
        }
        try daemon.stop()
    }

    func configuration(_ socket: String) -> GuidonClientConfiguration {
        GuidonClientConfiguration(socket: socket, timeout: .seconds(30), poolSize: 2)
    }

    @Test func entitlementsTenantsAndFeatures() async throws {
        try await withEntitlements { daemon in
            try await GuidonClient.withClient(configuration: configuration(daemon.socket)) { guidon in
                #expect(await guidon.isEnabled("voice_ai", context: ["tenantId": "acme"]))
                #expect(await !guidon.isEnabled("voice_ai", context: ["tenantId": "nobody"], default: true))
                let denied = await guidon.evaluate("voice_ai", context: ["tenantId": "nobody"], default: false)
                #expect(denied.metadata["upgradeTo"] == "growth")

                let initech = try await guidon.entitlements(tenant: "initech")
                #expect(initech.found)
                #expect(initech.plan == "starter")
                #expect(initech.status == "trialing")
                #expect(initech[feature: "seats"]?.value == ["max": 8])
                #expect(initech[feature: "seats"]?.source == "override")
                #expect(initech[feature: "voice_ai"]?.upgradeTo == "growth")
                #expect(!initech.isEntitled("voice_ai"))
                #expect(initech.features.first?.key == "telegram_bot")
                let unknown = try await guidon.entitlements(tenant: "nobody")
                #expect(!unknown.found)
                #expect(unknown[feature: "telegram_bot"]?.value == true)

                let first = try await guidon.tenants(limit: 2)
                #expect(first.tenants.map(\.id) == ["5", "acme"])
                #expect(first.total == 7)
                let second = try await guidon.tenants(after: first.next, limit: 2)
                #expect(second.tenants.map(\.id) == ["globex", "initech"])
                let growth = try await guidon.tenants(plan: "growth", status: "active")
                #expect(growth.tenants.map(\.id) == ["acme"])
                #expect(growth.next == nil)

                let refusals: [(after: String?, limit: Int?, status: String?, message: String)] = [
                    (nil, 0, nil, "between 1 and 1000"), (nil, nil, "paused", "is not a status"), ("gone", nil, nil, "start again"),
                ]
                for refusal in refusals {
                    do throws(GuidonClientError) {
                        _ = try await guidon.tenants(after: refusal.after, limit: refusal.limit, status: refusal.status)
                        Issue.record("no error for \(refusal.message)")
                    } catch {
                        #expect(error.code == .daemonError)
                        #expect(error.daemonCode == "INVALID_REQUEST")
                        #expect(error.message.contains(refusal.message))
                    }
                }
            }
        }
    }

    @Test func withoutAnEntitlementsFile() async throws {
        try await withDaemon { daemon in
            await GuidonClient.withClient(configuration: configuration(daemon.socket)) { guidon in
                do throws(GuidonClientError) {
                    _ = try await guidon.entitlements(tenant: "5")
                    Issue.record("no error")
                } catch {
                    #expect(error.daemonCode == "NOT_FOUND")
                }
            }
        }
    }
}
