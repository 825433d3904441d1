import GuidonJSON
import NIOCore
import NIOEmbedded
import Testing

@testable import guidon_bench

#if canImport(Glibc)
import Glibc
#endif

@Suite struct LatencyHistogramTests {
    @Test func quantilesOfAUniformSpreadAreWithinTheBucketError() {
        var histogram = LatencyHistogram()
        for micros in 1...10_000 { histogram.record(UInt64(micros) * 1000) }
        #expect(histogram.count == 10_000)
        #expect(histogram.min == 1000)
        #expect(histogram.max == 10_000_000)
        for (q, exact) in [(0.5, 5_000_000.0), (0.9, 9_000_000.0), (0.99, 9_900_000.0), (0.999, 9_990_000.0)] {
            let measured = Double(histogram.quantile(q))
            #expect(abs(measured - exact) / exact < 0.005, "q\(q): \(measured) vs \(exact)")
        }
        #expect(histogram.quantile(1) == 10_000_000)
    }

    @Test func smallValuesAreExact() {
        var histogram = LatencyHistogram()
        for value: UInt64 in [0, 1, 7, 200, 255] { histogram.record(value) }
        #expect(histogram.quantile(0.2) == 0)
        #expect(histogram.quantile(0.6) == 7)
        #expect(histogram.quantile(0.8) == 200)
    }

    @Test func mergeAddsCountsAndKeepsExtremes() {
        var a = LatencyHistogram()
        var b = LatencyHistogram()
        for _ in 0..<90 { a.record(10_000) }
        for _ in 0..<10 { b.record(1_000_000) }
        a.merge(b)
        #expect(a.count == 100)
        #expect(a.max == 1_000_000)
        #expect(a.quantile(0.5) < 10_100)
        #expect(a.quantile(0.95) > 990_000)
    }
}

@Suite struct ReplyScannerTests {
    private func scan(_ scanner: inout ReplyScanner, _ text: String) -> (consumed: Int, replies: [Bool]) {
        var replies: [Bool] = []
        let consumed = Array(text.utf8).withUnsafeBytes { scanner.scan($0) { replies.append($0) } }
        return (consumed, replies)
    }

