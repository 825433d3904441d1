import Foundation
import GuidonJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A scratch directory under /tmp (short, so socket paths fit), removed by `remove()`.
struct ScratchDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/guidon-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp: \(String(cString: strerror(errno)))") }
        path = String(cString: made)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: file(name), atomically: false, encoding: .utf8)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The `guidond` built next to this test bundle (or `$GUIDOND_BIN`).
func guidondPath() throws -> String {
    if let explicit = ProcessInfo.processInfo.environment["GUIDOND_BIN"] { return explicit }
    // The test bundle (…/.build/debug/guidonPackageTests.xctest) sits next to the products.
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    let candidates = [URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("guidond").path]
    for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    throw TestFailure("guidond not found (looked at \(candidates)); run `swift build` first or set GUIDOND_BIN")
}

/// A `guidond` child process, started with posix_spawn so that it can inherit a socket as fd 3.
final class DaemonProcess {
    let pid: pid_t
    let logPath: String
    private(set) var exitStatus: Int32?

    /// Starts `guidond` with `arguments`; its stdout and stderr go to `logPath`.
    /// `listenFD` is passed as fd 3 with `LISTEN_FDS=1` and a matching `LISTEN_PID`, as systemd does.
    /// `wrapper`, when given, runs first and is handed guidond and its arguments (to run it
    /// under `unshare`, say).
    init(arguments: [String], logPath: String, environment: [String: String] = [:], listenFD: Int32? = nil, wrapper: [String] = []) throws {
        self.logPath = logPath
        let binary = try guidondPath()
        var argv: [String]
        if listenFD != nil {
            // systemd sets LISTEN_PID to the service's pid, known only once it is running.
            argv = ["/bin/sh", "-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"", binary] + arguments
        } else {
            argv = wrapper + [binary] + arguments
        }
        var env = ProcessInfo.processInfo.environment
        for key in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"] {
            env[key] = nil
        }
        env.merge(environment) { _, new in new }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        if let listenFD { posix_spawn_file_actions_adddup2(&actions, listenFD, 3) }

        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        var child: pid_t = 0
        let rc = posix_spawn(&child, argv[0], &actions, nil, cArgs, cEnv)
        guard rc == 0 else { throw TestFailure("posix_spawn \(argv[0]): \(String(cString: strerror(rc)))") }
        pid = child
    }

    deinit {
        if exitStatus == nil {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func signal(_ sig: Int32) { kill(pid, sig) }

    /// Waits for the process to exit; returns its exit code (128 + n when killed by signal n).
    @discardableResult
    func waitForExit(timeout: Duration = .seconds(20)) throws -> Int32 {
        if let exitStatus { return exitStatus }
        let deadline = ContinuousClock.now + timeout
        repeat {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
                exitStatus = code
                return code
            }
            usleep(10_000)
        } while ContinuousClock.now < deadline
        throw TestFailure("guidond (pid \(pid)) did not exit within \(timeout)\nlog:\n\(log)")
    }

    /// SIGTERM, then the exit code.
    @discardableResult
    func stop() throws -> Int32 {
        signal(SIGTERM)
        return try waitForExit()
    }
}

/// A running daemon on a scratch directory's `flags.json` and `guidon.sock`.
final class RunningDaemon {
    let dir: ScratchDirectory
    let process: DaemonProcess
    var socketPath: String { dir.file("guidon.sock") }
    /// The flag file guidond was given (`DIR/flags.json` unless the caller chose another).
    let configPath: String

    /// Writes `flags` (unless nil: the caller prepared the directory) and starts guidond.
    init(
        flags: String?, extraArguments: [String] = [], environment: [String: String] = [:], dir: ScratchDirectory? = nil,
        configPath: String? = nil
    ) throws {
        let dir = try dir ?? ScratchDirectory()
        self.dir = dir
        self.configPath = configPath ?? dir.file("flags.json")
        do {
            if let flags { try dir.write("flags.json", flags) }
            process = try DaemonProcess(
                arguments: ["--config", self.configPath, "--socket", dir.file("guidon.sock")] + extraArguments,
                logPath: dir.file("guidond.log"), environment: environment)
        } catch {
            dir.remove()
            throw error
        }
        do {
            try waitUntilAnswering()
        } catch {
            // Nobody will call finish(): stop the process (its deinit) and clean up here.
            process.signal(SIGKILL)
            _ = try? process.waitForExit()
            dir.remove()
            throw error
        }
    }

    func waitUntilAnswering(timeout: Duration = .seconds(30)) throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let client = try? LineClient(path: socketPath), (try? client.request(#"{"op":"ping"}"#))?["ok"] == true { return }
            if let code = try? process.waitForExit(timeout: .zero) {
                throw TestFailure("guidond exited with \(code) before answering:\n\(process.log)")
            }
            usleep(20_000)
        }
        throw TestFailure("guidond did not answer within \(timeout):\n\(process.log)")
    }

    func client() throws -> LineClient { try LineClient(path: socketPath) }

    /// Polls until `condition` holds.
    func waitFor(_ what: String, timeout: Duration = .seconds(15), _ condition: () throws -> Bool) throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try condition() { return }
            usleep(20_000)
        }
        throw TestFailure("timed out waiting for \(what)\nlog:\n\(process.log)")
    }

    /// Stops the daemon (expecting exit 0) and removes the directory.
    func finish() throws {
        defer { dir.remove() }
        let code = try process.stop()
        #expect(code == 0, "guidond exited with \(code):\n\(process.log)")
    }
}
