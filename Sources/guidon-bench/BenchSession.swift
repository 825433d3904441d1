import GuidonJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One benchmark run: the servers it started, the request lines it sends, the report it fills.
final class BenchSession {
    let settings: BenchSettings
    let launcher: ServerLauncher
    let attachedSocket: String?
    var report = Report()

    /// The servers of the latency and throughput stages.
    var guidond: ChildProcess?
    var guidondSocket = ""
    var floor: ChildProcess?
    var floorSocket: String { launcher.directory.file("floor.sock") }
    var redis: ChildProcess?
    var redisSocket: String { launcher.directory.file("redis.sock") }
    /// What guidond answers to the static flag: the floor and Redis serve these very bytes.
    var staticReply = ""

    init(settings: BenchSettings, launcher: ServerLauncher, attachTo socket: String?) {
        self.settings = settings
        self.launcher = launcher
        self.attachedSocket = socket
    }

    func run() throws -> Report {
        let stages = settings.stages
        if stages.contains("latency") || stages.contains("throughput") {
            try startServers()
            if stages.contains("latency") { measureLatency() }
            if stages.contains("throughput") { measureThroughput() }
            stopAll()
        }
        if stages.contains("reload") {
            if attachedSocket == nil { try measureReloads() } else { report.notes.append("reload stage skipped: attached to a running guidond") }
        }
        if stages.contains("admin") {
            if attachedSocket == nil { try measureAdminWrites() } else { report.notes.append("admin stage skipped: attached to a running guidond") }
        }
        if stages.contains("entitlements-admin") {
            if attachedSocket == nil { try measureEntitlementsWrites() } else { report.notes.append("entitlements-admin stage skipped: attached to a running guidond") }
        }
        if stages.contains("startup") {
            if attachedSocket == nil { try measureStartup() } else { report.notes.append("startup stage skipped: attached to a running guidond") }
        }
        if stages.contains("ofrep") {
            if attachedSocket == nil { try measureOFREP() } else { report.notes.append("ofrep stage skipped: attached to a running guidond") }
        }
        if stages.contains("entitlements") {
            if attachedSocket == nil { try measureEntitlements() } else { report.notes.append("entitlements stage skipped: attached to a running guidond") }
        }
        if stages.contains("consume") {
            if attachedSocket == nil { try measureConsume() } else { report.notes.append("consume stage skipped: attached to a running guidond") }
        }
        if stages.contains("counting") {
            if attachedSocket == nil { try measureCountingCost() } else { report.notes.append("counting stage skipped: attached to a running guidond") }
        }
        return report
    }

    func stopAll() {
        for process in [guidond, floor, redis].compactMap({ $0 }) { process.stop() }
        guidond = nil
        floor = nil
        redis = nil
    }

    // MARK: - Set-up

    private func startServers() throws {
        if let attachedSocket {
            guidondSocket = attachedSocket
            let answer = try ping(socket: attachedSocket)
            progress("attached to guidond on \(attachedSocket): \(answer.flags) flags, version \(answer.configVersion)")
        } else {
            try checkGuidondExecutable()
            let config = launcher.directory.file("flags.json")
            try writeFileAtomically(config, BenchFlags.file(count: Self.servedFlagCount, generation: 0))
            guidondSocket = launcher.directory.file("guidond.sock")
            progress("starting \(launcher.guidond) with \(Self.servedFlagCount) flags")
            (guidond, _) = try launcher.startGuidond(config: config, socket: guidondSocket)
        }
        try checkAnswers()

        progress("starting the echo floor")
        floor = try launcher.startFloor(socket: floorSocket, reply: staticReply)
        if settings.redis {
            if let started = try launcher.startRedis(socket: redisSocket) {
                redis = started
                try RESP.set(socket: redisSocket, key: BenchFlags.staticKey, value: staticReply)
                progress("started redis-server")
            } else {
                report.notes.append("redis-server is not installed: no Redis figures (GUIDON_TEST_DEPS=1 bash .ci/deps installs it)")
            }
        }
    }

    /// Flags in the file of the latency and throughput stages (`evalAll` returns them all).
    static let servedFlagCount = 200

    func checkGuidondExecutable() throws {
        guard isExecutable(launcher.guidond) else {
            throw BenchError.serverFailed(
                "no guidond at \(launcher.guidond): build it (swift build -c release --product guidond) or pass --guidond")
        }
    }

    /// Fetches the static reply and checks that every request kind gets a real answer.
    private func checkAnswers() throws {
        staticReply = try exchange(socket: guidondSocket, line: Self.text(evalRequest(BenchFlags.staticKey)))
        for request in [evalRequest(BenchFlags.staticKey), evalRequest(BenchFlags.targetedKey),
                        evalRequest(BenchFlags.fractionalKey), batchRequest, evalAllRequest] {
            let reply = try exchange(socket: guidondSocket, line: Self.text(request))
            var failed = false
            var scanner = ReplyScanner(Self.guidondFraming)
            _ = Array((reply + "\n").utf8).withUnsafeBytes { scanner.scan($0) { failed = $0 } }
            if failed || !reply.contains(#""value""#) {
                throw BenchError.unexpectedReply("guidond answered \(Self.text(request)) with \(reply.prefix(400))")
            }
        }
        let targeted = try exchange(socket: guidondSocket, line: Self.text(evalRequest(BenchFlags.targetedKey)))
        if !targeted.contains(#""variant":"on""#) {
            report.notes.append("the targeted flag did not match its rule (\(targeted.prefix(160))): is the real engine merged?")
        }
    }

    // MARK: - Requests

    /// An error reply (`{"error":{"code":…}}`), or an evaluation that ended in an error
    /// (`"errorCode":"…"`), is a failed request. The floor answers guidond's bytes and is read
    /// the same way: the client does the same work for every reply of this protocol, whoever
    /// sent it.
    static let guidondFraming = ReplyFraming.lines(failureMarkers: [Array(#""error":{"#.utf8), Array(#""errorCode":""#.utf8)])

    func evalRequest(_ key: String) -> JSONValue {
        ["op": "eval", "flag": .string(key), "context": BenchFlags.context]
    }

    var batchRequest: JSONValue {
        ["op": "eval", "flags": .array(BenchFlags.batchKeys.map { .string($0) }), "context": BenchFlags.context]
    }

    var evalAllRequest: JSONValue { ["op": "evalAll", "context": BenchFlags.context] }

    static func text(_ request: JSONValue) -> String { JSONWriter.string(request) }

    /// `request` on behalf of each of the bench's users in turn (only `targetingKey` differs).
    func guidondSpec(_ name: String, _ request: JSONValue, evaluations: Int = 1) -> RequestSpec {
        let lines = (0..<BenchFlags.users).map { user in
            Array((Self.text(BenchFlags.onBehalf(of: user, request)) + "\n").utf8)
        }
        return RequestSpec(name: name, lines: lines, framing: Self.guidondFraming, evaluationsPerReply: evaluations)
    }

    /// The floor gets guidond's static request and answers guidond's static reply.
    var floorSpec: RequestSpec {
        RequestSpec(name: "floor", line: Array((Self.text(evalRequest(BenchFlags.staticKey)) + "\n").utf8),
                    framing: Self.guidondFraming)
    }

    var redisSpec: RequestSpec {
        RequestSpec(name: "redis", line: RESP.command(["GET", BenchFlags.staticKey]), framing: .resp)
    }
}

func progress(_ message: String) {
    printError("· " + message)
}
