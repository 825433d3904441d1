import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where things are, and what this machine can do.
enum TestEnvironment {
    /// The repository root (this file is Tests/GuidonSystemdTests/Support/TestEnvironment.swift).
    static let repository: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    static let namespaceScript = repository.appendingPathComponent("Tests/SystemdHarness/namespace-systemd.sh").path
    static let installScript = repository.appendingPathComponent("systemd/install.sh").path

    /// The directory holding the built guidond and guidon: `GUIDON_BIN_DIR`, else the directory of this
    /// test binary (SwiftPM puts products and test bundles side by side).
    static let binaries: URL = {
        if let dir = ProcessInfo.processInfo.environment["GUIDON_BIN_DIR"] {
            return URL(fileURLWithPath: dir)
        }
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: executable).deletingLastPathComponent()
        // On Linux the bundle is a plain executable; step out of an .xctest directory should there be one.
        while dir.pathExtension == "xctest" || dir.lastPathComponent == "MacOS" || dir.lastPathComponent == "Contents" {
            dir.deleteLastPathComponent()
        }
        return dir
    }()

    static var guidond: String { binaries.appendingPathComponent("guidond").path }

    /// Scratch space for a test: under .build, never under /tmp, /run or /var/tmp (the namespaced
    /// systemd mounts fresh tmpfs there, and its files must stay visible inside).
    static func scratchDirectory(_ name: String) throws -> URL {
        let url = repository.appendingPathComponent(".build/systemd-tests/\(name)-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Why systemd cannot be booted in private namespaces here, or nil when it can.
    static let namespaceUnavailableReason: String? = {
        guard getuid() == 0 else { return "not root: booting systemd in private namespaces needs root" }
        for tool in ["/usr/bin/unshare", "/usr/bin/nsenter", "/lib/systemd/systemd"] where access(tool, X_OK) != 0 {
            return "\(tool) is missing"
        }
        guard let scratch = try? scratchDirectory("probe") else { return "cannot create a scratch directory" }
        defer { try? FileManager.default.removeItem(at: scratch) }
        let probe = try? Command.run(
            "/usr/bin/unshare",
            ["--pid", "--fork", "--mount", "--mount-proc", "--uts", "--ipc", "--cgroup", "--propagation", "private",
             "/bin/sh", "-c", """
                mount -t tmpfs probe /run && mkdir /run/upper /run/work \
                && mount -t overlay probe -o lowerdir=/etc,upperdir=/run/upper,workdir=/run/work /etc \
                && mount -t cgroup2 cgroup2 /sys/fs/cgroup
                """],
            scratch: scratch)
        guard let probe, probe.succeeded else {
            return "cannot create private PID/mount/cgroup namespaces with tmpfs, overlay and cgroup2 mounts here: \(probe?.error ?? "unshare(1) failed to run")"
        }
        return nil
    }()

    /// Whether systemd can be booted in private namespaces; says once, loudly, why not.
    static let canBootSystemd: Bool = {
        if let reason = namespaceUnavailableReason {
            print("GuidonSystemdTests: SKIPPING the tests under a namespaced systemd: \(reason)")
            return false
        }
        return true
    }()
}
