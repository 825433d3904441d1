import GuidonJSON
import GuidonUnixSocket

#if canImport(Glibc)
import Glibc
#endif

/// A blocking newline-delimited JSON client for the daemon's Unix socket.
struct LineClient: ~Copyable {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private let fd: Int32
    private var buffer: [UInt8] = []

    /// Connects; `timeout` bounds every later read (nil: wait forever).
    init(path: String, timeout: Double?) throws(Failure) {
        fd = UnixSocket.stream()
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        guard UnixSocket.connect(fd, to: path) == 0 else {
            let reason = String(cString: strerror(errno))
            // No close here: an initializer that throws once every property is set runs
            // `deinit`, which closes it. Closing it here too closed whatever a test opened next
            // under the same number.
            throw Failure(description: "cannot connect to guidond at \(path): \(reason)")
        }
        if let timeout {
            var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1_000_000))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    deinit { close(fd) }

    func send(_ request: JSONValue) throws(Failure) {
        var line = Array(JSONWriter.string(request).utf8)
        line.append(UInt8(ascii: "\n"))
        var sent = 0
        while sent < line.count {
            let n = line[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "cannot send: \(String(cString: strerror(errno)))")
            }
            sent += n
        }
    }

    /// The next reply line, raw.
    mutating func receiveLine() throws(Failure) -> [UInt8] {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 64 * 1024)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw Failure(description: "guidond did not answer in time") }
                throw Failure(description: "cannot receive: \(String(cString: strerror(errno)))")
            }
            if n == 0 { throw Failure(description: "guidond closed the connection") }
            buffer.append(contentsOf: chunk[..<n])
        }
    }

    /// The next reply, parsed.
    mutating func receive() throws(Failure) -> (JSONValue, [UInt8]) {
        let line = try receiveLine()
        do {
            return (try JSONParser().parse(line), line)
        } catch {
            throw Failure(description: "unreadable reply from guidond: \(error)")
        }
    }
}
