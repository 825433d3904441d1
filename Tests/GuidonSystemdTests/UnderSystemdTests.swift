import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// guidond under a real systemd, booted as PID 1 of private namespaces, with the project's own units.
@Suite(
    "guidond under a namespaced systemd",
    .serialized,
    .enabled(if: TestEnvironment.canBootSystemd, "needs root and unshare(1) to boot systemd in private namespaces")
)
struct UnderSystemdTests {
    @Test("socket activation: nothing runs until the first client connects, whose query is answered")
    func socketActivation() async throws {
        try await NamespacedSystemd.with("activation", .staged(config: FlagFiles.greeting("hello"))) { systemd in
            #expect(try systemd.property("ActiveState", of: "guidon.socket") == "active")
            #expect(try systemd.property("ActiveState") == "inactive")
            #expect(try systemd.property("MainPID") == "0")

            // The socket admits root and the guidon group only; its directory is traversable by all
            // (the admin socket next to it admits another group).
            var socketInfo = stat()
            var directoryInfo = stat()
            try #require(stat(systemd.socketPath, &socketInfo) == 0)
            try #require(stat(systemd.hostPath("/run/guidon"), &directoryInfo) == 0)
            #expect(socketInfo.st_mode & 0o777 == 0o660)
            #expect(directoryInfo.st_mode & 0o777 == 0o755)
            let guidonGroup = try systemd.inside("getent", ["group", "guidon"]).trimmedOutput
            #expect(guidonGroup.split(separator: ":", omittingEmptySubsequences: false).dropFirst(2).first == "\(socketInfo.st_gid)")
            #expect(socketInfo.st_gid == directoryInfo.st_gid)

            // A user outside the group is refused at connect(2), which does not start the daemon…
            let outsider = try systemd.guidonCLIAsNobody(groups: [], ["ping"])
            #expect(!outsider.succeeded, "a non-member could query: \(outsider.output)")
            #expect(outsider.error.contains("ermission denied"), "refused for another reason: \(outsider.error)")
            #expect(try systemd.property("ActiveState") == "inactive")
            // …while a member's query starts it and is answered.
            let member = try systemd.guidonCLIAsNobody(groups: ["guidon"], ["ping"])
            #expect(member.succeeded, "a member was refused: \(member.error)")

            let reply = try LineClient.request(FlagFiles.evalGreeting, path: systemd.socketPath)
            #expect(reply["value"] as? String == "hello")
            #expect(try systemd.property("ActiveState") == "active")
            #expect(try systemd.property("MainPID") != "0")
            let ping = try LineClient.request(FlagFiles.ping, path: systemd.socketPath)
            #expect(ping["ok"] as? Bool == true)
            #expect(ping["flags"] as? Int == 1)
        }
    }

    @Test("the status names the loaded config; reload serves a changed file and keeps the old flags on a broken one")
    func statusAndReload() async throws {
        // --no-watch: only `systemctl reload` (SIGHUP) may reload here, not inotify.
        try await NamespacedSystemd.with("reload", .staged(config: FlagFiles.greeting("hello"), daemonArguments: ["--no-watch"])) { systemd in
            let first = try LineClient.request(FlagFiles.ping, path: systemd.socketPath)
            let firstVersion = try #require(first["configVersion"] as? String)
            let status = try systemd.property("StatusText")
            #expect(status.contains(firstVersion), "StatusText '\(status)' does not name config \(firstVersion)")

            try systemd.replaceConfig(with: FlagFiles.greeting("bye", withExtraFlag: true))
            try systemd.systemctl("reload", "guidon.service")
            let secondVersion = try await eventually("the changed flags to be served") { () -> String? in
                let reply = try LineClient.request(FlagFiles.evalGreeting, path: systemd.socketPath)
                guard reply["value"] as? String == "bye" else { return nil }
                return try LineClient.request(FlagFiles.ping, path: systemd.socketPath)["configVersion"] as? String
            }
            #expect(secondVersion != firstVersion)
            try await eventually("the status to name the new config") {
                try systemd.property("StatusText").contains(secondVersion) ? true : nil
            }

            try systemd.replaceConfig(with: FlagFiles.truncated)
            try systemd.systemctl("reload", "guidon.service")
            let failedStatus = try await eventually("the status to report the failed reload") { () -> String? in
                let text = try systemd.property("StatusText")
                return Self.mentionsFailure(text) ? text : nil
            }
            #expect(failedStatus.contains(secondVersion), "after a failed reload the status should still name \(secondVersion): \(failedStatus)")
            let reply = try LineClient.request(FlagFiles.evalGreeting, path: systemd.socketPath)
            #expect(reply["value"] as? String == "bye")
            let ping = try LineClient.request(FlagFiles.ping, path: systemd.socketPath)
            #expect(ping["configVersion"] as? String == secondVersion)
            #expect(try systemd.property("ActiveState") == "active")

            // The journal tells both reloads apart.
            let reloads = try systemd.journal()
                .filter { $0["GUIDON_TRIGGER"] as? String == "sighup" }
                .compactMap { $0["GUIDON_RELOAD_RESULT"] as? String }
            #expect(reloads == ["ok", "failed"])
            let failures = try systemd.journal().filter { $0["GUIDON_RELOAD_RESULT"] as? String == "failed" }
            #expect(failures.allSatisfy { $0["GUIDON_CONFIG_VERSION"] as? String == secondVersion })
            #expect(failures.allSatisfy { $0["PRIORITY"] as? String == "3" }, "a failed reload is logged as an error")
        }
    }

