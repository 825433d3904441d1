import Foundation
import GuidonUnixSocket
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// A Unix socket that accepts connections and answers each request line with `answer(line)`
/// (nothing when it returns nil): a daemon that hangs, or one that speaks garbage.
final class FakeDaemon: Sendable {
    let socket: String
    private let directory: String
    private let listener: Int32
    private let stopped = NIOLockedValueBox(false)
    private let accepted = NIOLockedValueBox(0)
    private let done = DispatchSemaphore(value: 0)

    init(answer: @escaping @Sendable (String) -> String? = { _ in nil }) throws {
        directory = try makeScratchDirectory()
        socket = directory + "/fake.sock"
        listener = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listener >= 0, UnixSocket.bind(listener, to: socket) == 0, listen(listener, 64) == 0 else {
            throw TestFailure("fake daemon on \(socket): \(String(cString: strerror(errno)))")
        }
        let listener = listener, stopped = stopped, accepted = accepted, done = done
        let thread = Thread {
            Self.serve(listener: listener, stopped: stopped, accepted: accepted, answer: answer)
            done.signal()
        }
        thread.start()
    }

    /// Connections accepted so far.
    var connections: Int { accepted.withLockedValue { $0 } }

    func stop() {
        guard !stopped.withLockedValue({ let was = $0; $0 = true; return was }) else { return }
        done.wait()
        close(listener)
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit { stop() }

    private static func serve(
        listener: Int32, stopped: NIOLockedValueBox<Bool>, accepted: NIOLockedValueBox<Int>,
        answer: @Sendable (String) -> String?
    ) {
        var clients: [(fd: Int32, buffer: [UInt8])] = []
        defer { for client in clients { close(client.fd) } }
        while !stopped.withLockedValue({ $0 }) {
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            fds += clients.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            guard poll(&fds, nfds_t(fds.count), 20) > 0 else { continue }
            let polled = clients.count
            if fds[0].revents != 0 {
                let fd = accept(listener, nil, nil)
                if fd >= 0 {
                    clients.append((fd, []))
                    accepted.withLockedValue { $0 += 1 }
                }
            }
            var closed: Set<Int32> = []
            for i in 0..<polled where fds[i + 1].revents != 0 {
                var chunk = [UInt8](repeating: 0, count: 65536)
                let n = chunk.withUnsafeMutableBytes { recv(clients[i].fd, $0.baseAddress, $0.count, 0) }
                guard n > 0 else {
                    closed.insert(clients[i].fd)
                    continue
                }
                clients[i].buffer += chunk[..<n]
                while let newline = clients[i].buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: clients[i].buffer[..<newline], as: UTF8.self)
                    clients[i].buffer.removeSubrange(...newline)
                    if let reply = answer(line) {
                        let bytes = Array(reply.utf8)
                        _ = bytes.withUnsafeBytes { send(clients[i].fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    }
                }
            }
            for fd in closed { close(fd) }
            clients.removeAll { closed.contains($0.fd) }
        }
    }
}
