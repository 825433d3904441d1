import GuidonHTTP
import NIOCore
import NIOHTTP1
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runs `body` against a real listener on a free loopback port, and always shuts it down.
func withHTTPListener<T>(
    _ router: HTTPRouter, configure: (inout HTTPListenerConfiguration) -> Void = { _ in },
    _ body: (Int) throws -> T
) throws -> T {
    var configuration = HTTPListenerConfiguration(port: 0)
    configure(&configuration)
    let listener = HTTPListener(configuration: configuration, router: router)
    try listener.start()
    defer { listener.shutdown() }
    return try body(try #require(listener.port))
}

/// A raw TCP client: sends bytes as given, reads until the server closes or a reply is whole.
final class RawClient {
    let fd: Int32

    init(port: Int, timeoutSeconds: Int = 20) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw HTTPTestFailure("connect: \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// A client of the Unix stream socket at `unixPath`.
    init(unixPath: String, timeoutSeconds: Int = 20) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            for (i, byte) in unixPath.utf8.prefix(path.count - 1).enumerated() { path[i] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw HTTPTestFailure("connect \(unixPath): \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    /// Everything until the server closes (or the read times out: `nil`).
    func readUntilClosed() -> String? {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return String(decoding: out, as: UTF8.self) }
            // A reset (the server closed with unread bytes, or a send already met its close) is
            // a close too; only the receive timeout means it stayed open.
            if n < 0 { return errno == EAGAIN || errno == EWOULDBLOCK ? nil : String(decoding: out, as: UTF8.self) }
            out += chunk[..<n]
        }
    }

    /// One response (head and a `Content-Length` body; no body for a response to `HEAD`).
    func readResponse(toHead: Bool = false) throws -> (status: Int, headers: [String: String], body: String) {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if let end = find(out, Array("\r\n\r\n".utf8)) {
                let head = String(decoding: out[..<end], as: UTF8.self).components("\r\n")
                var headers: [String: String] = [:]
                for line in head.dropFirst() {
                    if let colon = line.firstIndex(of: ":") {
                        headers[line[..<colon].lowercased()] = String(line[line.index(after: colon)...].drop { $0 == " " })
                    }
                }
                let length = toHead ? 0 : Int(headers["content-length"] ?? "0") ?? 0
                if out.count >= end + 4 + length {
                    let status = Int(head[0].split(separator: " ")[1]) ?? 0
                    return (status, headers, String(decoding: out[(end + 4)..<(end + 4 + length)], as: UTF8.self))
                }
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw HTTPTestFailure("no whole response; got \(String(decoding: out, as: UTF8.self))") }
            out += chunk[..<n]
        }
    }

    private func find(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where Array(haystack[i..<(i + needle.count)]) == needle { return i }
        return nil
    }
}

struct HTTPTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension String {
    func components(_ separator: String) -> [String] {
        var parts: [String] = []
        var rest = Substring(self)
        while let range = rest.range(of: separator) {
            parts.append(String(rest[..<range.lowerBound]))
            rest = rest[range.upperBound...]
        }
        parts.append(String(rest))
        return parts
    }
}

extension Substring {
    func range(of text: String) -> Range<Substring.Index>? {
        var index = startIndex
        while index < endIndex {
            if self[index...].hasPrefix(text) { return index..<self.index(index, offsetBy: text.count) }
            index = self.index(after: index)
        }
        return nil
    }
}

@Suite("The HTTP listener", .serialized)
struct HTTPListenerTests {
    static var router: HTTPRouter {
        var router = HTTPRouter()
        router.on(.GET, "/metrics", sync: { _ in .text("metrics") })
        router.on(.GET, "/tagged", sync: { _ in
            var response = HTTPResponse.text("tagged body")
            response.etag = "\"v1\""
            return response
        })
        router.on(.POST, "/ofrep/v1/evaluate/flags/{key}", sync: { request in
            let body = request.body.map { String(buffer: $0) } ?? ""
            return .json(Array(#"{"key":"\#(request.parameters["key"] ?? "?")","body":\#(body.count)}"#.utf8))
        })
        return router
    }

    @Test func routesByMethodAndPath() throws {
        try withHTTPListener(Self.router) { port in
            let client = try RawClient(port: port)
            client.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            let ok = try client.readResponse()
            #expect(ok.status == 200)
            #expect(ok.body == "metrics\n")
            #expect(ok.headers["connection"] == "keep-alive")

            client.send("GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try client.readResponse().status == 404, "the connection stays usable after a 404")

            client.send("DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            let wrong = try client.readResponse()
            #expect(wrong.status == 405)
            #expect(wrong.headers["allow"] == "GET, HEAD")

            client.send("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            let head = try client.readResponse(toHead: true)
            #expect(head.status == 200 && head.headers["content-length"] == "8")
            client.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try client.readResponse().body == "metrics\n", "no body was sent for HEAD")
        }
    }

    @Test func aBodyAndPathParametersReachTheHandler() throws {
        try withHTTPListener(Self.router) { port in
            let client = try RawClient(port: port)
            let body = #"{"context":{"targetingKey":"u"}}"#
            client.send("POST /ofrep/v1/evaluate/flags/new%2Dcheckout HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            let response = try client.readResponse()
            #expect(response.status == 200)
            #expect(response.headers["content-type"] == "application/json")
            #expect(response.body == #"{"key":"new-checkout","body":32}"#)
        }
    }

    @Test func aMatchingEntityTagGetsNotModified() throws {
        try withHTTPListener(Self.router) { port in
            let client = try RawClient(port: port)
            client.send("GET /tagged HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"v0\", \"v1\"\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == 304)
            #expect(response.headers["etag"] == "\"v1\"")
            #expect(response.body.isEmpty)
            client.send("GET /tagged HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"v2\"\r\n\r\n")
            #expect(try client.readResponse().status == 200)
        }
    }

    @Test func hugeHeadersAreRefusedWith431AndTheConnectionClosed() throws {
        try withHTTPListener(Self.router) { port in
            let client = try RawClient(port: port)
            client.send("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 20_000))\r\n\r\n")
            let reply = try #require(client.readUntilClosed())
            #expect(reply.hasPrefix("HTTP/1.1 431"), "\(reply.prefix(80))")
        }
    }

    @Test func malformedRequestsGet400() throws {
        try withHTTPListener(Self.router) { port in
            let client = try RawClient(port: port)
            client.send("NOT HTTP AT ALL\r\n\r\n")
            let reply = try #require(client.readUntilClosed())
            #expect(reply.hasPrefix("HTTP/1.1 400"), "\(reply.prefix(80))")
        }
    }

    @Test func anOversizedBodyGets413() throws {
        try withHTTPListener(Self.router, configure: { $0.maxBodyBytes = 100 }) { port in
            let client = try RawClient(port: port)
            client.send("POST /ofrep/v1/evaluate/flags/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + String(repeating: "x", count: 1000))
            #expect(try client.readResponse(toHead: true).status == 413)
        }
    }

    @Test func aClientThatSendsNothingOrTricklesIsDisconnected() throws {
        try withHTTPListener(Self.router, configure: { $0.requestTimeout = .milliseconds(300) }) { port in
            let silent = try RawClient(port: port)
            let started = ContinuousClock.now
            #expect(silent.readUntilClosed() == "", "closed without a reply")
            // Well before the client's own 20 s read timeout: the listener closed it, not the test
            // (with room for a CI machine that runs every other suite at the same time).
            #expect(ContinuousClock.now - started < .seconds(10))

            let trickle = try RawClient(port: port)
            for byte in "GET /metrics HTTP/1.1\r\n".utf8.prefix(8) {
                trickle.send(String(UnicodeScalar(byte)))
                usleep(100_000)
            }
            #expect(trickle.readUntilClosed() == "")
        }
    }

    @Test func connectionsBeyondTheLimitAreClosed() throws {
        try withHTTPListener(Self.router, configure: { $0.maxConnections = 1 }) { port in
            let first = try RawClient(port: port)
            first.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try first.readResponse().status == 200)
            let second = try RawClient(port: port)
            second.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(second.readUntilClosed() == "")
        }
    }

    @Test func addressesParse() throws {
        #expect(try HTTPListenerConfiguration(listen: "9464").host == "127.0.0.1")
        #expect(try HTTPListenerConfiguration(listen: "0.0.0.0:9464") == HTTPListenerConfiguration(host: "0.0.0.0", port: 9464))
        #expect(try HTTPListenerConfiguration(listen: "[::1]:80").host == "::1")
        #expect(throws: HTTPListenerError.self) { try HTTPListenerConfiguration(listen: "localhost:http") }
        #expect(throws: HTTPListenerError.self) { try HTTPListenerConfiguration(listen: ":9464") }
        #expect(throws: HTTPListenerError.self) { try HTTPListenerConfiguration(listen: "1.2.3.4:70000") }
    }

    @Test func shutdownIsSafeTwiceAndStartOnce() throws {
        let listener = HTTPListener(configuration: HTTPListenerConfiguration(port: 0), router: Self.router)
        try listener.start()
        #expect(throws: HTTPListenerError.self) { try listener.start() }
        listener.shutdown()
        listener.shutdown()
        #expect(listener.port == nil)
    }
}
