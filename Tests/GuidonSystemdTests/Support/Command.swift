import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A failure of the test harness itself (a command, a socket, a timeout), with the evidence.
struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The outcome of a finished command.
struct CommandResult: Sendable {
    var status: Int32
    var output: String
    var error: String

    var succeeded: Bool { status == 0 }
    var trimmedOutput: String { output.trimmingCharacters(in: .whitespacesAndNewlines) }
}

/// A child process started with posix_spawn(3). (Foundation's `Process` can miss the exit of a child
/// and hang in `waitUntilExit()`; waitpid(2) on the one PID we started cannot.)
struct ChildProcess {
    let pid: pid_t

    /// Starts `executable` with stdin on /dev/null and stdout/stderr appended to the given files.
    init(_ executable: String, _ arguments: [String], stdout: String, stderr: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        // The calling thread may be a Dispatch worker with most signals blocked: the child must start
        // with an empty signal mask and default dispositions, as it would from a shell or systemd.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        var allSignals = sigset_t()
        sigemptyset(&noSignals)
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard result == 0 else {
            throw HarnessError("cannot start \(executable): \(String(cString: strerror(result)))")
        }
        self.pid = pid
    }

    /// How a finished child ended.
    enum Termination: Equatable {
        case exited(Int32)
        case signaled(Int32)
    }

    /// Waits for the child to end; with `block: false`, returns nil while it still runs.
    func wait(block: Bool = true) throws -> Termination? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, block ? 0 : WNOHANG)
            if result == pid { break }
            if result == 0 { return nil }
            if errno == EINTR { continue }
            throw HarnessError("waitpid(\(pid)): \(String(cString: strerror(errno)))")
        }
        // The <sys/wait.h> macros, which Swift does not import.
        let signal = status & 0x7f
        return signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal)
    }
}

enum Command {
    /// Runs `executable` with `arguments` to completion. Output goes through files in `scratch` rather
    /// than pipes, so that a command leaving a background process behind cannot hang the test.
    static func run(_ executable: String, _ arguments: [String], scratch: URL) throws -> CommandResult {
        let clock = ContinuousClock()
        let started = clock.now
        defer {
            // Not an assertion: a hint for whoever reads a slow test log.
            let took = clock.now - started
            if took > .seconds(5) {
                print("GuidonSystemdTests: slow command (\(took)): \(([executable] + arguments).joined(separator: " "))")
            }
        }
        let id = UUID().uuidString
        let outPath = scratch.appendingPathComponent(".cmd-\(id).out").path
        let errPath = scratch.appendingPathComponent(".cmd-\(id).err").path
        defer {
            unlink(outPath)
            unlink(errPath)
        }
        let child = try ChildProcess(executable, arguments, stdout: outPath, stderr: errPath)
        let status: Int32
        switch try child.wait() {
        case .exited(let code): status = code
        case .signaled(let signal): status = 128 + signal
        case nil: status = -1
        }
        return CommandResult(
            status: status,
            output: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            error: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        )
    }

    /// Like `run`, but a non-zero exit status is an error that shows the command and its output.
    @discardableResult
    static func check(_ executable: String, _ arguments: [String], scratch: URL) throws -> CommandResult {
        let result = try run(executable, arguments, scratch: scratch)
        guard result.succeeded else {
            throw HarnessError("""
                `\(([executable] + arguments).joined(separator: " "))` exited with \(result.status)
                stdout: \(result.output)
                stderr: \(result.error)
                """)
        }
        return result
    }
}

/// Polls `condition` until it returns a value, or throws once `timeout` has passed.
/// The timeout only bounds a hang; it is never what a test asserts. On a loaded machine the
/// test may not get to run for a while (other tests can hold the few threads of the concurrency
/// pool), so it also keeps polling until the condition has been tried a fair number of times.
@discardableResult
func eventually<T>(
    _ what: String,
    timeout: Duration = .seconds(30),
    every interval: Duration = .milliseconds(100),
    _ condition: () throws -> T?
) async throws -> T {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    let minimumAttempts = max(10, Int(timeout / interval) / 3)
    var attempts = 0
    var lastError: (any Error)?
    while true {
        attempts += 1
        do {
            if let value = try condition() { return value }
        } catch {
            lastError = error
        }
        if clock.now >= deadline && attempts >= minimumAttempts { break }
        try await Task.sleep(for: interval)
    }
    throw HarnessError("timed out after \(timeout) (\(attempts) attempts) waiting for \(what)\(lastError.map { "; last error: \($0)" } ?? "")")
}
