import Foundation
import GuidonEngine
import GuidonHTTP
import GuidonJSON
import GuidonMetrics
@testable import GuidonServer
import GuidonSystemd
import GuidonUnixSocket
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Where an HTTP test request goes.
enum HTTPTarget {
    case port(Int)
    case unix(String)
}

/// One HTTP/1.1 request (`Connection: close`) with a body; status, headers (lower-cased), body.
func http(
    _ target: HTTPTarget, _ method: String, _ path: String, body: String? = nil,
    headers: [String: String] = ["Content-Type": "application/json"]
) throws -> (status: Int, headers: [String: String], body: String) {
    switch target {
    case .port(let port):
        return try httpRequest(port: port, head(method, path, body, headers))
    case .unix(let socketPath):
        let fd = UnixSocket.stream()
        defer { close(fd) }
        guard fd >= 0, UnixSocket.connect(fd, to: socketPath) == 0 else {
            throw TestFailure("connect \(socketPath): \(String(cString: strerror(errno)))")
        }
        var tv = timeval(tv_sec: 15, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let request = Array(head(method, path, body, headers).utf8)
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
        var fields: [String: String] = [:]
        for line in lines.dropFirst() {
            if let colon = line.firstIndex(of: ":") {
                fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return (Int(lines[0].split(separator: " ")[1]) ?? 0, fields, String(text[split.upperBound...]))
    }
}

private func head(_ method: String, _ path: String, _ body: String?, _ headers: [String: String]) -> String {
    var text = "\(method) \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    for (name, value) in headers { text += "\(name): \(value)\r\n" }
    if let body { text += "Content-Length: \(body.utf8.count)\r\n\r\n\(body)" } else { text += "\r\n" }
    return text
}

func jsonObject(_ text: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not a JSON object: \(text)")
}

/// OFREP on a live listener in this process, answering from a `ConfigStore` with the counters of
/// an `Observability` (`HTTPFront` exactly as the daemon starts it).
final class OFREPHarness {
    let counting: CountingHarness
    let front: HTTPFront
    let port: Int

    init(events: ExposureEventsConfiguration? = nil) throws {
        counting = try CountingHarness(events: events)
        var logged: [String] = []
        let handler = LogCapture()
        let plan = HTTPPlan(metrics: nil, ofrep: HTTPListenerConfiguration(port: 0), inherited: [])
        front = try #require(try HTTPFront.start(
            plan, service: counting.service, loops: [counting.loop], observability: counting.observability,
            logger: Logger(label: "test", factory: { _ in handler })))
        logged = handler.messages
        let line = try #require(logged.first { $0.hasPrefix("serving OFREP on http://127.0.0.1:") }, "\(logged)")
        port = try #require(Int(line.split(separator: ":").last!))
    }

    deinit { front.shutdown() }

    func post(_ path: String, _ body: String, headers: [String: String] = ["Content-Type": "application/json"]) throws
        -> (status: Int, headers: [String: String], body: String)
    {
        try http(.port(port), "POST", path, body: body, headers: headers)
    }
}

/// Collects log messages.
final class LogCapture: LogHandler, @unchecked Sendable {
    private let box = NSLock()
    private var lines: [String] = []
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    var messages: [String] { box.withLock { lines } }
    func log(event: LogEvent) {
        box.withLock { lines.append("\(event.message)") }
    }
}

@Suite("OFREP in process: the served configuration through the HTTP listener", .serialized)
struct OFREPInProcessTests {
    @Test func oneFlagAnswersFromTheServedConfigurationAndIsCounted() throws {
        let h = try OFREPHarness()
        let gold = try h.post("/ofrep/v1/evaluate/flags/gate", #"{"context":{"targetingKey":"u","tier":"gold"}}"#)
        #expect(gold.status == 200)
        #expect(gold.headers["content-type"] == "application/json")
        #expect(gold.body == #"{"key":"gate","value":true,"reason":"TARGETING_MATCH","variant":"on","metadata":{}}"#)
        let killed = try h.post("/ofrep/v1/evaluate/flags/killed", "{}")
        #expect(killed.body == #"{"key":"killed","reason":"DISABLED","variant":null,"metadata":{}}"#)
        let missing = try h.post("/ofrep/v1/evaluate/flags/nope", "{}")
        #expect(missing.status == 404)
        #expect(try jsonObject(missing.body)["errorCode"] as? String == "FLAG_NOT_FOUND")

        // Counted on the listener's own counters: evaluations like the socket's, and OFREP's families.
        #expect(h.counting.evaluations("gate", "on", .targetingMatch) == 1)
        #expect(h.counting.evaluations("killed", "", .disabled) == 1)
        #expect(h.counting.counts(MetricTable.evaluationErrors)["flag_not_found"] == 1)
        #expect(h.counting.counts(MetricTable.ofrepRequests) == ["flag": 3, "bulk": 0, "other": 0])
        #expect(h.counting.counts(MetricTable.ofrepResponses)["200"] == 2)
        #expect(h.counting.counts(MetricTable.ofrepResponses)["404"] == 1)
        #expect(h.counting.counts(MetricTable.requests).values.reduce(0, +) == 0, "the socket's request counters are not OFREP's")
    }

    @Test func theBulkETagAnswers304UntilTheConfigurationOrTheContextChanges() throws {
        let h = try OFREPHarness()
        let body = #"{"context":{"targetingKey":"u","tier":"gold"}}"#
        let first = try h.post("/ofrep/v1/evaluate/flags", body)
        #expect(first.status == 200)
        let etag = try #require(first.headers["etag"])
        #expect(etag.hasPrefix("\"v1-"))
        let flags = try #require(try jsonObject(first.body)["flags"] as? [[String: Any]])
        #expect(flags.map { $0["key"] as? String } == ["gate", "exp", "killed"])

        let cached = try h.post("/ofrep/v1/evaluate/flags", body, headers: ["Content-Type": "application/json", "If-None-Match": etag])
        #expect(cached.status == 304)
        #expect(cached.body.isEmpty)
        #expect(cached.headers["etag"] == etag)
        let otherContext = try h.post(
            "/ofrep/v1/evaluate/flags", #"{"context":{"targetingKey":"w"}}"#, headers: ["Content-Type": "application/json", "If-None-Match": etag])
        #expect(otherContext.status == 200)

        // A new configuration is published: the OFREP thread answers from it, with a new tag.
        let changed = countedFlags.replacingOccurrences(of: #""killed":{"state":"DISABLED""#, with: #""killed":{"state":"ENABLED""#)
        h.counting.store.publish(ServedConfig(snapshot: try Snapshot.compile(json: Array(changed.utf8)), version: "v2", loadedAt: 2_000))
        let after = try h.post("/ofrep/v1/evaluate/flags", body, headers: ["Content-Type": "application/json", "If-None-Match": etag])
        #expect(after.status == 200)
        #expect(after.headers["etag"]?.hasPrefix("\"v2-") == true)
        #expect(after.body.contains(#"{"key":"killed","value":true,"reason":"STATIC","variant":"on""#))
        #expect(h.counting.counts(MetricTable.ofrepResponses)["304"] == 1)
        #expect(h.counting.counts(MetricTable.ofrepRequests)["bulk"] == 4)
    }

    @Test func badInputIsRefusedInOFREPsShapesAndCounted() throws {
        let h = try OFREPHarness()
        let malformed = try h.post("/ofrep/v1/evaluate/flags/gate", #"{"context":{"tier":}}"#)
        #expect(malformed.status == 400)
        let parse = try jsonObject(malformed.body)
        #expect(parse["key"] as? String == "gate")
        #expect(parse["errorCode"] as? String == "PARSE_ERROR")
        #expect((parse["errorDetails"] as? String)?.contains("column 20") == true, "\(parse)")
        let notObject = try h.post("/ofrep/v1/evaluate/flags", #"{"context":["u"]}"#)
        #expect(notObject.status == 400)
        #expect(try jsonObject(notObject.body) as NSDictionary == [
            "errorCode": "INVALID_CONTEXT", "errorDetails": "\"context\" must be an object of attributes, not array",
        ])
        let form = try h.post("/ofrep/v1/evaluate/flags/gate", "context=1", headers: ["Content-Type": "application/x-www-form-urlencoded"])
        #expect(form.status == 400)
        let tooLarge = try h.post("/ofrep/v1/evaluate/flags/gate", "{\"context\":{\"x\":\"\(String(repeating: "a", count: 70_000))\"}}")
        #expect(tooLarge.status == 413)
        #expect(try jsonObject(tooLarge.body)["errorDetails"] as? String == "the request body exceeds the limit of 65536 bytes; the connection is closed")
        let get = try http(.port(h.port), "GET", "/ofrep/v1/evaluate/flags")
        #expect(get.status == 405)
        #expect(get.headers["allow"] == "POST")
        let nowhere = try h.post("/ofrep/v1/flags", "{}")
        #expect(nowhere.status == 404)
        #expect(try jsonObject(nowhere.body).keys.sorted() == ["errorDetails"])
        let metricsHere = try http(.port(h.port), "GET", "/metrics")
        #expect(metricsHere.status == 404, "an OFREP-only site does not serve /metrics")
        #expect(h.counting.counts(MetricTable.ofrepResponses) == ["200": 0, "304": 0, "400": 3, "404": 1, "405": 1, "413": 1, "500": 0])
        #expect(h.counting.counts(MetricTable.ofrepRequests) == ["flag": 2, "bulk": 1, "other": 2])
    }

    @Test func keysArePercentDecodedAndMayHoldSlashes() throws {
        let flags = #"{"flags":{"team/a é":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on"}}}"#
        let h = try OFREPHarness()
        h.counting.store.publish(ServedConfig(snapshot: try Snapshot.compile(json: Array(flags.utf8)), version: "v3", loadedAt: 3_000))
        for path in ["team%2Fa%20%C3%A9", "team/a%20%C3%A9"] {
            let reply = try h.post("/ofrep/v1/evaluate/flags/\(path)", "{}")
            #expect(reply.status == 200, "\(path): \(reply.body)")
            #expect(try jsonObject(reply.body)["key"] as? String == "team/a é")
        }
    }

    @Test func ofrepEvaluationsOfTrackedFlagsWriteExposureEvents() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let h = try OFREPHarness(events: ExposureEventsConfiguration(path: dir.file("events.jsonl"), flushInterval: .milliseconds(20)))
        #expect(try h.post("/ofrep/v1/evaluate/flags/exp", #"{"context":{"targetingKey":"ofrep-user","tenantId":"t-9","tier":"gold"}}"#).status == 200)
        let deadline = ContinuousClock.now + .seconds(20)
        var text = ""
        while ContinuousClock.now < deadline {
            text = (try? String(contentsOfFile: dir.file("events.jsonl"), encoding: .utf8)) ?? ""
            if !text.isEmpty { break }
            usleep(20_000)
        }
        let event = try jsonObject(try #require(text.split(separator: "\n").first.map(String.init)))
        #expect(event["feature_flag.key"] as? String == "exp")
        #expect(event["feature_flag.result.variant"] as? String == "b")
        #expect(event["feature_flag.context.id"] as? String == "ofrep-user")
        #expect(event["guidon.tenant.id"] as? String == "t-9")
    }
}

@Suite("Where guidond serves HTTP: flags and the sockets systemd passes")
struct HTTPPlanTests {
    static func socket(_ fd: Int32, _ name: String, stream: Bool = true) -> InheritedSocket {
        InheritedSocket(fileDescriptor: fd, name: name, isUnixStreamListener: false, isStreamListener: stream)
    }

    @Test func theSameAddressIsOneSiteAndDifferentAddressesTwo() throws {
        let shared = HTTPPlan(
            metrics: try HTTPListenerConfiguration(listen: "127.0.0.1:9464"), ofrep: try HTTPListenerConfiguration(listen: "127.0.0.1:9464"),
            inherited: [])
        #expect(shared.sites == [.init(configuration: try HTTPListenerConfiguration(listen: "127.0.0.1:9464"), services: [.metrics, .ofrep])])
        let apart = HTTPPlan(
            metrics: try HTTPListenerConfiguration(listen: "9464"), ofrep: try HTTPListenerConfiguration(listen: "/run/guidon/ofrep.sock"),
            inherited: [])
        #expect(apart.sites.map(\.services) == [.metrics, .ofrep])
        #expect(apart.sites.map(\.configuration.endpoint) == [.tcp(host: "127.0.0.1", port: 9464), .unix(path: "/run/guidon/ofrep.sock")])
        #expect(HTTPPlan(metrics: nil, ofrep: nil, inherited: []).sites.isEmpty)
    }

    @Test func socketsSystemdPassesServeByTheirNameAndReplaceTheFlagsAddresses() throws {
        let plan = HTTPPlan(
            metrics: try HTTPListenerConfiguration(listen: "127.0.0.1:9464"), ofrep: nil,
            inherited: [Self.socket(3, "query"), Self.socket(4, "ofrep"), Self.socket(5, "metrics")])
        #expect(plan.sites.map(\.configuration.endpoint) == [.socket(descriptor: 4, name: "ofrep"), .socket(descriptor: 5, name: "metrics")])
        #expect(plan.sites.map(\.services) == [.ofrep, .metrics])
        #expect(plan.notes == ["--metrics-listen 127.0.0.1:9464 is not bound: /metrics is served on the socket systemd passed"])

        let http = HTTPPlan(metrics: nil, ofrep: try HTTPListenerConfiguration(listen: "8016"), inherited: [Self.socket(6, "http")])
        #expect(http.sites == [.init(configuration: HTTPListenerConfiguration(endpoint: .socket(descriptor: 6, name: "http")), services: [.metrics, .ofrep])])
        #expect(http.notes.count == 1)

        // A passed socket for one service leaves the other flag bound as usual.
        let mixed = HTTPPlan(
            metrics: nil, ofrep: try HTTPListenerConfiguration(listen: "8016"), inherited: [Self.socket(7, "metrics"), Self.socket(8, "admin")])
        #expect(mixed.sites.map(\.configuration.endpoint) == [.socket(descriptor: 7, name: "metrics"), .tcp(host: "127.0.0.1", port: 8016)])
        #expect(mixed.notes.isEmpty)
    }

    @Test func aPassedSocketThatIsNotAListeningStreamIsSkippedAndSaidSo() {
        let plan = HTTPPlan(metrics: nil, ofrep: nil, inherited: [Self.socket(3, "ofrep", stream: false)])
        #expect(plan.sites.isEmpty)
        #expect(plan.notes == ["systemd passed a socket named \"ofrep\" that is not a listening stream socket; not serving HTTP on it"])
    }
}

@Suite("OFREP through a real guidond", .serialized)
struct OFREPIntegrationTests {
    /// `(value, variant, reason, errorCode)` of an OFREP body, and of a socket reply.
    static func answer(_ json: [String: Any]) -> String {
        let value = json["value"].map { value -> String in
            guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]) else { return "?" }
            return String(decoding: data, as: UTF8.self)
        }
        let variant = json["variant"] as? String
        return "\(value ?? "-") \(variant ?? "-") \(json["reason"] as? String ?? "ERROR") \(json["errorCode"] as? String ?? "-")"
    }

    @Test func metricsAndOFREPShareOneAddressAndEveryExampleFlagAnswersAsOnTheSocket() throws {
        let daemon = try RunningDaemon(
            flags: bundledExampleFlags, extraArguments: ["--metrics-listen", "127.0.0.1:0", "--ofrep-listen", "127.0.0.1:0"])
        defer { try? daemon.finish() }
        var port: Int?
        try daemon.waitFor("the shared HTTP listener") {
            if let range = daemon.process.log.range(of: #"serving /metrics, /healthz and OFREP on http://127\.0\.0\.1:[0-9]+"#, options: .regularExpression) {
                port = Int(daemon.process.log[range].split(separator: ":").last!)
            }
            return port != nil
        }
        let target = HTTPTarget.port(try #require(port))
        let client = try daemon.client()
        let keys = try client.request(#"{"op":"list"}"#)["flags"]?.array?.compactMap { $0.object?["key"]?.string } ?? []
        #expect(keys.count == 10)
        for context in [#"{}"#, #"{"targetingKey":"user-1001","tier":"gold"}"#, #"{"targetingKey":"u7","plan":"business","email":"x@acme.example"}"#] {
            for key in keys {
                let ofrep = try http(target, "POST", "/ofrep/v1/evaluate/flags/\(key)", body: #"{"context":\#(context)}"#)
                let socket = try client.request(#"{"op":"eval","flag":"\#(key)","context":\#(context)}"#)
                let socketJSON = try jsonObject(JSONWriter.string(.object(socket)))
                #expect(Self.answer(try jsonObject(ofrep.body)) == Self.answer(socketJSON), "\(key) for \(context)")
            }
        }
        let metrics = try http(target, "GET", "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.body.contains(#"guidon_ofrep_requests_total{endpoint="flag"} 30"#))
        #expect(metrics.body.contains(#"guidon_ofrep_responses_total{code="200"} 30"#))
        let (status, output) = try promtoolCheckMetrics(metrics.body)
        #expect(status == 0, "promtool: \(output)")
    }

    @Test func ofrepOnAUnixSocketAndMetricsOnTCPAreSeparateListeners() throws {
        let dir = try ScratchDirectory()
        let ofrepPath = dir.file("ofrep.sock")
        let daemon = try RunningDaemon(
            flags: bundledExampleFlags, extraArguments: ["--metrics-listen", "127.0.0.1:0", "--ofrep-listen", ofrepPath], dir: dir)
        var port = 0
        try daemon.waitFor("both HTTP sites") {
            guard let range = daemon.process.log.range(of: #"serving /metrics and /healthz on http://127\.0\.0\.1:[0-9]+"#, options: .regularExpression),
                daemon.process.log.contains("serving OFREP on the Unix socket \(ofrepPath)")
            else { return false }
            port = Int(daemon.process.log[range].split(separator: ":").last!) ?? 0
            return true
        }
        let reply = try http(.unix(ofrepPath), "POST", "/ofrep/v1/evaluate/flags/max-cart-items", body: #"{"context":{"plan":"business"}}"#)
        #expect(reply.status == 200, "\(reply)")
        #expect(try jsonObject(reply.body)["value"] as? Int == 200)
        #expect(try http(.port(port), "POST", "/ofrep/v1/evaluate/flags/max-cart-items", body: "{}").status == 404, "OFREP is not on the metrics address")
        #expect(try http(.unix(ofrepPath), "GET", "/metrics").status == 404, "/metrics is not on the OFREP socket")
        try daemon.finish()
        #expect(access(ofrepPath, F_OK) != 0, "the OFREP socket file is removed at exit")
    }

    @Test func anAddressInUseStopsTheStartSayingWhich() throws {
        let taken = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(taken) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(taken, $0, length) == 0 && getsockname(taken, $0, &length) == 0 }
        }
        listen(taken, 1)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("flags.json", bundledExampleFlags)
        let process = try DaemonProcess(
            arguments: ["--config", dir.file("flags.json"), "--socket", dir.file("g.sock"), "--ofrep-listen", "127.0.0.1:\(port)"],
            logPath: dir.file("log"))
        #expect(try process.waitForExit(timeout: .seconds(30)) == 1)
        #expect(process.log.contains("cannot listen on 127.0.0.1:\(port)"), "\(process.log)")
        #expect(access(dir.file("g.sock"), F_OK) != 0, "a failed start leaves no socket file behind")
    }
}
