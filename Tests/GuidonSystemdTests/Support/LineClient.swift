import Foundation
import GuidonUnixSocket

#if canImport(Glibc)
import Glibc
#endif

/// A client of guidond's newline-delimited JSON protocol over a Unix stream socket.
final class LineClient {
    private let fd: Int32
    private var buffer: [UInt8] = []

    /// Connects to `path`. A socket-activated listener accepts the connection into its backlog even
    /// while no daemon runs, so this succeeds before the daemon exists.
    init(path: String) throws {
        fd = UnixSocket.stream()
        guard fd >= 0 else { throw HarnessError("socket(): \(String(cString: strerror(errno)))") }
        guard UnixSocket.connect(fd, to: path) == 0 else {
            let reason = String(cString: strerror(errno))
            // No close here: an initializer that throws once every property is set runs
            // `deinit`, which closes it. Closing it here too closed whatever a test opened next
            // under the same number.
            throw HarnessError("connect(\(path)): \(reason)")
        }
    }

    deinit { close(fd) }

    func send(_ line: String) throws {
        var bytes = Array((line + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            guard written > 0 else { throw HarnessError("write(): \(String(cString: strerror(errno)))") }
            offset += written
        }
    }

    /// The next reply line, waiting at most `timeout`.
    func receive(timeout: Duration = .seconds(20)) throws -> String {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            let left = deadline - clock.now
            guard left > .zero else { throw HarnessError("no reply within \(timeout)") }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let millis = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            let ready = poll(&pfd, 1, millis)
            if ready < 0 && errno == EINTR { continue }
            guard ready >= 0 else { throw HarnessError("poll(): \(String(cString: strerror(errno)))") }
            if ready == 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else {
                throw HarnessError(count == 0 ? "connection closed before a reply" : "read(): \(String(cString: strerror(errno)))")
            }
            buffer += chunk[..<count]
        }
    }

    /// Sends one request and decodes its reply as a JSON object.
    func request(_ json: String, timeout: Duration = .seconds(20)) throws -> [String: Any] {
        try send(json)
        let line = try receive(timeout: timeout)
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw HarnessError("reply is not a JSON object: \(line)")
        }
        return object
    }
}

extension LineClient {
    /// One-shot request on a fresh connection.
    static func request(_ json: String, path: String, timeout: Duration = .seconds(20)) throws -> [String: Any] {
        try LineClient(path: path).request(json, timeout: timeout)
    }
}
