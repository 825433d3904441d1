import Foundation
import GuidonEngine
import GuidonJSON
import GuidonProtocol
@testable import GuidonServer
import Logging
import Testing

/// Connections that move between event loops (`LoopGroup`): a real server on a real socket,
/// with a policy that spreads them at the first traffic.
@Suite("Connections moving between event loops")
struct LoopGroupTests {
    final class Harness {
        let directory: URL
        let store: ConfigStore
        let connections = Connections(limit: 100)
        let server: Server
        let path: String

        init(policy: LoopGroup.Policy) throws {
            directory = URL(fileURLWithPath: "/tmp/g-lg-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let flags = #"{"flags":{"f":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}}}"#
            let store = ConfigStore(ServedConfig(snapshot: try Snapshot.compile(json: Array(flags.utf8)), version: "v1", loadedAt: 0))
            self.store = store
            let service = ServiceContext(store: store, connections: connections, maxLineBytes: 1024) {
                DaemonStatus(
                    daemonVersion: "test", configPath: "/flags.json", configVersion: "v1", flagCount: 1, loadedAt: 0,
                    uptimeSeconds: 1, lenient: false, warnings: 0, connections: 0, lastReload: nil)
            }
            let logger = Logger(label: "test")
            path = directory.appendingPathComponent("s").path
            let socket = try ListeningSocket.open(path: path, logger: logger)
            server = try Server(threads: 2, socket: socket, service: service, logger: logger, policy: policy)
        }

        func client() throws -> LineClient { try LineClient(path: path, timeoutSeconds: 30) }

        func finish() {
            server.closeListener()
            server.stop()
            try? FileManager.default.removeItem(at: directory)
        }

        /// Waits (up to 20 s) until `condition` holds.
        func eventually(_ condition: () -> Bool) -> Bool {
            for _ in 0..<2000 {
                if condition() { return true }
                usleep(10_000)
            }
            return condition()
        }
    }

    /// Many connections, each asking one question at a time, keep being answered, every one of
    /// them, while the first loop hands half of them to the second; a pipelined burst sent just
    /// as a connection moves comes back whole and in order.
    @Test func everyConnectionKeepsBeingAnsweredWhileConnectionsMove() throws {
        let h = try Harness(policy: .eager)
        defer { h.finish() }
        let clients = try (0..<8).map { _ in try h.client() }
        for round in 0..<40 {
            for (index, client) in clients.enumerated() {
                try client.send(#"{"op":"eval","id":\#(round * 100 + index),"flag":"f","context":{"targetingKey":"u\#(index)"}}"# + "\n")
            }
            for (index, client) in clients.enumerated() {
                let reply = try client.readReply()
                #expect(reply["id"] == .int(Int64(round * 100 + index)))
                #expect(reply["value"] == true)
            }
        }
        #expect(h.server.group.spreadCount >= 1)
        // A pipelined burst on every connection, in order.
        for client in clients {
            var burst = ""
            for i in 0..<200 { burst += #"{"op":"ping","id":\#(i)}"# + "\n" }
            try client.send(burst)
        }
        for client in clients {
            for i in 0..<200 { #expect(try client.readReply()["id"] == .int(Int64(i))) }
        }
        for client in clients { client.disconnect() }
        #expect(h.eventually { h.connections.count == 0 })
    }

    /// A `watch` subscriber that moved to another loop still gets every event (they are sent
    /// on whichever loop it lives on by then).
    @Test func aSubscriberThatMovedStillGetsItsEvents() throws {
        let h = try Harness(policy: .eager)
        defer { h.finish() }
        let watchers = try (0..<4).map { _ in try h.client() }
        for watcher in watchers { #expect(try watcher.request(#"{"op":"watch"}"#)["watching"] == true) }
        // Traffic, so that the first loop spreads its connections.
        let busy = try h.client()
        #expect(h.eventually {
            (try? busy.request(#"{"op":"ping"}"#)) != nil && h.server.group.spreadCount >= 1
        })
        for n in 0..<20 {
            h.connections.broadcast(Array(#"{"event":"test","n":\#(n)}"#.utf8) + [0x0a])
        }
        for watcher in watchers {
            for n in 0..<20 { #expect(try watcher.readReply()["n"] == .int(Int64(n))) }
        }
    }

    /// Stopping drains every connection, wherever it lives: what was asked is answered, then
    /// the connection is closed.
    @Test func drainClosesConnectionsOnEveryLoop() throws {
        let h = try Harness(policy: .eager)
        defer { h.finish() }
        let clients = try (0..<6).map { _ in try h.client() }
        for _ in 0..<20 {
            for client in clients { #expect(try client.request(#"{"op":"ping"}"#)["ok"] == true) }
        }
        #expect(h.server.group.spreadCount >= 1)
        for (index, client) in clients.enumerated() { try client.send(#"{"op":"ping","id":\#(index)}"# + "\n") }
        #expect(h.server.drain(h.connections, timeout: .seconds(20)))
        for (index, client) in clients.enumerated() {
            #expect(try client.readReply()["id"] == .int(Int64(index)))
            #expect(try client.readLine() == nil)
        }
    }
}
