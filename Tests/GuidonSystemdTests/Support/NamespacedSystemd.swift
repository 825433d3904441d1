import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// systemd booted as PID 1 of private namespaces (Tests/SystemdHarness/namespace-systemd.sh), running
/// the project's real units as `systemd/install.sh` installs them, plus test drop-ins.
///
/// Use `NamespacedSystemd.with(…) { systemd in … }`: it always kills PID 1 afterwards, dumps the journal
/// when the body throws, and checks that the machine's /tmp survived.
final class NamespacedSystemd {
    /// The staging root: install.sh's DESTDIR, and the harness's state directory.
    let root: URL
    /// Host PID of the namespace's PID 1.
    private(set) var pid: Int32 = 0

    static let target = "guidon-test.target"
    static let configPath = "/etc/guidon/flags.json"

    private init(root: URL) { self.root = root }

    /// How the units get into the namespace.
    enum Installation {
        /// `install.sh --destdir` on the host, users from `systemd-sysusers --root`, `config` as
        /// /etc/guidon/flags.json; the units are booted with the test target, the daemon started with
        /// `daemonArguments` appended and `serviceSettings` added to the test drop-in's [Service].
        /// `httpSockets` (unit → a loopback port) are started too, listening on that port instead of
        /// their own (a test drop-in; the namespace shares the machine's network, where the
        /// shipped ports may be taken).
        case staged(config: String, daemonArguments: [String] = [], serviceSettings: [String] = [], httpSockets: [String: Int] = [:])
        /// Nothing installed: the test runs `install.sh` itself inside the booted namespace (whose
        /// /etc and /usr/local are overlays), exactly as an operator would.
        case none
    }

    /// Boots systemd with `installation` and runs `body`.
    static func with<T>(
        _ name: String,
        _ installation: Installation,
        _ body: (NamespacedSystemd) async throws -> T
    ) async throws -> T {
        let sentinel = "/tmp/guidon-systemd-sentinel-\(getpid())-\(UUID().uuidString.prefix(8))"
        guard FileManager.default.createFile(atPath: sentinel, contents: Data("keep me\n".utf8)) else {
            throw HarnessError("cannot create the /tmp sentinel \(sentinel)")
        }
        defer { unlink(sentinel) }

        let systemd = NamespacedSystemd(root: try TestEnvironment.scratchDirectory(name))
        let result: T
        do {
            guard access(TestEnvironment.guidond, X_OK) == 0 else {
                throw HarnessError("no guidond in \(TestEnvironment.binaries.path): build it first (swift build)")
            }
            switch installation {
            case .staged(let config, let daemonArguments, let serviceSettings, let httpSockets):
                try systemd.stage(
                    config: config, daemonArguments: daemonArguments, serviceSettings: serviceSettings, httpSockets: httpSockets)
            case .none:
                try systemd.prepareForLiveInstall()
            }
            try systemd.boot()
            result = try await body(systemd)
        } catch {
            systemd.dumpDiagnostics()
            try? systemd.shutDown()
            throw error
        }
        try systemd.shutDown()
        guard FileManager.default.fileExists(atPath: sentinel) else {
            throw HarnessError("DANGER: the machine's /tmp lost \(sentinel) while systemd ran in a namespace")
        }
        try? FileManager.default.removeItem(at: systemd.root)
        return result
    }

    // MARK: Setting up

    private static let unitsDirectory = "units"

    /// Every unit install.sh installs (guidon.service names them all in `Sockets=`).
    static let units = ["guidon.socket", "guidon-admin.socket", "guidon-metrics.socket", "guidon-ofrep.socket", "guidon.service"]

