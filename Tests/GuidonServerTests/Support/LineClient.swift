import GuidonJSON
import GuidonUnixSocket
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A blocking test client for the daemon's socket; every read times out after 15 s.
final class LineClient {
    private(set) var fd: Int32
    private var buffer: [UInt8] = []

    init(path: String, timeoutSeconds: Int = 15) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket failed") }
        guard connectUnix(fd, path) == 0 else {
            let reason = String(cString: strerror(errno))
            // No close here: an initializer that throws once every property is set runs
            // `deinit`, which closes it. Closing it here too closed whatever a test opened next
            // under the same number.
            throw TestFailure("connect \(path): \(reason)")
        }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// A client on a socket that is already connected (one end of a `socketpair`).
    init(connected fd: Int32, timeoutSeconds: Int = 15) {
        self.fd = fd
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { disconnect() }

    /// Tells the other side that nothing more will be sent (it may still reply).
    func finishSending() {
        shutdown(fd, Int32(SHUT_WR))
    }

    func disconnect() {
        if fd >= 0 { close(fd) }
        fd = -1
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestFailure("send: \(String(cString: strerror(errno)))") }
            sent += n
        }
    }

    /// The next line, or nil at end of stream.
    func readLine() throws -> [UInt8]? {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return nil }
            if n < 0 {
                if errno == EINTR { continue }
                throw TestFailure("recv: \(String(cString: strerror(errno)))")
            }
            buffer.append(contentsOf: chunk[..<n])
        }
    }

    func readReply() throws -> JSONObject {
        guard let line = try readLine() else { throw TestFailure("connection closed before a reply") }
        guard case .object(let object) = try JSONParser(duplicateKeys: .reject).parse(line) else {
            throw TestFailure("reply is not an object: \(String(decoding: line, as: UTF8.self))")
        }
        return object
    }

    /// Sends one line and reads one reply.
    func request(_ line: String) throws -> JSONObject {
        try send(line + "\n")
        return try readReply()
    }

    /// Whether the daemon closed the connection (EOF) with nothing more to read.
    func isClosedByPeer() throws -> Bool {
        try readLine() == nil
    }
}

func connectUnix(_ fd: Int32, _ path: String) -> Int32 {
    UnixSocket.connect(fd, to: path)
}

func bindUnix(_ fd: Int32, _ path: String) -> Int32 {
    UnixSocket.bind(fd, to: path)
}
