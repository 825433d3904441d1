import Foundation
import GuidonJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `promtool`, from Debian's `prometheus` package (`GUIDON_TEST_DEPS=1 bash .ci/deps`).
func promtoolPath() throws -> String {
    for path in ["/usr/bin/promtool", "/usr/local/bin/promtool"] where FileManager.default.isExecutableFile(atPath: path) {
        return path
    }
    throw TestFailure("promtool is not installed (GUIDON_TEST_DEPS=1 bash .ci/deps installs Debian's prometheus package)")
}

/// Runs `promtool check metrics` on `text`; returns its exit status and output.
func promtoolCheckMetrics(_ text: String) throws -> (Int32, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try promtoolPath())
    process.arguments = ["check", "metrics"]
    let input = Pipe()
    let output = Pipe()
    process.standardInput = input
    process.standardOutput = output
    process.standardError = output
    try process.run()
    input.fileHandleForWriting.write(Data(text.utf8))
    try input.fileHandleForWriting.close()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`): status, headers, body.
func httpRequest(port: Int, _ head: String) throws -> (status: Int, headers: [String: String], body: String) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw TestFailure("connect to port \(port): \(String(cString: strerror(errno)))") }
    var tv = timeval(tv_sec: 15, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let request = Array(head.utf8)
    _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var reply: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        reply += chunk[..<n]
    }
    let text = String(decoding: reply, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw TestFailure("no HTTP response: \(text.prefix(200))") }
    let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        if let colon = line.firstIndex(of: ":") {
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
    }
    let status = Int(lines[0].split(separator: " ")[1]) ?? 0
    return (status, headers, String(text[split.upperBound...]))
}

extension RunningDaemon {
    /// The port of `--metrics-listen …:0`, from the daemon's log.
    func metricsPort() throws -> Int {
        var port: Int?
        try waitFor("the HTTP listener") {
            if let range = process.log.range(of: #"on http://127\.0\.0\.1:[0-9]+"#, options: .regularExpression) {
                port = Int(process.log[range].split(separator: ":").last!)
            }
            return port != nil
        }
        return port!
    }
}

@Suite("Observability through a real guidond", .serialized)
struct ObservabilityIntegrationTests {
    @Test func metricsOverHTTPAndTheSocketPassPromtool() throws {
        let daemon = try RunningDaemon(flags: bundledExampleFlags, extraArguments: ["--metrics-listen", "127.0.0.1:0"])
        defer { try? daemon.finish() }
        let client = try daemon.client()
        _ = try client.request(#"{"op":"eval","flag":"new-checkout","context":{"targetingKey":"u","tier":"gold"}}"#)
        _ = try client.request(#"{"op":"eval","flag":"no-such-flag"}"#)
        _ = try client.request(#"{"op":"nope"}"#)
        let port = try daemon.metricsPort()

        let metrics = try httpRequest(port: port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
        #expect(metrics.body.contains(#"guidon_evaluations_total{flag="new-checkout",variant="on",reason="targeting_match"} 1"#))
        #expect(metrics.body.contains(#"guidon_evaluation_errors_total{error_type="flag_not_found"} 1"#))
        #expect(metrics.body.contains(#"guidon_request_errors_total{error_type="unknown_op"} 1"#))
        #expect(metrics.body.contains(#"guidon_flags{state="enabled"} 9"#))
        #expect(metrics.body.contains(#"guidon_build_info{version="0.1.0"} 1"#))
        let (status, output) = try promtoolCheckMetrics(metrics.body)
        #expect(status == 0, "promtool: \(output)")

        let cli = try runGuidon(["metrics", "--socket", daemon.socketPath])
        #expect(cli.status == 0)
        #expect(cli.output.contains("# TYPE guidon_request_duration_seconds histogram"))
        let (cliStatus, cliOutput) = try promtoolCheckMetrics(cli.output)
        #expect(cliStatus == 0, "promtool: \(cliOutput)")

        let health = try httpRequest(port: port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(health.status == 200)
        #expect(health.body.hasPrefix("ok: serving 10 flags"))
    }

    @Test func theHTTPListenerRefusesBadInput() throws {
        let daemon = try RunningDaemon(flags: bundledExampleFlags, extraArguments: ["--metrics-listen", "127.0.0.1:0"])
        defer { try? daemon.finish() }
        let port = try daemon.metricsPort()
        #expect(try httpRequest(port: port, "GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status == 404)
        let post = try httpRequest(port: port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        #expect(post.status == 405)
        #expect(post.headers["allow"] == "GET, HEAD")
        let huge = try httpRequest(port: port, "GET /metrics HTTP/1.1\r\nHost: x\r\nCookie: \(String(repeating: "c", count: 64 * 1024))\r\n\r\n")
        #expect(huge.status == 431)
        // The daemon still answers, on both sides.
        #expect(try httpRequest(port: port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status == 200)
        #expect(try daemon.client().request(#"{"op":"ping"}"#)["ok"] == true)
    }

    @Test func connectionsAndReloadsAreCountedByResult() throws {
        let daemon = try RunningDaemon(flags: bundledExampleFlags)
        defer { try? daemon.finish() }
        let others = try (0..<3).map { _ in try daemon.client() }
        for client in others { _ = try client.request(#"{"op":"ping"}"#) }
        let asking = try daemon.client()
        func stats() throws -> JSONObject { try asking.request(#"{"op":"stats"}"#) }
        #expect(try stats()["connections"] == 4)
        let started = try #require(try stats()["reloads"]?.object?["lastSuccessAt"]?.string)

        sleep(1)  // a later second for the next success
        try daemon.dir.write("flags.json", "{ not json")
        try daemon.waitFor("a failed reload") { try stats()["reloads"]?.object?["failed"] == 1 }
        try daemon.dir.write("flags.json", bundledExampleFlags)
        try daemon.waitFor("the unchanged file reloaded") { try stats()["reloads"]?.object?["unchanged"] == 1 }
        try daemon.dir.write("flags.json", #"{"flags":{"only":{"state":"ENABLED","variants":{"v":1},"defaultVariant":"v"}}}"#)
        try daemon.waitFor("a changed file reloaded") { try stats()["reloads"]?.object?["ok"] == 1 }
        let reloads = try #require(try stats()["reloads"]?.object)
        #expect(reloads["failed"] == 1)
        #expect(try #require(reloads["lastSuccessAt"]?.string) > started)
        let text = try #require(try asking.request(#"{"op":"metrics"}"#)["text"]?.string)
        #expect(text.contains(#"guidon_config_reloads_total{result="ok"} 1"#))
        #expect(text.contains(#"guidon_flags{state="enabled"} 1"#))
    }

    @Test func guidonStatsShowsTheBusiestFlagsAndRates() throws {
        let daemon = try RunningDaemon(flags: bundledExampleFlags)
        defer { try? daemon.finish() }
        let client = try daemon.client()
        for i in 0..<40 {
            _ = try client.request(#"{"op":"eval","flag":"new-checkout","context":{"targetingKey":"u\#(i)","tier":"\#(i % 4 == 0 ? "gold" : "basic")"}}"#)
        }
        _ = try client.request(#"{"op":"eval","flag":"theme"}"#)
        let stats = try runGuidon(["stats", "--socket", daemon.socketPath])
        #expect(stats.status == 0)
        let lines = stats.output.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("requests     ") && $0.contains("(eval 41, ping ") && $0.hasSuffix("stats 1)") }, "\(stats.output)")
        let busiest = try #require(lines.first { $0.hasPrefix("new-checkout") }, "\(stats.output)")
        #expect(busiest.contains("off 75.0 % ███████▌"))
        #expect(busiest.contains("on 25.0 % ██▌"))
        #expect(lines.firstIndex { $0.hasPrefix("new-checkout") }! < lines.firstIndex { $0.hasPrefix("theme") }!)

        let interval = try runGuidon(["stats", "--socket", daemon.socketPath, "--interval", "0.2"])
        #expect(interval.status == 0)
        #expect(interval.output.contains("over the last 0.2 s"))
        #expect(interval.output.contains("evaluations  0/s"), "\(interval.output)")

        let json = try runGuidon(["stats", "--json", "--socket", daemon.socketPath])
        let reply = try #require(try JSONParser().parse(Array(json.output.utf8.dropLast())).object)
        #expect(reply["evaluations"]?.object?["total"] == 41)
    }

    @Test func noMetricsCountsNothing() throws {
        let daemon = try RunningDaemon(flags: bundledExampleFlags, extraArguments: ["--no-metrics"])
        defer { try? daemon.finish() }
        let client = try daemon.client()
        _ = try client.request(#"{"op":"eval","flag":"theme"}"#)
        let stats = try client.request(#"{"op":"stats"}"#)
        #expect(stats["counting"] == false)
        #expect(stats["requests"]?.object?["eval"] == 0)
        #expect(stats["connections"] == 1)
    }

    @Test func exposureEventsAreWrittenDeduplicatedAndRotated() throws {
        let flags = #"{"flags":{"exp":{"state":"ENABLED","variants":{"a":1,"b":2},"defaultVariant":"a","metadata":{"trackEvents":true},"targeting":{"fractional":[["a",50],["b",50]]}}}}"#
        let dir = try ScratchDirectory()
        let events = dir.file("events.jsonl")
        let daemon = try RunningDaemon(
            flags: flags, extraArguments: ["--events", events, "--events-max-bytes", "4096", "--events-keep", "2"], dir: dir)
        defer { try? daemon.finish() }
        let client = try daemon.client()
        var batch = ""
        for user in 0..<200 {
            for _ in 0..<3 { batch += #"{"op":"eval","flag":"exp","context":{"targetingKey":"user-\#(user)"}}"# + "\n" }
        }
        try client.send(batch)
        for _ in 0..<600 { _ = try client.readReply() }
        try daemon.waitFor("200 events written") {
            try client.request(#"{"op":"stats"}"#)["exposureEvents"]?.object?["written"] == 200
        }
        let stats = try client.request(#"{"op":"stats"}"#)
        #expect(stats["exposureEvents"]?.object?["deduplicated"] == 400)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("events.jsonl") }.sorted()
        #expect(names == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"])
        for name in names {
            let text = try String(contentsOfFile: dir.file(name), encoding: .utf8)
            #expect(text.utf8.count <= 4096)
            for line in text.split(separator: "\n") {
                let event = try #require(try JSONParser().parse(Array(line.utf8)).object)
                #expect(event["feature_flag.key"] == "exp")
                #expect(event["feature_flag.context.id"]?.string?.hasPrefix("user-") == true)
            }
        }
    }
}