    @Test("inotify hot reload works inside the sandbox (ProtectSystem=strict)")
    func hotReload() async throws {
        try await NamespacedSystemd.with("inotify", .staged(config: FlagFiles.greeting("hello"))) { systemd in
            let reply = try LineClient.request(FlagFiles.evalGreeting, path: systemd.socketPath)
            #expect(reply["value"] as? String == "hello")
            try systemd.replaceConfig(with: FlagFiles.greeting("bye"))
            try await eventually("the edited file to be served without systemctl reload") {
                try LineClient.request(FlagFiles.evalGreeting, path: systemd.socketPath)["value"] as? String == "bye" ? true : nil
            }
        }
    }

    @Test("the watchdog restarts a stopped daemon, and a client that connects meanwhile waits for the new one")
    func watchdog() async throws {
        // A longer RestartSec= than the other tests: a window in which no daemon runs at all.
        let config = FlagFiles.greeting("hello")
        try await NamespacedSystemd.with("watchdog", .staged(config: config, serviceSettings: ["RestartSec=4s"])) { systemd in
            _ = try LineClient.request(FlagFiles.ping, path: systemd.socketPath)
            let frozenPID = try systemd.property("MainPID")
            let restartsBefore = try #require(Int(try systemd.property("NRestarts")))
            try systemd.kill("STOP", pid: frozenPID)

            // systemd notices the missing pings, aborts the frozen daemon and schedules a restart.
            // (A client that connected to the frozen daemon itself could still be accepted, and
            // dropped, by it in the moment it is resumed to die.)
            try await eventually("the watchdog to abort the frozen daemon") {
                try systemd.property("SubState") == "auto-restart" ? true : nil
            }
            // No daemon runs now; the connection waits in the socket's backlog for the next one.
            let queued = try LineClient(path: systemd.socketPath)
            try queued.send(FlagFiles.evalGreeting)
            let reply = try queued.receive(timeout: .seconds(60))
            #expect(reply.contains(#""hello""#), "queued client got: \(reply)")

            let newPID = try systemd.property("MainPID")
            #expect(newPID != frozenPID && newPID != "0")
            #expect(try #require(Int(try systemd.property("NRestarts"))) == restartsBefore + 1)
            // systemd, not a crash, ended the frozen daemon: PID 1's own journal entries say so.
            let messages = try systemd.journal().compactMap { $0["MESSAGE"] as? String }
            #expect(messages.contains { $0.contains("Watchdog timeout") }, "PID 1 logged no watchdog timeout: \(messages)")
            #expect(messages.contains { $0.contains("Failed with result 'watchdog'") })
        }
    }

