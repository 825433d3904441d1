import Foundation
import GuidonUnixSocket
import Testing

#if canImport(Glibc)
import Glibc
#endif

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A scratch directory under /tmp (short: socket paths must fit in 108 bytes).
func makeScratchDirectory() throws -> String {
    var template = Array("/tmp/guidon-client-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp: \(String(cString: strerror(errno)))") }
    return String(cString: made)
}

/// protocol/examples/flags.json: ten flags of every kind, the file the README serves.
let exampleFlags: String = {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    return (try? String(contentsOf: root.appendingPathComponent("protocol/examples/flags.json"), encoding: .utf8)) ?? ""
}()

/// The `guidond` built next to the test bundle (`swift build --product guidond`), or `$GUIDOND_BIN`.
func guidondExecutable() throws -> String {
    if let explicit = ProcessInfo.processInfo.environment["GUIDOND_BIN"] { return explicit }
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    let candidate = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("guidond").path
    guard FileManager.default.isExecutableFile(atPath: candidate) else {
        throw TestFailure("guidond not found at \(candidate): run `swift build --product guidond` first or set GUIDOND_BIN")
    }
    return candidate
}

/// The real daemon, serving `flags.json` of its own scratch directory on `guidon.sock`; it can be
/// stopped and started again on the same socket, and its file edited.
final class TestDaemon: @unchecked Sendable {
    // @unchecked: a test drives it from one task at a time; `pid` is only touched there.
    let directory: String
    var socket: String { directory + "/guidon.sock" }
    var config: String { directory + "/flags.json" }
    var logPath: String { directory + "/guidond.log" }
    private var pid: pid_t?
    /// More arguments for guidond (`--entitlements PATH`, `--state-dir DIR`, …).
    var extraArguments: [String] = []

    init(flags: String = exampleFlags) throws {
        directory = try makeScratchDirectory()
        try writeFlags(flags)
    }

    deinit {
        if let pid {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Replaces the flag file the way an editor or a deploy does: a new file renamed over it.
    func writeFlags(_ text: String) throws {
        try text.write(toFile: config, atomically: true, encoding: .utf8)
    }

    /// Starts guidond and waits until it answers a ping.
    func start() throws {
        precondition(pid == nil, "already running")
        let binary = try guidondExecutable()
        let argv = [binary, "--config", config, "--socket", socket] + extraArguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var environment = ProcessInfo.processInfo.environment
        for key in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            environment[key] = nil
        }
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        var child: pid_t = 0
        let rc = posix_spawn(&child, binary, &actions, nil, cArgs, cEnv)
        guard rc == 0 else { throw TestFailure("posix_spawn \(binary): \(String(cString: strerror(rc)))") }
        pid = child
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if rawPing(socket) { return }
            var status: Int32 = 0
            if waitpid(child, &status, WNOHANG) == child {
                pid = nil
                throw TestFailure("guidond exited (status \(status)) before answering:\n\(log)")
            }
            usleep(10_000)
        }
        throw TestFailure("guidond did not answer within 30 s:\n\(log)")
    }

    /// SIGTERM, then waits for the exit; expects exit code 0.
    func stop() throws {
        guard let pid else { return }
        kill(pid, SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        self.pid = nil
        guard status == 0 else { throw TestFailure("guidond exited with status \(status):\n\(log)") }
    }

    /// Polls `condition` every 10 ms until it holds, or fails after `timeout`.
    func waitFor(_ what: String, timeout: Duration = .seconds(15), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestFailure("timed out waiting for \(what)\nlog:\n\(log)")
    }
}

/// A started daemon for `body`, stopped (exit 0 expected) and removed afterwards, whether `body`
/// returns or throws.
func withDaemon<R>(flags: String = exampleFlags, _ body: (TestDaemon) async throws -> R) async throws -> R {
    let daemon = try TestDaemon(flags: flags)
    try daemon.start()
    let result: R
    do {
        result = try await body(daemon)
    } catch {
        try? daemon.stop()
        throw error
    }
    try daemon.stop()
    return result
}

/// Whether a daemon answers `{"op":"ping"}` on `socket` (a raw exchange, independent of the
/// client under test).
func rawPing(_ socket: String) -> Bool {
    let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    guard UnixSocket.connect(fd, to: socket) == 0 else { return false }
    var tv = timeval(tv_sec: 2, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let request = Array("{\"op\":\"ping\"}\n".utf8)
    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return false }
    var reply: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while !reply.contains(UInt8(ascii: "\n")) {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return false }
        reply += chunk[..<n]
    }
    return String(decoding: reply, as: UTF8.self).contains(#""ok":true"#)
}
