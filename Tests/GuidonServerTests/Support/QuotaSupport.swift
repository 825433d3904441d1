import Foundation
import GuidonJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A private `redis-server` for one test: on a Unix socket in a scratch directory and a free
/// loopback port, no persistence. Stopped and restarted (same socket, same port) by PID only.
final class TestRedis {
    let directory: ScratchDirectory
    let socket: String
    let port: UInt16
    private var pid: pid_t?

    var unixURL: String { "redis+unix://\(socket)" }
    var tcpURL: String { "redis://127.0.0.1:\(port)" }

    init() throws {
        directory = try ScratchDirectory()
        socket = directory.file("r.sock")
        port = try Self.freePort()
    }

    deinit { remove() }

    static func executable() throws -> String {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") + ["/usr/sbin", "/usr/bin"] {
            let path = "\(dir)/redis-server"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw TestFailure("redis-server is not installed (GUIDON_TEST_DEPS=1 bash .ci/deps installs it)")
    }

    func start() throws {
        let argv = [
            try Self.executable(), "--port", String(port), "--bind", "127.0.0.1", "--unixsocket", socket, "--unixsocketperm", "700",
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", directory.path, "--logfile", directory.file("redis.log"),
        ]
        pid = try spawnProcess(argv)
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if ping() { return }
            usleep(10_000)
        }
        throw TestFailure("redis-server did not answer within 20 s")
    }

    /// SIGTERM and reap (SIGKILL after 5 s).
    func stop() {
        guard let pid else { return }
        self.pid = nil
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(5)
        var status: Int32 = 0
        while ContinuousClock.now < deadline {
            if waitpid(pid, &status, WNOHANG) != 0 { return }
            usleep(2000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
    }

    func remove() {
        stop()
        directory.remove()
    }

    /// `PING` over the Unix socket (an inline command).
    func ping() -> Bool {
        guard let client = try? LineClient(path: socket, timeoutSeconds: 2) else { return false }
        guard (try? client.send("PING\r\n")) != nil, let line = try? client.readLine() else { return false }
        return String(decoding: line, as: UTF8.self).hasPrefix("+PONG")
    }

    static func freePort() throws -> UInt16 {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard ok else { throw TestFailure("cannot find a free port") }
        return UInt16(bigEndian: address.sin_port)
    }
}

/// Starts `argv` with every signal at its default and unblocked (a child of a test thread would
/// inherit a mask that ignores SIGTERM), output to /dev/null.
func spawnProcess(_ argv: [String]) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
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
    let cArgs = argv.map { strdup($0) } + [nil]
    defer { for p in cArgs { free(p) } }
    var pid = pid_t()
    let rc = posix_spawn(&pid, argv[0], &actions, &attributes, cArgs, environ)
    guard rc == 0 else { throw TestFailure("posix_spawn \(argv[0]): \(String(cString: strerror(rc)))") }
    return pid
}

/// An entitlements document for the usage-limit tests (UTC windows).
let quotaEntitlements = #"""
{
  "timezone": "UTC",
  "features": {
    "video":   {"default": false, "limits": [{"per": "day", "max": 10}]},
    "exports": {"default": false},
    "ai":      {"default": false},
    "sms":     {"default": false},
    "chat":    {"default": true},
    "seats":   {"default": {"max": 3}}
  },
  "plans": {
    "pro": {
      "displayName": "Pro", "order": 2,
      "grants": {
        "video":   {"limits": [{"per": "day", "max": 40}, {"per": "month", "max": 1000000000}]},
        "exports": {"limits": [{"per": "month", "max": 3, "mode": "soft"}]},
        "ai":      {"limits": [{"per": "hour", "max": 2, "mode": "shadow"}, {"per": "day", "max": 5, "scope": "user"}]},
        "sms":     {"limits": [{"per": "day", "max": 1000000000, "failMode": "closed"}]}
      }
    },
    "free": {"displayName": "Free", "order": 1, "grants": {}}
  },
  "tenants": {
    "t1": {"plan": "pro", "status": "active"},
    "t2": {"plan": "pro", "status": "active"},
    "t3": {"plan": "pro", "status": "active"},
    "t4": {"plan": "pro", "status": "active"},
    "poor": {"plan": "free", "status": "active"}
  }
}
"""#

extension RunningDaemon {
    /// A guidond serving the example flags and `quotaEntitlements`, with an admin socket,
    /// counting under `DIR/state` (or in `quotaStore`).
    static func withQuotas(quotaStore: String? = nil, dir: ScratchDirectory? = nil, extraArguments: [String] = []) throws -> RunningDaemon {
        let dir = try dir ?? ScratchDirectory()
        if !FileManager.default.fileExists(atPath: dir.file("ent.json")) { try dir.write("ent.json", quotaEntitlements) }
        if !FileManager.default.fileExists(atPath: dir.file("flags.json")) { try dir.write("flags.json", bundledExampleFlags) }
        let store = quotaStore.map { ["--quota-store", $0] } ?? ["--state-dir", dir.file("state")]
        return try RunningDaemon.withAdmin(
            flags: nil, extraArguments: ["--entitlements", dir.file("ent.json")] + store + extraArguments, dir: dir)
    }
}

extension LineClient {
    /// One `consume` of `feature` for `tenant` (and `user`).
    func consume(_ feature: String, tenant: String, user: String? = nil, amount: Int64? = nil, key: String? = nil) throws -> JSONObject {
        try self.request(consumeLine(feature, tenant: tenant, user: user, amount: amount, key: key))
    }

    func usage(_ feature: String?, tenant: String, user: String? = nil) throws -> JSONObject {
        var context: JSONObject = ["tenantId": .string(tenant)]
        if let user { context["targetingKey"] = .string(user) }
        var request: JSONObject = ["op": "usage", "context": .object(context)]
        if let feature { request["feature"] = .string(feature) }
        return try self.request(JSONWriter.string(.object(request)))
    }
}

func consumeLine(_ feature: String, tenant: String, user: String? = nil, amount: Int64? = nil, key: String? = nil, id: Int? = nil) -> String {
    var context: JSONObject = ["tenantId": .string(tenant)]
    if let user { context["targetingKey"] = .string(user) }
    var request: JSONObject = ["op": "consume", "feature": .string(feature), "context": .object(context)]
    if let amount { request["amount"] = .int(amount) }
    if let key { request["idempotencyKey"] = .string(key) }
    if let id { request["id"] = .int(Int64(id)) }
    return JSONWriter.string(.object(request))
}