    private func stage(config: String, daemonArguments: [String], serviceSettings: [String], httpSockets: [String: Int]) throws {
        // The machine's users, plus what sysusers.d/guidon.conf adds (into the staging root only).
        try FileManager.default.createDirectory(at: root.appendingPathComponent("etc"), withIntermediateDirectories: true)
        for file in ["passwd", "group"] {
            try FileManager.default.copyItem(atPath: "/etc/\(file)", toPath: root.appendingPathComponent("etc/\(file)").path)
        }
        try write(config, to: "etc/guidon/flags.json")
        try run(TestEnvironment.installScript, [
            "--destdir", root.path, "--binaries", TestEnvironment.binaries.path, "--no-notify-reload",
        ])
        try run("/usr/bin/systemd-sysusers", ["--root", root.path])
        let gid = try groupID("guidon")
        try chown(root.appendingPathComponent("etc/guidon/flags.json").path, gid: gid, mode: 0o640)
        // As install.sh leaves it: writable for the daemon's group, for the admin writer.
        try chown(root.appendingPathComponent("etc/guidon").path, gid: gid, mode: 0o2770)

        let units = Self.unitsDirectory
        try FileManager.default.createDirectory(at: root.appendingPathComponent(units), withIntermediateDirectories: true)
        for unit in Self.units {
            try FileManager.default.copyItem(
                at: root.appendingPathComponent("usr/local/lib/systemd/system/\(unit)"),
                to: root.appendingPathComponent("\(units)/\(unit)"))
        }
        for (unit, port) in httpSockets.sorted(by: { $0.key < $1.key }) {
            try write("""
                # As guidon.socket.d/test.conf; and a free port of the machine's loopback.
                [Unit]
                DefaultDependencies=no
                After=guidon-tmpfiles.service

                [Socket]
                ListenStream=
                ListenStream=127.0.0.1:\(port)
                """, to: "\(units)/\(unit).d/test.conf")
        }
        try writeTarget(wants: ["guidon-tmpfiles.service", "guidon.socket", "guidon-admin.socket"] + httpSockets.keys.sorted())
        // The real tmpfiles.d/guidon.conf, applied to the namespace's /run like systemd-tmpfiles-setup
        // would at boot (that unit is not booted here: it would also process every other tmpfiles.d).
        try write("""
            [Unit]
            DefaultDependencies=no
            Before=guidon.socket
            [Service]
            Type=oneshot
            RemainAfterExit=yes
            ExecStart=/bin/systemd-tmpfiles --create \(root.path)/usr/local/lib/tmpfiles.d/guidon.conf
            """, to: "\(units)/guidon-tmpfiles.service")
        // The staged binary: install.sh --destdir put it under the staging root.
        let execStart = [root.path + "/usr/local/bin/guidond", "--config", Self.configPath,
                         "--admin-socket", "/run/guidon/admin.sock", "--audit-log", "/var/lib/guidon/audit.jsonl"] + daemonArguments
        try writeDropIns(
            socketAfter: "guidon-tmpfiles.service", execStart: execStart.joined(separator: " "), extra: serviceSettings)
    }

    private func prepareForLiveInstall() throws {
        try writeTarget(wants: [])
        try writeDropIns(socketAfter: nil, execStart: nil, extra: [])
    }

    /// The target the namespace boots: journald, and `wants`.
    private func writeTarget(wants: [String]) throws {
        try write("""
            [Unit]
            Description=Guidon under test
            DefaultDependencies=no
            Wants=\((["systemd-journald.socket", "systemd-journald.service"] + wants).joined(separator: " "))
            After=\((["systemd-journald.service"] + wants).joined(separator: " "))
            """, to: "\(Self.unitsDirectory)/\(Self.target)")
    }

    /// Test drop-ins for the real units. They relax no sandboxing.
    private func writeDropIns(socketAfter: String?, execStart: String?, extra: [String]) throws {
        try write("""
            # Boot only what is under test: default dependencies would pull in sysinit.target and
            # basic.target, and with them systemd-tmpfiles-setup and friends.
            [Unit]
            DefaultDependencies=no
            \(socketAfter.map { "After=\($0)" } ?? "")
            """, to: "\(Self.unitsDirectory)/guidon.socket.d/test.conf")
        try write("""
            # As guidon.socket.d/test.conf.
            [Unit]
            DefaultDependencies=no
            \(socketAfter.map { "After=\($0)" } ?? "")
            """, to: "\(Self.unitsDirectory)/guidon-admin.socket.d/test.conf")
        try write("""
            # Boot only what is under test (see guidon.socket.d/test.conf).
            [Unit]
            DefaultDependencies=no
            After=systemd-journald.socket

            [Service]
            \(execStart.map { "ExecStart=\nExecStart=\($0)" } ?? "")
            # Short enough for the watchdog test to see a restart quickly.
            WatchdogSec=3s
            TimeoutAbortSec=3s
            RestartSec=100ms
            # The watchdog test aborts the daemon: no core files.
            LimitCORE=0
            \(extra.joined(separator: "\n"))
            """, to: "\(Self.unitsDirectory)/guidon.service.d/test.conf")
    }

    private func boot() throws {
        let output = try run(TestEnvironment.namespaceScript, ["start", root.path, Self.target, "\(getpid())"])
        guard let pid = Int32(output.trimmedOutput) else {
            throw HarnessError("namespace-systemd.sh start printed no PID: \(output.output)")
        }
        self.pid = pid
        try run(TestEnvironment.namespaceScript, ["wait", root.path, "30"])
    }

    /// Kills PID 1 (and with it the namespace), and makes sure it is gone.
    private func shutDown() throws {
        let result = try Command.run(TestEnvironment.namespaceScript, ["stop", root.path], scratch: root)
        if pid != 0 && access("/proc/\(pid)", F_OK) == 0 {
            throw HarnessError("the namespaced systemd (PID \(pid)) survived `stop`: \(result.error)")
        }
    }

