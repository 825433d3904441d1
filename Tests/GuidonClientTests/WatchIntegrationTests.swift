import Foundation
import GuidonClient
import Testing

/// The `watch` stream against the real daemon: edits of the flag file, and restarts.
@Suite(.serialized) struct WatchIntegrationTests {
    /// The example file with `edit` applied to its `flags` object.
    func flags(_ edit: (inout JSONObject) -> Void) throws -> String {
        guard case .object(var document) = try JSONParser().parse(exampleFlags), case .object(var flags)? = document["flags"] else {
            throw TestFailure("protocol/examples/flags.json is not a flag file")
        }
        edit(&flags)
        document["flags"] = .object(flags)
        return JSONValue.object(document).description
    }

    func configuration(_ socket: String) -> GuidonClientConfiguration {
        GuidonClientConfiguration(
            socket: socket, timeout: .seconds(30), reconnectBackoff: .init(initial: .milliseconds(5), maximum: .milliseconds(100)))
    }

    /// The next element, or a failure after `timeout`.
    func next(_ changes: inout GuidonWatch.Iterator, within timeout: Duration = .seconds(20)) async throws -> GuidonConfigurationChange {
        let iterator = changes
        let result = try await withThrowingTaskGroup(of: (GuidonConfigurationChange?, GuidonWatch.Iterator)?.self) { group in
            group.addTask {
                var iterator = iterator
                let change = await iterator.next()
                return (change, iterator)
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
        guard let (change, advanced) = result else { throw TestFailure("no watch element within \(timeout)") }
        guard let change else { throw TestFailure("the watch stream ended") }
        changes = advanced
        return change
    }

    @Test func editsArriveAsChangesAndARestartResynchronises() async throws {
        let daemon = try TestDaemon()
        try daemon.start()
        defer { try? daemon.stop() }
        try await GuidonClient.withClient(configuration: configuration(daemon.socket)) { guidon in
            var changes = guidon.watch().makeAsyncIterator()
            let subscribed = try await next(&changes)
            #expect(subscribed.kind == .subscribed)
            #expect(subscribed.configVersion == (try await guidon.ping().configVersion))
            #expect(subscribed.flags.isEmpty)

            // An edit: one flag added, one changed, one removed.
            let edited = try flags { flags in
                flags["new-flag"] = ["state": "ENABLED", "variants": ["on": true, "off": false], "defaultVariant": "on"]
                if case .object(var theme)? = flags["theme"] {
                    theme["defaultVariant"] = "fresh"
                    flags["theme"] = .object(theme)
                }
                flags["internal-tools"] = nil
            }
            try daemon.writeFlags(edited)
            let changed = try await next(&changes)
            #expect(changed == GuidonConfigurationChange(
                kind: .changed, configVersion: changed.configVersion, added: ["new-flag"], changed: ["theme"], removed: ["internal-tools"]))
            #expect(changed.configVersion == (try await guidon.ping().configVersion))
            #expect(changed.configVersion != subscribed.configVersion)

            // The daemon restarts, with the same file: nothing was missed, the stream says so.
            try daemon.stop()
            try daemon.start()
            let same = try await next(&changes)
            #expect(same == GuidonConfigurationChange(kind: .resynchronized, configVersion: changed.configVersion))

            // It stops; the file changes while it is down; it starts: the stream resynchronises
            // with what the list tells (added and removed exactly, every kept flag as changed).
            try daemon.stop()
            try daemon.writeFlags(try flags { flags in
                flags["new-flag"] = nil
                flags["later-flag"] = ["state": "DISABLED", "variants": ["x": 1], "defaultVariant": "x"]
                flags["internal-tools"] = nil
            })
            try daemon.start()
            let resynchronized = try await next(&changes)
            #expect(resynchronized.kind == .resynchronized)
            #expect(resynchronized.configVersion == (try await guidon.ping().configVersion))
            #expect(resynchronized.added == ["later-flag"])
            #expect(resynchronized.removed == ["new-flag"])
            #expect(resynchronized.changed == ["beta-dashboard", "black-friday-banner", "bulk-export", "checkout-button-copy",
                                                 "max-cart-items", "new-checkout", "recommendations", "search-v2", "theme"])

            // And it keeps reporting edits on the new connection.
            try daemon.writeFlags(exampleFlags)
            let restored = try await next(&changes)
            #expect(restored.kind == .changed)
            #expect(restored.added == ["internal-tools"])
            #expect(restored.removed == ["later-flag"])
        }
    }

    @Test func aFailedReloadSendsNothingAndTheNextGoodOneDoes() async throws {
        try await withDaemon { daemon in
            try await GuidonClient.withClient(configuration: configuration(daemon.socket)) { guidon in
                var changes = guidon.watch().makeAsyncIterator()
                #expect(try await next(&changes).kind == .subscribed)
                try daemon.writeFlags("{ not a flag file")
                try await daemon.waitFor("the failed reload") { try await guidon.status().lastReload?.ok == false }
                try daemon.writeFlags(try flags { $0["recommendations"] = nil })
                let change = try await next(&changes)
                #expect(change.kind == .changed)
                #expect(change.removed == ["recommendations"])
            }
        }
    }
}
