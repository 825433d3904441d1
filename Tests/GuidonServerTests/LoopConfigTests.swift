import Foundation
import GuidonEngine
import GuidonProtocol
@testable import GuidonServer
import Logging
import NIOConcurrencyHelpers
import Testing

@Suite("Each loop's reference to the served configuration")
struct LoopConfigTests {
    static func config(_ version: String) throws -> ServedConfig {
        let flags = #"{"flags":{"f":{"state":"ENABLED","variants":{"v":"\#(version)"},"defaultVariant":"v"}}}"#
        return ServedConfig(snapshot: try Snapshot.compile(json: Array(flags.utf8)), version: version, loadedAt: 0)
    }

    /// A published configuration is answered from at the next read, even before the loop has
    /// run the task that takes it; once taken, the old one is gone.
    @Test func aLoopAnswersFromEachPublishedConfigurationAndLetsTheOldOneGo() throws {
        let store = ConfigStore(try Self.config("v1"))
        let loopConfig = LoopConfig(store: store)
        weak let first = store.current
        #expect(loopConfig.withCurrent { $0.version } == "v1")

        store.publish(try Self.config("v2"))
        #expect(first != nil, "the loop still holds v1 until it reads or refreshes")
        #expect(loopConfig.withCurrent { $0.version } == "v2")
        #expect(first == nil)

        store.publish(try Self.config("v3"))
        weak let second = store.current
        store.publish(try Self.config("v4"))
        #expect(second == nil, "v3 was never taken by the loop")
        loopConfig.refresh()
        #expect(loopConfig.withCurrent { $0.version } == "v4")
        #expect(store.publications == 3)
    }

    @Test func observersHearEveryPublication() throws {
        let store = ConfigStore(try Self.config("v1"))
        let heard = NIOLockedValueBox<[String]>([])
        store.onPublish { heard.withLockedValue { $0.append(store.current.version) } }
        store.publish(try Self.config("v2"))
        store.publish(try Self.config("v3"))
        #expect(heard.withLockedValue { $0 } == ["v2", "v3"])
    }

    /// A server's loops drop the old configuration when a new one is published, with no
    /// traffic to make them read: an idle daemon keeps one snapshot, not one per loop.
    @Test func idleLoopsLetTheOldConfigurationGo() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("guidon-loopconfig-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let logger = Logger(label: "test")
        let store = ConfigStore(try Self.config("v1"))
        let connections = Connections(limit: 10)
        let service = ServiceContext(store: store, connections: connections, maxLineBytes: 1024) {
            DaemonStatus(
                daemonVersion: "test", configPath: "/flags.json", configVersion: "v1", flagCount: 1, loadedAt: 0,
                uptimeSeconds: 1, lenient: false, warnings: 0, connections: 0, lastReload: nil)
        }
        let socket = try ListeningSocket.open(path: directory.appendingPathComponent("g.sock").path, logger: logger)
        let server = try Server(threads: 2, socket: socket, service: service, logger: logger)
        defer {
            server.closeListener()
            server.stop()
        }
        weak let first = store.current
        store.publish(try Self.config("v2"))
        var released = false
        for _ in 0..<1500 where !released {
            released = first == nil
            if !released { usleep(10_000) }
        }
        #expect(released)
    }
}