    // MARK: Talking to it

    /// The socket as seen from the host, through the namespace's root.
    var socketPath: String { "/proc/\(pid)/root/run/guidon/guidon.sock" }

    /// A path inside the namespace, reachable from the host.
    func hostPath(_ path: String) -> String { "/proc/\(pid)/root\(path)" }

    /// Runs a command inside the namespaces.
    @discardableResult
    func inside(_ command: String, _ arguments: [String]) throws -> CommandResult {
        try run(TestEnvironment.namespaceScript, ["exec", root.path, command] + arguments)
    }

    @discardableResult
    func systemctl(_ arguments: String...) throws -> CommandResult {
        try inside("systemctl", ["--no-pager"] + arguments)
    }

    /// One property of a unit (`systemctl show -p NAME --value`).
    func property(_ name: String, of unit: String = "guidon.service") throws -> String {
        try inside("systemctl", ["show", "-p", name, "--value", unit]).trimmedOutput
    }

    /// The journal of guidon.service, one decoded JSON object per entry.
    func journal(unit: String = "guidon.service") throws -> [[String: Any]] {
        try inside("journalctl", ["--no-pager", "-o", "json", "-u", unit]).output
            .split(separator: "\n")
            .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// Replaces /etc/guidon/flags.json inside the namespace the way editors and config management do:
    /// write a sibling file, then rename it over the old one.
    func replaceConfig(with text: String) throws {
        let target = hostPath(Self.configPath)
        let temporary = target + ".new"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8)) else {
            throw HarnessError("cannot write \(temporary)")
        }
        try chown(temporary, gid: try groupID("guidon"), mode: 0o640)
        guard rename(temporary, target) == 0 else {
            throw HarnessError("rename to \(target): \(String(cString: strerror(errno)))")
        }
    }

    /// Runs the installed `guidon` CLI inside the namespace as the unprivileged `nobody:nogroup`, with
    /// exactly `groups` as its supplementary groups.
    func guidonCLIAsNobody(groups: [String], _ arguments: [String], cli: String? = nil) throws -> CommandResult {
        let identity = ["--reuid=nobody", "--regid=nogroup"]
            + (groups.isEmpty ? ["--clear-groups"] : ["--groups=\(groups.joined(separator: ","))"])
        let command = [cli ?? root.path + "/usr/local/bin/guidon"] + arguments + ["--socket", "/run/guidon/guidon.sock"]
        return try Command.run(
            TestEnvironment.namespaceScript, ["exec", root.path, "setpriv"] + identity + ["--"] + command, scratch: root)
    }

    /// Sends `signal` to the namespace process whose PID (inside the namespace) is `pid`.
    func kill(_ signal: String, pid: String) throws {
        try inside("/bin/kill", ["-s", signal, pid])
    }

    // MARK: Helpers

    private func dumpDiagnostics() {
        guard pid != 0 else { return }
        var report = "---- namespaced systemd diagnostics (\(root.path)) ----\n"
        for (title, command, arguments) in [
            ("systemctl status", "systemctl", ["--no-pager", "--full", "status", "guidon.socket", "guidon.service"]),
            ("journal", "journalctl", ["--no-pager", "-o", "short-precise", "-n", "300"]),
        ] {
            let result = try? Command.run(TestEnvironment.namespaceScript, ["exec", root.path, command] + arguments, scratch: root)
            report += "== \(title)\n\(result?.output ?? "")\(result?.error ?? "")\n"
        }
        let console = (try? String(contentsOf: root.appendingPathComponent("console.log"), encoding: .utf8)) ?? ""
        report += "== PID 1 console\n\(console.suffix(6000))\n----"
        print(report)
    }

    @discardableResult
    private func run(_ executable: String, _ arguments: [String]) throws -> CommandResult {
        try Command.check(executable, arguments, scratch: root)
    }

    private func write(_ text: String, to relativePath: String) throws {
        let url = root.appendingPathComponent(relativePath)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data((text + "\n").utf8).write(to: url)
    }

    /// The GID of `name` in the staged /etc/group.
    private func groupID(_ name: String) throws -> gid_t {
        let group = try String(contentsOf: root.appendingPathComponent("etc/group"), encoding: .utf8)
        for line in group.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count >= 3, fields[0] == name, let gid = gid_t(fields[2]) { return gid }
        }
        throw HarnessError("no group \(name) in the staged /etc/group (did systemd-sysusers run?)")
    }

    private func chown(_ path: String, gid: gid_t, mode: mode_t) throws {
        guard Glibc.chown(path, 0, gid) == 0, chmod(path, mode) == 0 else {
            throw HarnessError("chown/chmod \(path): \(String(cString: strerror(errno)))")
        }
    }
}
