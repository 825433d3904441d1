import ArgumentParser

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The floor: the cheapest server that speaks the same framing. One thread per connection;
/// for every request line it reads it writes one fixed reply line, with no parsing at all.
struct EchoServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "echo-server",
        abstract: "Serve a fixed reply line per request line on a Unix socket (the benchmark floor).",
        shouldDisplay: false
    )

    @Option(help: "The Unix socket to listen on.")
    var socket: String

    @Option(help: "The reply line, without its newline.")
    var reply: String = #"{"value":true,"variant":"on","reason":"STATIC"}"#

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        try Self.acceptLoop(listenUnix(socket), reply: reply)
    }

    /// Accepts connections until `listener` is shut down, serving each on its own thread.
    static func acceptLoop(_ listener: Int32, reply: String) throws {
        let line = Array((reply + "\n").utf8)
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                throw SystemError("accept")
            }
            PosixThread.detach { Self.serve(fd, reply: line) }
        }
    }

    private static func serve(_ fd: Int32, reply: [UInt8]) {
        defer { close(fd) }
        // Replies for up to 64 requests, ready to go out in one write.
        var replies: [UInt8] = []
        for _ in 0..<64 { replies += reply }
        let capacity = 64 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        defer { buffer.deallocate() }
        replies.withUnsafeBytes { replies in
            while true {
                let n = recv(fd, buffer, capacity, 0)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                var requests = 0
                var p = UnsafeRawPointer(buffer)
                let end = p + n
                while p < end, let newline = memchr(p, 0x0A, end - p) {
                    requests += 1
                    p = UnsafeRawPointer(newline) + 1
                }
                while requests > 0 {
                    let batch = min(requests, 64)
                    guard (try? sendAll(fd, UnsafeRawBufferPointer(rebasing: replies[0..<(batch * reply.count)]))) != nil else {
                        return
                    }
                    requests -= batch
                }
            }
        }
    }
}