    @Test func linesAreRepliesAndMarkersMarkFailures() {
        var scanner = ReplyScanner(.lines(failureMarkers: [Array(#""ok":false"#.utf8)]))
        let (consumed, replies) = scan(&scanner, "{\"value\":1}\n{\"ok\":false,\"error\":\"x\"}\n{\"val")
        #expect(replies == [false, true])
        #expect(consumed == "{\"value\":1}\n{\"ok\":false,\"error\":\"x\"}\n".utf8.count)
    }

    @Test func httpResponsesAreFramedByTheirLengthAcrossReads() {
        var scanner = ReplyScanner(.http(failureMarkers: [Array(#""errorCode""#.utf8)]))
        let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"value\":1}\n"
        let notFound = "HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}"
        let failed = "HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"errorCode\":\"x\"}"
        let first = scan(&scanner, ok + String(notFound.prefix(30)))
        #expect(first.replies == [false])
        #expect(first.consumed == ok.utf8.count)
        let second = scan(&scanner, notFound + failed + "HTTP/1.1 200")
        #expect(second.replies == [true, true])
        #expect(second.consumed == (notFound + failed).utf8.count)
    }

    @Test func respBulkStringsSpanTwoLinesAcrossReads() {
        var scanner = ReplyScanner(.resp)
        let first = scan(&scanner, "$5\r\nhel")
        #expect(first.replies.isEmpty)
        #expect(first.consumed == 4)
        let second = scan(&scanner, "hello\r\n$-1\r\n-ERR wrong\r\n+OK\r\n")
        #expect(second.replies == [false, true, true, false])
    }
}

@Suite struct BenchFlagsTests {
    @Test func theFileHoldsTheRequestedFlagsAndTheGeneration() throws {
        let bytes = BenchFlags.file(count: 50, generation: 7)
        let document = try JSONParser().parse(bytes)
        let flags = try #require(document.object?["flags"]?.object)
        #expect(flags.count == 50)
        for key in [BenchFlags.staticKey, BenchFlags.targetedKey, BenchFlags.fractionalKey] + BenchFlags.batchKeys {
            #expect(flags[key] != nil, "missing \(key)")
        }
        #expect(flags[BenchFlags.generationKey]?.object?["variants"]?.object?["g"] == .int(7))
        #expect(BenchFlags.file(count: 50, generation: 8) != bytes)
    }
}

/// The client against the in-process echo floor: replies are counted, nothing fails.
@Suite(.serialized) struct LoadClientTests {
    private func withEchoServer(_ body: (String) throws -> Void) throws {
        let directory = try TemporaryDirectory(prefix: "guidon-bench-test")
        defer { directory.remove() }
        let socket = directory.file("echo.sock")
        let listener = try listenUnix(socket)
        let server = PosixThread { try? EchoServer.acceptLoop(listener, reply: #"{"value":true}"#) }
        defer {
            shutdown(listener, Int32(SHUT_RDWR))
            server.join()
            close(listener)
        }
        try body(socket)
    }

    @Test func pipelinedLoadCountsEveryReply() throws {
        try withEchoServer { socket in
            let request = RequestSpec(name: "echo", line: Array("{\"op\":\"eval\"}\n".utf8), framing: .lines(failureMarkers: []))
            let result = LoadClient.load(
                socket: socket, request: request, connections: 4, inFlight: 8, threads: 2,
                timing: LoadTiming(warmup: 0.02, duration: 0.1))
            #expect(result.replies > 0)
            #expect(result.latency.count == result.replies)
            #expect(result.failures == 0)
        }
    }

    @Test func roundTripsAreTimedOneByOne() throws {
        try withEchoServer { socket in
            let request = RequestSpec(name: "echo", line: Array("{\"op\":\"eval\"}\n".utf8), framing: .lines(failureMarkers: []))
            let result = LoadClient.roundTrips(socket: socket, request: request, timing: LoadTiming(warmup: 0.01, duration: 0.05))
            #expect(result.replies > 0)
            #expect(result.failures == 0)
        }
    }

    @Test func errorRepliesAndRefusedConnectionsAreFailures() throws {
        try withEchoServer { socket in
            let request = RequestSpec(
                name: "echo", line: Array("{}\n".utf8), framing: .lines(failureMarkers: [Array("true".utf8)]))
            let result = LoadClient.load(
                socket: socket, request: request, connections: 1, inFlight: 2, threads: 1,
                timing: LoadTiming(warmup: 0, duration: 0.02))
            #expect(result.errorReplies > 0)
        }
        let nowhere = LoadClient.load(
            socket: "/nonexistent/guidon.sock", request: RequestSpec(name: "x", line: [0x0A], framing: .resp),
            connections: 3, inFlight: 1, threads: 1, timing: LoadTiming(warmup: 0, duration: 0.01))
        #expect(nowhere.connectFailures == 3)
    }
}

@Suite struct RequestRotationTests {
    @Test func everyUserGetsALineOfTheSameLength() throws {
        let request: JSONValue = ["op": "eval", "flag": "f", "context": ["targetingKey": "someone", "tier": "gold"]]
        let lines = (0..<BenchFlags.users).map { JSONWriter.string(BenchFlags.onBehalf(of: $0, request)) }
        #expect(Set(lines).count == BenchFlags.users)
        #expect(Set(lines.map(\.utf8.count)).count == 1)
        let parsed = try JSONParser().parse(Array(lines[7].utf8))
        #expect(parsed.object?["context"]?.object?["targetingKey"] == "user-0007")
        #expect(parsed.object?["context"]?.object?["tier"] == "gold")
    }

    @Test func theRingHoldsEveryRunOfLinesContiguously() {
        let lines = (0..<5).map { Array("line-\($0)\n".utf8) }
        let spec = RequestSpec(name: "r", lines: lines, framing: .lines(failureMarkers: []))
        let ring = spec.ring(extra: 3)
        #expect(ring.count == 8 * spec.lineLength)
        // Three lines from the last one: wraps to the first two.
        let start = 4 * spec.lineLength
        #expect(Array(ring[start..<(start + 3 * spec.lineLength)]) == lines[4] + lines[0] + lines[1])
    }
}

@Suite struct NIOEchoServerTests {
    @Test func answersEveryLineOfARead() throws {
        let channel = EmbeddedChannel(handler: LineEcho(reply: Array("ok\n".utf8)))
        try channel.writeInbound(ByteBuffer(string: "one\ntwo\nthr"))
        #expect(try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) } == "ok\nok\n")
        try channel.writeInbound(ByteBuffer(string: "ee"))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "no reply before a newline")
        #expect(try channel.finish().isClean)
    }
}