    @Test("systemctl stop ends the daemon with exit status 0, and the next client starts it again")
    func stopAndRestart() async throws {
        try await NamespacedSystemd.with("stop", .staged(config: FlagFiles.greeting("hello"))) { systemd in
            _ = try LineClient.request(FlagFiles.ping, path: systemd.socketPath)
            let firstPID = try systemd.property("MainPID")
            try systemd.systemctl("stop", "guidon.service")
            #expect(try systemd.property("ActiveState") == "inactive")
            #expect(try systemd.property("Result") == "success")
            #expect(try systemd.property("ExecMainCode") == "1", "CLD_EXITED, not killed by a signal")
            #expect(try systemd.property("ExecMainStatus") == "0")
            #expect(try systemd.property("ActiveState", of: "guidon.socket") == "active")

            let reply = try LineClient.request(FlagFiles.evalGreeting, path: systemd.socketPath)
            #expect(reply["value"] as? String == "hello")
            let secondPID = try systemd.property("MainPID")
            #expect(secondPID != "0")
            #expect(secondPID != firstPID)
        }
    }

    @Test("journald receives guidond's structured fields")
    func journalFields() async throws {
        try await NamespacedSystemd.with("journal", .staged(config: FlagFiles.greeting("hello"))) { systemd in
            let ping = try LineClient.request(FlagFiles.ping, path: systemd.socketPath)
            let version = try #require(ping["configVersion"] as? String)
            let loaded = try await eventually("an entry naming the loaded config") {
                try systemd.journal().first { $0["GUIDON_CONFIG_VERSION"] as? String == version }
            }
            #expect(loaded["GUIDON_CONFIG_PATH"] as? String == NamespacedSystemd.configPath)
            #expect(loaded["SYSLOG_IDENTIFIER"] as? String == "guidond")
            #expect(loaded["_SYSTEMD_UNIT"] as? String == "guidon.service")

            try systemd.replaceConfig(with: FlagFiles.greeting("bye", withExtraFlag: true))
            try systemd.systemctl("reload", "guidon.service")
            let reloaded = try await eventually("an entry with the reload result") {
                try systemd.journal().first { $0["GUIDON_RELOAD_RESULT"] != nil && $0["GUIDON_CONFIG_VERSION"] as? String != version }
            }
            #expect(reloaded["GUIDON_CONFIG_PATH"] as? String == NamespacedSystemd.configPath)
            let flags = try systemd.journal().compactMap { $0["GUIDON_FLAG"] as? String }
            #expect(flags.contains("dark-mode") || flags.contains("greeting"), "no GUIDON_FLAG entry for the changed flags: \(flags)")
        }
    }

    @Test("systemd/install.sh installs, enables and uninstalls on a running systemd")
    func liveInstall() async throws {
        try await NamespacedSystemd.with("install", .none) { systemd in
            // Exactly the documented command, but with the binaries this test run built.
            let install = try systemd.inside(TestEnvironment.installScript, ["--binaries", TestEnvironment.binaries.path])
            #expect(install.output.contains("guidon.socket is listening"))
            #expect(try systemd.inside("systemctl", ["is-enabled", "guidon.socket"]).trimmedOutput == "enabled")
            #expect(try systemd.property("ActiveState", of: "guidon.socket") == "active")
            #expect(try systemd.property("ActiveState") == "inactive")

            // The example config, readable by the daemon's group only.
            var config = stat()
            try #require(stat(systemd.hostPath(NamespacedSystemd.configPath), &config) == 0)
            #expect(config.st_mode & 0o777 == 0o640)
            let group = try systemd.inside("getent", ["group", "guidon"]).trimmedOutput
            #expect(group.split(separator: ":", omittingEmptySubsequences: false).dropFirst(2).first == "\(config.st_gid)")

            let member = try systemd.guidonCLIAsNobody(groups: ["guidon"], ["ping"], cli: "/usr/local/bin/guidon")
            #expect(member.succeeded, "a member was refused: \(member.output) \(member.error)")
            #expect(try systemd.property("ActiveState") == "active")

            try systemd.inside(TestEnvironment.installScript, ["--uninstall"])
            #expect(try systemd.property("LoadState", of: "guidon.socket") == "not-found")
            #expect(try systemd.property("ActiveState") == "inactive")
            #expect(access(systemd.hostPath("/usr/local/bin/guidond"), F_OK) != 0)
            #expect(access(systemd.hostPath("/run/guidon/guidon.sock"), F_OK) != 0)
            #expect(access(systemd.hostPath(NamespacedSystemd.configPath), F_OK) == 0, "the operator's config must stay")
        }
    }

    static func mentionsFailure(_ text: String) -> Bool {
        text.lowercased().contains("fail")
    }
}
