// The few POSIX pieces the bench needs: a monotonic clock, Unix sockets, threads and
// child processes. Kept raw on purpose: the load client must cost as little as possible.
import GuidonUnixSocket

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed system call, with the call's name and `errno`.
struct SystemError: Error, CustomStringConvertible {
    var call: String
    var errno: Int32

    init(_ call: String, errno: Int32 = Glibc.errno) {
        self.call = call
        self.errno = errno
    }

    var description: String { "\(call): \(String(cString: strerror(errno)))" }
}

/// Nanoseconds on the monotonic clock (a vDSO call, no system call).
@inline(__always)
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

func sleepNanos(_ nanos: UInt64) {
    var remaining = timespec(tv_sec: Int(nanos / 1_000_000_000), tv_nsec: Int(nanos % 1_000_000_000))
    var request = remaining
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}

// MARK: - Unix domain sockets

private func withUnixAddress<R>(
    _ path: String,
    _ body: (UnsafePointer<sockaddr>, socklen_t) -> R
) throws -> R {
    guard let result = UnixSocket.withAddress(path, body) else {
        throw SystemError("socket path too long (\(path))", errno: ENAMETOOLONG)
    }
    return result
}

/// Opens a blocking stream socket connected to `path`.
func connectUnix(_ path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw SystemError("socket") }
    let rc = try withUnixAddress(path) { connect(fd, $0, $1) }
    guard rc == 0 else {
        let error = SystemError("connect(\(path))")
        close(fd)
        throw error
    }
    return fd
}

/// Opens a blocking TCP connection to `127.0.0.1:port`, without Nagle's delay (a keep-alive HTTP
/// client sends each request in one write and waits for its response).
func connectLoopback(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw SystemError("socket") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else {
        let error = SystemError("connect(127.0.0.1:\(port))")
        close(fd)
        throw error
    }
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    return fd
}

/// Binds and listens on `path`, replacing a stale socket file.
func listenUnix(_ path: String, backlog: Int32 = 512) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw SystemError("socket") }
    unlink(path)
    guard try withUnixAddress(path, { bind(fd, $0, $1) }) == 0 else {
        let error = SystemError("bind(\(path))")
        close(fd)
        throw error
    }
    guard listen(fd, backlog) == 0 else {
        let error = SystemError("listen(\(path))")
        close(fd)
        throw error
    }
    return fd
}

/// Writes all of `bytes`, retrying short writes. Never raises SIGPIPE.
func sendAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
    var offset = 0
    while offset < bytes.count {
        let n = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
        if n < 0 {
            if errno == EINTR { continue }
            throw SystemError("send")
        }
        offset += n
    }
}

func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws {
    try bytes.withUnsafeBytes { try sendAll(fd, $0) }
}

/// Sets `SO_RCVTIMEO`/`SO_SNDTIMEO` so that a blocking call gives up after `seconds`.
func setTimeouts(_ fd: Int32, seconds: Double) {
    var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
}

// MARK: - Threads

private final class ThreadBody: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// A joinable POSIX thread running `body`.
struct PosixThread {
    private let handle: pthread_t

    init(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var handle = pthread_t()
        let rc = pthread_create(&handle, nil, { argument in
            Unmanaged<ThreadBody>.fromOpaque(argument!).takeRetainedValue().run()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        self.handle = handle
    }

    func join() { pthread_join(handle, nil) }

    /// Starts a detached thread (the echo server's per-connection threads).
    static func detach(_ body: @escaping @Sendable () -> Void) {
        pthread_detach(PosixThread(body).handle)
    }
}

/// A slot a thread writes its result into; read only after `join()`.
final class ResultSlot<Value>: @unchecked Sendable {
    var value: Value?
}

/// Runs `body(i)` for `i` in `0..<count` on `count` threads and returns the results in order.
func onThreads<Value>(_ count: Int, _ body: @escaping @Sendable (Int) -> Value) -> [Value] {
    let slots = (0..<count).map { _ in ResultSlot<Value>() }
    let threads = (0..<count).map { i in
        let slot = slots[i]
        return PosixThread { slot.value = body(i) }
    }
    for thread in threads { thread.join() }
    return slots.map { $0.value! }
}

// MARK: - Child processes

/// A child process started with `posix_spawn`, its output appended to a log file.
final class ChildProcess {
    let pid: pid_t
    let executable: String
    let logPath: String
    private(set) var exitStatus: Int32?

    init(executable: String, arguments: [String], logPath: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for arg in argv { free(arg) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard rc == 0 else { throw SystemError("posix_spawn(\(executable))", errno: rc) }
        self.pid = pid
        self.executable = executable
        self.logPath = logPath
    }

    /// Whether the process has exited (reaps it if so).
    var hasExited: Bool {
        if exitStatus != nil { return true }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            exitStatus = status
            return true
        }
        return false
    }

    /// Sends SIGTERM, waits up to `grace` seconds, then SIGKILL.
    func stop(grace: Double = 3) {
        guard !hasExited else { return }
        kill(pid, SIGTERM)
        let deadline = monotonicNanos() + UInt64(grace * 1e9)
        while monotonicNanos() < deadline {
            if hasExited { return }
            sleepNanos(1_000_000)
        }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        exitStatus = status
    }

    /// A value from `/proc/PID/status` in KiB (`VmHWM`, `VmRSS`).
    func statusKiB(_ field: String) -> Int? {
        guard let text = readTextFile("/proc/\(pid)/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            return Int(line.dropFirst(field.count + 1).filter { $0.isNumber })
        }
        return nil
    }

    /// The last lines of the process's log, for error messages.
    func logTail(lines: Int = 20) -> String {
        guard let text = readTextFile(logPath) else { return "(no log)" }
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }
}

// MARK: - Files

func readTextFile(_ path: String) -> String? {
    guard let bytes = readFile(path) else { return nil }
    return String(decoding: bytes, as: UTF8.self)
}

func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        result.append(contentsOf: chunk[0..<n])
    }
    return result
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, then `rename`.
func writeFileAtomically(_ path: String, _ bytes: [UInt8]) throws {
    let temporary = path + ".tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw SystemError("open(\(temporary))") }
    do {
        try bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SystemError("write(\(temporary))")
                }
                offset += n
            }
        }
    } catch {
        close(fd)
        throw error
    }
    close(fd)
    guard rename(temporary, path) == 0 else { throw SystemError("rename(\(temporary), \(path))") }
}

/// A fresh private directory under `$TMPDIR` (or `/tmp`), removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init(prefix: String) throws {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(base)/\(prefix).XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw SystemError("mkdtemp")
        }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    /// Removes the directory's (flat) contents and the directory.
    func remove() {
        guard let dir = opendir(path) else { return }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { unlink(file(name)) }
        }
        closedir(dir)
        rmdir(path)
    }
}

/// The directory holding this executable (where SwiftPM also puts `guidond`).
func executableDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return "." }
    let path = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return String(path[..<slash])
}

func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }
func isExecutable(_ path: String) -> Bool { access(path, X_OK) == 0 }
