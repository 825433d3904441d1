import GuidonJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What `{"op":"ping"}` answers.
struct PingReply: Equatable {
    var configVersion: String
    var flags: Int
}

enum BenchError: Error, CustomStringConvertible {
    case serverFailed(String)
    case unexpectedReply(String)

    var description: String {
        switch self {
        case .serverFailed(let message): message
        case .unexpectedReply(let message): message
        }
    }
}

/// One request/reply exchange on a fresh blocking connection, for set-up and checks.
func exchange(socket: String, line: String, timeout: Double = 5) throws -> String {
    let fd = try connectUnix(socket)
    defer { close(fd) }
    return try exchange(fd: fd, line: line, timeout: timeout)
}

/// One request/reply exchange on an open connection (NDJSON: one line out, one line back).
func exchange(fd: Int32, line: String, timeout: Double = 5) throws -> String {
    setTimeouts(fd, seconds: timeout)
    try sendAll(fd, Array((line + "\n").utf8))
    var reply: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while reply.last != UInt8(ascii: "\n") {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw n == 0 ? BenchError.unexpectedReply("connection closed before a reply to \(line)") : SystemError("recv") }
        reply += chunk[0..<n]
    }
    reply.removeLast()
    return String(decoding: reply, as: UTF8.self)
}

func ping(fd: Int32, timeout: Double = 5) throws -> PingReply {
    let text = try exchange(fd: fd, line: #"{"op":"ping"}"#, timeout: timeout)
    guard case .object(let reply)? = try? JSONParser().parse(text),
        reply["ok"] == .bool(true),
        let version = reply["configVersion"]
    else { throw BenchError.unexpectedReply("unexpected ping reply: \(text)") }
    let flags: Int = if case .int(let n)? = reply["flags"] { Int(n) } else { -1 }
    let versionText = version.string ?? version.description
    return PingReply(configVersion: versionText, flags: flags)
}

func ping(socket: String, timeout: Double = 5) throws -> PingReply {
    let fd = try connectUnix(socket)
    defer { close(fd) }
    return try ping(fd: fd, timeout: timeout)
}

/// Waits until `socket` answers a ping; returns the nanoseconds from `since` to the answer.
/// Fails when `process` exits first or `timeout` passes.
func waitForFirstAnswer(socket: String, process: ChildProcess, since: UInt64, timeout: Double = 20) throws -> UInt64 {
    let deadline = since + UInt64(timeout * 1e9)
    var lastError = "no attempt"
    var attempts = 0
    while monotonicNanos() < deadline {
        attempts += 1
        do {
            let fd = try connectUnix(socket)
            defer { close(fd) }
            _ = try ping(fd: fd, timeout: 2)
            return monotonicNanos() - since
        } catch {
            lastError = "\(error)"
        }
        if process.hasExited {
            throw BenchError.serverFailed("\(process.executable) exited before answering on \(socket):\n\(process.logTail())")
        }
        sleepNanos(100_000)
    }
    throw BenchError.serverFailed(
        "\(process.executable) (pid \(process.pid)) did not answer a ping on \(socket) within \(timeout) s "
            + "(\(attempts) attempts; last: \(lastError); the socket's directory "
            + (fileExists(String(socket[..<(socket.lastIndex(of: "/") ?? socket.endIndex)])) ? "exists" : "is gone")
            + "):\n\(process.logTail())")
}

/// Starts the servers the bench measures, each in its own process.
struct ServerLauncher {
    let directory: TemporaryDirectory
    let guidond: String
    let guidondArguments: [String]

    /// Starts `guidond` on `config`; returns the process and the time from spawn to first answer.
    func startGuidond(config: String, socket: String, extraArguments: [String] = []) throws -> (ChildProcess, UInt64) {
        unlink(socket)
        let arguments = ["--config", config, "--socket", socket] + guidondArguments + extraArguments
        let start = monotonicNanos()
        let process = try ChildProcess(executable: guidond, arguments: arguments, logPath: directory.file("guidond.log"))
        do {
            return (process, try waitForFirstAnswer(socket: socket, process: process, since: start))
        } catch {
            process.stop()
            throw error
        }
    }

    /// Starts the echo floor (this executable's hidden `echo-server`) replying `reply`.
    func startFloor(socket: String, reply: String) throws -> ChildProcess {
        let process = try ChildProcess(
            executable: executableDirectory() + "/guidon-bench",
            arguments: ["echo-server", "--socket", socket, "--reply", reply],
            logPath: directory.file("echo.log"))
        try waitUntilAccepting(socket, process)
        return process
    }

    /// Starts a private `redis-server` on a Unix socket, no persistence; `nil` when Redis is not installed.
    func startRedis(socket: String) throws -> ChildProcess? {
        guard let executable = Self.findInPath("redis-server") else { return nil }
        let process = try ChildProcess(
            executable: executable,
            arguments: [
                "--port", "0", "--unixsocket", socket, "--unixsocketperm", "700",
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", directory.path,
            ],
            logPath: directory.file("redis.log"))
        try waitUntilAccepting(socket, process)
        return process
    }

    private func waitUntilAccepting(_ socket: String, _ process: ChildProcess) throws {
        let deadline = monotonicNanos() + 10_000_000_000
        while monotonicNanos() < deadline {
            if let fd = try? connectUnix(socket) {
                close(fd)
                return
            }
            if process.hasExited {
                throw BenchError.serverFailed("\(process.executable) exited:\n\(process.logTail())")
            }
            sleepNanos(1_000_000)
        }
        process.stop()
        throw BenchError.serverFailed("\(process.executable) did not listen on \(socket):\n\(process.logTail())")
    }

    static func findInPath(_ name: String) -> String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") where isExecutable("\(directory)/\(name)") {
            return "\(directory)/\(name)"
        }
        return nil
    }
}

/// Redis RESP2 commands, as raw bytes.
enum RESP {
    static func command(_ parts: [String]) -> [UInt8] {
        var out = Array("*\(parts.count)\r\n".utf8)
        for part in parts {
            let bytes = Array(part.utf8)
            out += Array("$\(bytes.count)\r\n".utf8) + bytes + Array("\r\n".utf8)
        }
        return out
    }

    /// Sends `SET key value` and checks for `+OK`.
    static func set(socket: String, key: String, value: String) throws {
        let fd = try connectUnix(socket)
        defer { close(fd) }
        setTimeouts(fd, seconds: 5)
        try sendAll(fd, command(["SET", key, value]))
        var reply = [UInt8](repeating: 0, count: 64)
        let n = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n >= 3, reply[0] == UInt8(ascii: "+") else {
            throw BenchError.unexpectedReply("redis SET failed: \(String(decoding: reply[0..<max(0, n)], as: UTF8.self))")
        }
    }
}
