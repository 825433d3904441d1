import Foundation
import GuidonHTTP
import NIOCore
import NIOHTTP1
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A listening TCP socket on a free loopback port, bound here as systemd would bind one.
func boundLoopbackSocket() throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound, listen(fd, 16) == 0 else {
        close(fd)
        throw HTTPTestFailure("cannot bind a loopback socket: \(String(cString: strerror(errno)))")
    }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}

/// Routes and refusals of the kind OFREP needs, and several sites on one listener.
@Suite("The HTTP listener's sites, rest-of-path parameters and refusals", .serialized)
struct HTTPSitesTests {
    static var ofrepLike: HTTPRouter {
        var router = HTTPRouter()
        router.on(.POST, "/api/flags", sync: { _ in .json(Array(#"{"all":true}"#.utf8)) })
        router.on(.POST, "/api/flags/{key...}", sync: { request in
            var body: [UInt8] = []
            body.append(contentsOf: "key=".utf8)
            body.append(contentsOf: (request.parameters["key"] ?? "?").utf8)
            return HTTPResponse(contentType: "text/plain", body: body)
        })
        router.on(.GET, "/api/fail") { _, loop in loop.makeFailedFuture(HTTPTestFailure("it broke")) }
        router.refusals(under: "/api/") { refusal, path in
            let what = switch refusal {
            case .notFound: "notFound"
            case .methodNotAllowed: "methodNotAllowed"
            case .payloadTooLarge(let limit): "tooLarge \(limit)"
            case .failed(let error): "failed \(error)"
            }
            let status: HTTPResponseStatus = switch refusal {
            case .notFound: .notFound
            case .methodNotAllowed: .methodNotAllowed
            case .payloadTooLarge: .payloadTooLarge
            case .failed: .internalServerError
            }
            return .json(Array(#"{"refused":"\#(what)","path":"\#(path)"}"#.utf8), status: status)
        }
        return router
    }

    @Test("the rest of the path is one parameter, percent-decoded, slashes and all", arguments: [
        ("/api/flags/simple", "simple"),
        ("/api/flags/a%2Fb", "a/b"),
        ("/api/flags/a/b/c", "a/b/c"),
        ("/api/flags/a//b/", "a//b/"),
        ("/api/flags/%C3%A9t%C3%A9%20x", "été x"),
        ("/api/flags/caf%C3%A9?flagConfigEtag=1", "café"),
        ("/api/flags/100%25", "100%"),
    ])
    func restOfPath(path: String, key: String) throws {
        try withHTTPListener(Self.ofrepLike) { port in
            let client = try RawClient(port: port)
            client.send("POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == 200)
            #expect(response.body == "key=\(key)")
        }
    }

    @Test func refusalsUnderAPrefixAreWordedByItsWriterAndElsewhereAsText() throws {
        try withHTTPListener(Self.ofrepLike, configure: { $0.maxBodyBytes = 64 }) { port in
            let client = try RawClient(port: port)
            client.send("POST /api/nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            let missing = try client.readResponse()
            #expect(missing.status == 404)
            #expect(missing.body == #"{"refused":"notFound","path":"/api/nothing"}"#)
            #expect(missing.headers["content-type"] == "application/json")

            client.send("GET /api/flags/x HTTP/1.1\r\nHost: x\r\n\r\n")
            let method = try client.readResponse()
            #expect(method.status == 405)
            #expect(method.headers["allow"] == "POST")
            #expect(method.body.contains("methodNotAllowed"))

            client.send("GET /api/fail HTTP/1.1\r\nHost: x\r\n\r\n")
            let failed = try client.readResponse()
            #expect(failed.status == 500)
            #expect(failed.body.contains("failed it broke"))

            client.send("GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n")
            let text = try client.readResponse()
            #expect(text.status == 404)
            #expect(text.body == "404 Not Found: no resource at /elsewhere\n")

            let body = String(repeating: "x", count: 100)
            client.send("POST /api/flags/k HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\n\r\n\(body)")
            let large = try client.readResponse()
            #expect(large.status == 413)
            #expect(large.body == #"{"refused":"tooLarge 64","path":"/api/flags/k"}"#)
            #expect(large.headers["content-type"] == "application/json")
        }
    }

    @Test func weakTagsMatchAndA304HasNoLength() throws {
        var router = HTTPRouter()
        router.on(.GET, "/t", sync: { _ in
            var response = HTTPResponse.text("body")
            response.etag = "\"abc\""
            return response
        })
        try withHTTPListener(router) { port in
            let client = try RawClient(port: port)
            client.send("GET /t HTTP/1.1\r\nHost: x\r\nIf-None-Match: W/\"abc\"\r\n\r\n")
            let response = try client.readResponse(toHead: true)
            #expect(response.status == 304)
            #expect(response.headers["content-length"] == nil)
            #expect(response.headers["etag"] == "\"abc\"")
            client.send("GET /t HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"abd\"\r\nIf-None-Match: \"zzz\"\r\n\r\n")
            #expect(try client.readResponse().status == 200)
        }
    }

    @Test func sitesOnATCPPortAUnixSocketAndAnAdoptedSocketShareOneThread() throws {
        var metrics = HTTPRouter()
        metrics.on(.GET, "/metrics", sync: { _ in .text("metrics") })
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("guidon-http-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("ofrep.sock").path
        let adopted = try boundLoopbackSocket()

        let listener = HTTPListener(sites: [
            .init(configuration: HTTPListenerConfiguration(port: 0), router: metrics),
            .init(configuration: HTTPListenerConfiguration(endpoint: .unix(path: path)), router: Self.ofrepLike),
            .init(configuration: HTTPListenerConfiguration(endpoint: .socket(descriptor: adopted.fd, name: "test")), router: Self.ofrepLike),
        ])
        try listener.start()
        defer { listener.shutdown() }
        let ports = listener.ports
        #expect(ports.count == 3 && ports[1] == nil && ports[2] == adopted.port)

        let tcp = try RawClient(port: try #require(ports[0]))
        tcp.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try tcp.readResponse().body == "metrics\n")
        tcp.send("POST /api/flags HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        #expect(try tcp.readResponse().status == 404, "each site has its own router")

        let unix = try RawClient(unixPath: path)
        unix.send("POST /api/flags/u HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        #expect(try unix.readResponse().body == "key=u")

        let inherited = try RawClient(port: adopted.port)
        inherited.send("POST /api/flags/i HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        #expect(try inherited.readResponse().body == "key=i")

        // `execute` runs on the one thread every handler runs on.
        let ran = DispatchSemaphore(value: 0)
        listener.execute { ran.signal() }
        #expect(ran.wait(timeout: .now() + 20) == .success)

        listener.shutdown()
        #expect(fcntl(adopted.fd, F_GETFD) == -1, "the adopted socket is closed at shutdown")
    }

    @Test func aSiteThatCannotBindStopsTheOthers() throws {
        let taken = try boundLoopbackSocket()
        defer { close(taken.fd) }
        let listener = HTTPListener(sites: [
            .init(configuration: HTTPListenerConfiguration(port: 0), router: Self.ofrepLike),
            .init(configuration: HTTPListenerConfiguration(port: taken.port), router: Self.ofrepLike),
        ])
        let error = #expect(throws: HTTPListenerError.self) { try listener.start() }
        #expect(error?.code == .cannotBind)
        #expect(error?.message.contains("127.0.0.1:\(taken.port)") == true)
        #expect(listener.ports.isEmpty)
    }

    @Test func unixSocketPathsParse() throws {
        #expect(try HTTPListenerConfiguration(listen: "/run/guidon/ofrep.sock").endpoint == .unix(path: "/run/guidon/ofrep.sock"))
        #expect(try HTTPListenerConfiguration(listen: "./ofrep.sock").endpoint == .unix(path: "./ofrep.sock"))
        #expect(try HTTPListenerConfiguration(listen: "127.0.0.1:8016").endpoint == .tcp(host: "127.0.0.1", port: 8016))
        #expect(throws: HTTPListenerError.self) { try HTTPListenerConfiguration(listen: "/" + String(repeating: "a", count: 200)) }
    }
}
