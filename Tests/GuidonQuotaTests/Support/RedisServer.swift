import Foundation
import GuidonRESP
import Testing

/// A private `redis-server` for one test: on a Unix socket in a scratch directory and a free
/// loopback port, no persistence. Stopped, paused and restarted by PID only.
final class RedisServer {
    let directory: ScratchDirectory
    let socket: String
    let port: UInt16
    private var pid: pid_t?

    var unixAddress: RedisAddress { .unix(path: socket) }
    var tcpAddress: RedisAddress { .tcp(host: "127.0.0.1", port: port) }

    init() throws {
        directory = try ScratchDirectory()
        socket = directory.file("redis.sock")
        port = try Self.freePort()
    }

    static func executable() throws -> String {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(dir)/redis-server"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw TestFailure("redis-server is not installed (GUIDON_TEST_DEPS=1 bash .ci/deps installs it)")
    }

    func start() throws {
        let pid = try spawnChild(try Self.executable(), [
            "--port", String(port), "--bind", "127.0.0.1", "--unixsocket", socket, "--unixsocketperm", "700",
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", directory.path, "--logfile", directory.file("redis.log"),
        ], log: "/dev/null")
        self.pid = pid
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if (try? ping()) == true { return }
            guard childIsRunning(pid) else {
                self.pid = nil
                throw TestFailure("redis-server exited: \(log())")
            }
            usleep(5000)
        }
        throw TestFailure("redis-server did not answer within 10 s: \(log())")
    }

    /// SIGTERM, then waits for the process to exit (SIGKILL after 5 s).
    func stop() {
        guard let pid else { return }
        kill(pid, SIGCONT)
        stopChild(pid)
        self.pid = nil
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    func pause() { if let pid { kill(pid, SIGSTOP) } }
    func resume() { if let pid { kill(pid, SIGCONT) } }

    func remove() {
        stop()
        directory.remove()
    }

    func log() -> String { (try? String(contentsOfFile: directory.file("redis.log"), encoding: .utf8)) ?? "(no log)" }

    /// One blocking command on a fresh connection (test set-up and checks).
    @discardableResult
    func command(_ arguments: [String]) throws -> RESPValue {
        let fd = Foundation.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(socket.utf8) + [0])
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw TestFailure("connect to \(socket) failed") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bytes = RESPCommand.encode(arguments)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if let (value, _) = try RESPParser().parse(buffer) { return value }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw TestFailure("no reply from redis to \(arguments)") }
            buffer += chunk[0..<n]
        }
    }

    func ping() throws -> Bool { try command(["PING"]) == .simpleString("PONG") }

    /// A port nobody listens on now (bound, read, released).
    static func freePort() throws -> UInt16 {
        let fd = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard ok else { throw TestFailure("cannot find a free port") }
        return UInt16(bigEndian: address.sin_port)
    }
}

/// Runs `body` with a started private Redis, stopped and removed afterwards.
func withRedis<T>(_ body: (RedisServer) throws -> T) throws -> T {
    let redis = try RedisServer()
    defer { redis.remove() }
    try redis.start()
    return try body(redis)
}

/// Starts `executable` with `arguments`, output appended to `log`, with every signal unblocked
/// and at its default (test threads block some, and a child inherits the mask: a redis-server
/// started from one would ignore SIGTERM).
func spawnChild(_ executable: String, _ arguments: [String], log: String, environment: [String: String] = [:]) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var empty = sigset_t()
    sigemptyset(&empty)
    posix_spawnattr_setsigmask(&attributes, &empty)
    var all = sigset_t()
    sigfillset(&all)
    posix_spawnattr_setsigdefault(&attributes, &all)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    var env = ProcessInfo.processInfo.environment
    env.merge(environment) { _, new in new }
    let cArgs = ([executable] + arguments).map { strdup($0) } + [nil]
    let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        for p in cArgs { free(p) }
        for p in cEnv { free(p) }
    }
    var pid = pid_t()
    let rc = posix_spawn(&pid, executable, &actions, &attributes, cArgs, cEnv)
    guard rc == 0 else { throw TestFailure("posix_spawn \(executable): \(String(cString: strerror(rc)))") }
    return pid
}

func childIsRunning(_ pid: pid_t) -> Bool {
    var status: Int32 = 0
    return waitpid(pid, &status, WNOHANG) == 0
}

/// SIGTERM, wait up to 5 s, then SIGKILL; reaps the child.
func stopChild(_ pid: pid_t, signal: Int32 = SIGTERM) {
    kill(pid, signal)
    let deadline = Date().addingTimeInterval(5)
    var status: Int32 = 0
    while Date() < deadline {
        if waitpid(pid, &status, WNOHANG) != 0 { return }
        usleep(2000)
    }
    kill(pid, SIGKILL)
    waitpid(pid, &status, 0)
}
