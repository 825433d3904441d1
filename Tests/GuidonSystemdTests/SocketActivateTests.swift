import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Socket adoption without a service manager: systemd-socket-activate(1) listens, and execs guidond in
/// its own place on the first connection, passing the listening socket as fd 3 (LISTEN_FDS=1).
@Suite(
    "guidond under systemd-socket-activate",
    .enabled(if: access("/usr/bin/systemd-socket-activate", X_OK) == 0, "systemd-socket-activate is not installed")
)
struct SocketActivateTests {
    @Test("guidond adopts the inherited socket, answers, and exits 0 on SIGTERM")
    func adoptsInheritedSocket() async throws {
        let scratch = try TestEnvironment.scratchDirectory("socket-activate")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let config = scratch.appendingPathComponent("flags.json")
        try Data(FlagFiles.greeting("hello").utf8).write(to: config)
        let socket = scratch.appendingPathComponent("guidon.sock").path
        let log = scratch.appendingPathComponent("activate.log")

        // systemd-socket-activate execs guidond in its own place, so this PID becomes guidond's.
        let activator = try ChildProcess(
            "/usr/bin/systemd-socket-activate",
            ["--listen", socket, "--", TestEnvironment.guidond, "--config", config.path],
            stdout: log.path, stderr: log.path)
        let pid = activator.pid
        var ended: ChildProcess.Termination?
        defer {
            if ended == nil {
                kill(pid, SIGKILL)
                _ = try? activator.wait()
            }
        }

        try await eventually("the listening socket") { FileManager.default.fileExists(atPath: socket) ? true : nil }
        // Nothing but the activator runs until a client connects.
        #expect(Self.command(of: pid) == "systemd-socket-")

        let reply = try LineClient.request(FlagFiles.evalGreeting, path: socket)
        #expect(reply["value"] as? String == "hello")
        #expect(Self.command(of: pid) == "guidond", "guidond should have replaced the activator in place")
        let ping = try LineClient.request(FlagFiles.ping, path: socket)
        #expect(ping["ok"] as? Bool == true)

        kill(pid, SIGTERM)
        ended = try await eventually("guidond to exit after SIGTERM") { try activator.wait(block: false) }
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        #expect(ended == .exited(0), "output: \(output)")
    }

    @Test("guidond serves /metrics and OFREP on a TCP socket passed as \"http\", next to the query socket")
    func adoptsAnHTTPSocket() async throws {
        let scratch = try TestEnvironment.scratchDirectory("socket-activate-http")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let config = scratch.appendingPathComponent("flags.json")
        try Data(FlagFiles.greeting("hello").utf8).write(to: config)
        let socket = scratch.appendingPathComponent("guidon.sock").path
        let port = try freeLoopbackPort()
        let log = scratch.appendingPathComponent("activate.log")
        let activator = try ChildProcess(
            "/usr/bin/systemd-socket-activate",
            ["--listen", socket, "--listen", "127.0.0.1:\(port)", "--fdname", "query:http", "--",
             TestEnvironment.guidond, "--config", config.path],
            stdout: log.path, stderr: log.path)
        let pid = activator.pid
        var ended: ChildProcess.Termination?
        defer {
            if ended == nil {
                kill(pid, SIGKILL)
                _ = try? activator.wait()
            }
        }
        try await eventually("the listening socket") { FileManager.default.fileExists(atPath: socket) ? true : nil }

        // The HTTP connection is the first: it starts guidond, which finds both sockets by name.
        let ofrep = try httpRequest(port: port, "POST", "/ofrep/v1/evaluate/flags/greeting", body: "{}")
        #expect(ofrep.status == 200, "\(ofrep)")
        #expect(try jsonObject(ofrep.body)["value"] as? String == "hello")
        #expect(try httpRequest(port: port, "GET", "/metrics").body.contains("guidon_ofrep_requests_total"))
        #expect(try LineClient.request(FlagFiles.evalGreeting, path: socket)["value"] as? String == "hello")

        kill(pid, SIGTERM)
        ended = try await eventually("guidond to exit after SIGTERM") { try activator.wait(block: false) }
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        #expect(ended == .exited(0), "output: \(output)")
        #expect(output.contains(#"serving /metrics, /healthz and OFREP on the socket systemd passed as "http""#), "\(output)")
    }

    /// `comm` of a process: the first 15 bytes of its executable's name.
    static func command(of pid: Int32) -> String? {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
