import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The unit files as systemd/install.sh installs them: systemd-analyze's verdicts, and the install
/// and uninstall into a staging root.
@Suite("unit files and systemd/install.sh")
struct UnitFileTests {
    /// Stages an installation with stand-in binaries (the script only copies them).
    static func stage(_ scratch: URL, _ extra: [String] = []) throws -> URL {
        let binaries = scratch.appendingPathComponent("bin")
        let root = scratch.appendingPathComponent("root")
        try FileManager.default.createDirectory(at: binaries, withIntermediateDirectories: true)
        for name in ["guidond", "guidon"] {
            let path = binaries.appendingPathComponent(name).path
            _ = FileManager.default.createFile(atPath: path, contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755])
        }
        try Command.check(TestEnvironment.installScript,
                          ["--destdir", root.path, "--binaries", binaries.path, "--no-notify-reload"] + extra,
                          scratch: scratch)
        return root
    }

    static let units = ["guidon.socket", "guidon-admin.socket", "guidon-metrics.socket", "guidon-ofrep.socket", "guidon.service"]

    @Test("systemd-analyze verify accepts the installed units")
    func verify() throws {
        let scratch = try TestEnvironment.scratchDirectory("verify")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let root = try Self.stage(scratch)
        // verify checks that ExecStart= exists on this machine: point it at the staged binary.
        let units = scratch.appendingPathComponent("units")
        try FileManager.default.createDirectory(at: units, withIntermediateDirectories: true)
        for unit in Self.units {
            let text = try String(contentsOf: root.appendingPathComponent("usr/local/lib/systemd/system/\(unit)"), encoding: .utf8)
            try Data(text.replacingOccurrences(of: "/usr/local/bin/", with: root.path + "/usr/local/bin/").utf8)
                .write(to: units.appendingPathComponent(unit))
        }
        let result = try Command.run("/usr/bin/systemd-analyze",
                                     ["verify"] + Self.units.map { units.appendingPathComponent($0).path },
                                     scratch: scratch)
        #expect(result.status == 0, "systemd-analyze verify: \(result.error)")
        #expect(result.error.isEmpty, "systemd-analyze verify complained: \(result.error)")
    }

    @Test("systemd-analyze security rates guidon.service, admin socket and all, at an exposure of at most 1.0")
    func exposure() throws {
        let scratch = try TestEnvironment.scratchDirectory("security")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let root = try Self.stage(scratch)
        let unit = root.appendingPathComponent("usr/local/lib/systemd/system/guidon.service").path
        let result = try Command.run("/usr/bin/systemd-analyze", ["security", "--offline=yes", "--no-pager", unit], scratch: scratch)
        let line = try #require(result.output.split(separator: "\n").first { $0.contains("Overall exposure level") },
                                "no verdict in: \(result.output) \(result.error)")
        let figure = try #require(line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) })
        print("systemd-analyze security --offline=yes guidon.service: \(line.trimmingCharacters(in: .whitespaces))")
        #expect(figure <= 1.0)
        // The admin path is in the rated unit: both sockets, a writable config directory, the audit log.
        let service = try String(contentsOfFile: unit, encoding: .utf8)
        #expect(service.contains("Sockets=guidon.socket guidon-admin.socket guidon-metrics.socket guidon-ofrep.socket"))
        // …and so are the HTTP sockets, without loosening the sandbox that keeps guidond off the network.
        for setting in ["PrivateNetwork=yes", "RestrictAddressFamilies=AF_UNIX\n", "IPAddressDeny=any"] {
            #expect(service.contains(setting), "guidon.service lost \(setting)")
        }
        for (unit, address, name) in [("guidon-metrics.socket", "127.0.0.1:9464", "metrics"), ("guidon-ofrep.socket", "127.0.0.1:8016", "ofrep")] {
            let socket = try String(contentsOfFile: root.appendingPathComponent("usr/local/lib/systemd/system/\(unit)").path, encoding: .utf8)
            #expect(socket.contains("ListenStream=\(address)\n") && socket.contains("FileDescriptorName=\(name)\n"), "\(unit)")
            #expect(socket.contains("IPAddressAllow=localhost\nIPAddressDeny=any\n"), "\(unit) admits local clients only")
        }
        #expect(service.contains("--admin-socket /run/guidon/admin.sock --audit-log /var/lib/guidon/audit.jsonl"))
    }

    @Test("install puts every file in place, keeps an existing config, and uninstall keeps the config unless purged")
    func installAndUninstall() throws {
        let scratch = try TestEnvironment.scratchDirectory("install")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let root = try Self.stage(scratch)
        let files = [
            "usr/local/bin/guidond", "usr/local/bin/guidon",
            "usr/local/lib/systemd/system/guidon.socket", "usr/local/lib/systemd/system/guidon-admin.socket",
            "usr/local/lib/systemd/system/guidon-metrics.socket", "usr/local/lib/systemd/system/guidon-ofrep.socket",
            "usr/local/lib/systemd/system/guidon.service",
            "usr/local/lib/sysusers.d/guidon.conf", "usr/local/lib/tmpfiles.d/guidon.conf",
            "etc/guidon/flags.json",
        ]
        for file in files {
            #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent(file).path), "missing \(file)")
        }
        let config = root.appendingPathComponent("etc/guidon/flags.json")
        #expect(try Self.mode(config.path) == 0o640)
        #expect(try Self.mode(root.appendingPathComponent("usr/local/bin/guidond").path) == 0o755)

        // The operator's flags survive a reinstall…
        let edited = FlagFiles.greeting("bye")
        try Data(edited.utf8).write(to: config)
        _ = try Self.stage(scratch)
        #expect(try String(contentsOf: config, encoding: .utf8) == edited)

        // …and an uninstall, unless purged explicitly.
        try Command.check(TestEnvironment.installScript, ["--destdir", root.path, "--uninstall"], scratch: scratch)
        for file in files.dropLast() {
            #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent(file).path), "left behind: \(file)")
        }
        #expect(try String(contentsOf: config, encoding: .utf8) == edited)
        try Command.check(TestEnvironment.installScript, ["--destdir", root.path, "--uninstall", "--purge-config"], scratch: scratch)
        #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent("etc/guidon").path))
    }

    @Test("another prefix puts the units where systemd looks and names the binaries there")
    func otherPrefix() throws {
        let scratch = try TestEnvironment.scratchDirectory("prefix")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let root = try Self.stage(scratch, ["--prefix", "/opt/guidon", "--notify-reload"])
        let service = try String(contentsOf: root.appendingPathComponent("etc/systemd/system/guidon.service"), encoding: .utf8)
        #expect(service.contains("ExecStart=/opt/guidon/bin/guidond --config /etc/guidon/flags.json"))
        #expect(!service.contains("/usr/local/"))
        #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent("opt/guidon/bin/guidond").path))
        #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent("etc/sysusers.d/guidon.conf").path))
        #expect(FileManager.default.fileExists(
            atPath: root.appendingPathComponent("etc/systemd/system/guidon.service.d/notify-reload.conf").path))
    }

    static func mode(_ path: String) throws -> mode_t {
        var info = stat()
        guard stat(path, &info) == 0 else { throw HarnessError("stat \(path): \(String(cString: strerror(errno)))") }
        return info.st_mode & 0o7777
    }
}
