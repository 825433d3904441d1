#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What one measurement produced: replies inside the measuring window, their round-trip
/// times, and everything that went wrong.
struct LoadResult: Sendable {
    var replies: UInt64 = 0
    var seconds: Double = 0
    var latency = LatencyHistogram()
    /// Replies that were error replies.
    var errorReplies: UInt64 = 0
    /// Requests still unanswered when the run gave up waiting.
    var timeouts: UInt64 = 0
    /// Requests lost because the server closed the connection or it failed.
    var disconnected: UInt64 = 0
    /// Connections that could not be opened.
    var connectFailures: UInt64 = 0

    var failures: UInt64 { errorReplies + timeouts + disconnected + connectFailures }
    var repliesPerSecond: Double { seconds > 0 ? Double(replies) / seconds : 0 }

    /// Adds up a later round (windows are summed: rates stay rates).
    mutating func merge(_ other: LoadResult) {
        replies += other.replies
        seconds += other.seconds
        latency.merge(other.latency)
        errorReplies += other.errorReplies
        timeouts += other.timeouts
        disconnected += other.disconnected
        connectFailures += other.connectFailures
    }

    /// Adds up threads that ran over the same window.
    mutating func mergeConcurrent(_ other: LoadResult) {
        let window = max(seconds, other.seconds)
        merge(other)
        seconds = window
    }
}

/// Timing of one load run: a warm-up whose replies are not counted, then the measuring window.
struct LoadTiming: Sendable {
    var warmup: Double
    var duration: Double
    /// How long to wait for outstanding replies after the window before calling them timeouts.
    var drainTimeout: Double = 2
}

enum LoadClient {
    /// One connection, one request at a time, blocking calls: the leanest possible round trip.
    static func roundTrips(socket path: String, request: RequestSpec, timing: LoadTiming) -> LoadResult {
        guard let client = try? RoundTripClient(socket: path, request: request, timeout: timing.drainTimeout) else {
            var result = LoadResult()
            result.connectFailures = 1
            return result
        }
        client.run(for: timing.warmup, recording: false)
        client.run(for: timing.duration)
        return client.result
    }

    /// `connections` connections spread over `threads` poll threads, each keeping
    /// `inFlight` requests outstanding: every batch of replies read is answered by one
    /// `send` of as many new requests. A request's round trip runs from the `send` that
    /// carried it to the `recv` that completed its reply.
    static func load(
        socket path: String,
        request: RequestSpec,
        connections: Int,
        inFlight: Int,
        threads: Int,
        timing: LoadTiming
    ) -> LoadResult {
        let threadCount = max(1, min(threads, connections))
        let start = monotonicNanos()
        let windowStart = start + UInt64(timing.warmup * 1e9)
        let windowEnd = windowStart + UInt64(timing.duration * 1e9)
        let perThread = onThreads(threadCount) { index in
            let mine = connections / threadCount + (index < connections % threadCount ? 1 : 0)
            var worker = LoadWorker(
                path: path, request: request, connections: mine, inFlight: inFlight,
                windowStart: windowStart, windowEnd: windowEnd, drainTimeout: timing.drainTimeout)
            return worker.run()
        }
        var total = LoadResult()
        for part in perThread { total.mergeConcurrent(part) }
        return total
    }
}

/// One connection of the pipelined client. Owned by a single worker thread.
private final class PipelinedConnection {
    let fd: Int32
    var scanner: ReplyScanner
    var buffer: UnsafeMutableRawPointer
    var capacity = 64 * 1024
    var used = 0
    /// Send times of the outstanding requests, oldest first (a ring).
    var sendTimes: [UInt64]
    var head = 0
    var outstanding = 0
    var open = true
    /// The request line the next send starts with.
    var nextLine = 0

    init(fd: Int32, framing: ReplyFraming, inFlight: Int) {
        self.fd = fd
        scanner = ReplyScanner(framing)
        buffer = .allocate(byteCount: capacity, alignment: 16)
        sendTimes = [UInt64](repeating: 0, count: inFlight)
    }

    deinit {
        buffer.deallocate()
        if open { close(fd) }
    }

    @inline(__always)
    func pushSends(_ count: Int, at time: UInt64) {
        var slot = (head + outstanding) % sendTimes.count
        for _ in 0..<count {
            sendTimes[slot] = time
            slot += 1
            if slot == sendTimes.count { slot = 0 }
        }
        outstanding += count
    }

    @inline(__always)
    func popSend() -> UInt64 {
        let time = sendTimes[head]
        head += 1
        if head == sendTimes.count { head = 0 }
        outstanding -= 1
        return time
    }

    func growBuffer() {
        let bigger = UnsafeMutableRawPointer.allocate(byteCount: capacity * 2, alignment: 16)
        bigger.copyMemory(from: buffer, byteCount: used)
        buffer.deallocate()
        buffer = bigger
        capacity *= 2
    }
}

private struct LoadWorker {
    let path: String
    let request: RequestSpec
    let connectionCount: Int
    let inFlight: Int
    let windowStart: UInt64
    let windowEnd: UInt64
    let drainTimeout: Double
    var result = LoadResult()

    init(
        path: String, request: RequestSpec, connections: Int, inFlight: Int,
        windowStart: UInt64, windowEnd: UInt64, drainTimeout: Double
    ) {
        self.path = path
        self.request = request
        self.connectionCount = connections
        self.inFlight = inFlight
        self.windowStart = windowStart
        self.windowEnd = windowEnd
        self.drainTimeout = drainTimeout
    }

    mutating func run() -> LoadResult {
        // Every request line, then enough again that any `inFlight` lines in turn are one `send`.
        let ring = request.ring(extra: inFlight)
        let lineLength = request.lineLength
        let lineCount = request.lines.count

        var connections: [PipelinedConnection] = []
        for _ in 0..<connectionCount {
            guard let fd = try? connectUnix(path) else {
                result.connectFailures += 1
                continue
            }
            let connection = PipelinedConnection(fd: fd, framing: request.framing, inFlight: inFlight)
            connection.nextLine = (connections.count * 37) % lineCount  // connections start at different users
            connections.append(connection)
        }

        ring.withUnsafeBytes { ring in
            let now = monotonicNanos()
            for connection in connections {
                send(connection, count: inFlight, of: ring, lineLength: lineLength, lineCount: lineCount, at: now)
            }
            var polled = connections.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            var draining = false
            var drainDeadline: UInt64 = 0
            while true {
                let now = monotonicNanos()
                if !draining && now >= windowEnd {
                    draining = true
                    drainDeadline = now + UInt64(drainTimeout * 1e9)
                }
                if draining {
                    if now >= drainDeadline || !connections.contains(where: { $0.open && $0.outstanding > 0 }) {
                        break
                    }
                }
                let ready = polled.withUnsafeMutableBufferPointer {
                    poll($0.baseAddress, nfds_t($0.count), 5)
                }
                guard ready > 0 else { continue }
                for i in polled.indices where polled[i].revents != 0 {
                    let connection = connections[i]
                    guard connection.open else {
                        polled[i].fd = -1  // poll skips negative descriptors
                        continue
                    }
                    let answered = receive(connection)
                    if answered > 0 && !draining && connection.open {
                        send(connection, count: answered, of: ring, lineLength: lineLength, lineCount: lineCount, at: monotonicNanos())
                    }
                }
            }
        }
        for connection in connections where connection.open {
            result.timeouts += UInt64(connection.outstanding)
        }
        result.seconds = Double(windowEnd - windowStart) / 1e9
        return result
    }

    @inline(__always)
    private mutating func send(
        _ connection: PipelinedConnection, count: Int, of ring: UnsafeRawBufferPointer, lineLength: Int, lineCount: Int,
        at time: UInt64
    ) {
        let start = connection.nextLine * lineLength
        do {
            try sendAll(connection.fd, UnsafeRawBufferPointer(rebasing: ring[start..<(start + count * lineLength)]))
            connection.nextLine = (connection.nextLine + count) % lineCount
            connection.pushSends(count, at: time)
        } catch {
            fail(connection)
        }
    }

    /// Reads once and accounts for the replies that completed; returns how many did.
    @inline(__always)
    private mutating func receive(_ connection: PipelinedConnection) -> Int {
        if connection.used == connection.capacity { connection.growBuffer() }
        let n = recv(connection.fd, connection.buffer + connection.used, connection.capacity - connection.used, Int32(MSG_DONTWAIT))
        if n <= 0 {
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return 0 }
            fail(connection)
            return 0
        }
        let now = monotonicNanos()
        connection.used += n
        var answered = 0
        let inWindow = now >= windowStart && now < windowEnd
        let consumed = connection.scanner.scan(UnsafeRawBufferPointer(start: connection.buffer, count: connection.used)) { failed in
            guard connection.outstanding > 0 else {  // a reply nobody asked for
                result.errorReplies += 1
                return
            }
            answered += 1
            let sent = connection.popSend()
            if failed { result.errorReplies += 1 }
            if inWindow {
                result.replies += 1
                result.latency.record(now - sent)
            }
        }
        if consumed > 0 {
            if consumed < connection.used {
                connection.buffer.copyMemory(from: connection.buffer + consumed, byteCount: connection.used - consumed)
            }
            connection.used -= consumed
        }
        return answered
    }

    private mutating func fail(_ connection: PipelinedConnection) {
        result.disconnected += UInt64(connection.outstanding)
        connection.outstanding = 0
        connection.open = false
        close(connection.fd)
    }
}

/// A connection that sends one request, waits for its reply, and repeats, timing each round
/// trip. It stays open between calls to `run`, so that several of them can take turns in
/// short slices and see the same machine conditions.
final class RoundTripClient {
    private let fd: Int32
    private let request: RequestSpec
    private var scanner: ReplyScanner
    private let capacity = 1 << 20
    private let buffer: UnsafeMutableRawPointer
    private(set) var result = LoadResult()
    private var broken = false
    private var nextLine = 0

    convenience init(socket path: String, request: RequestSpec, timeout: Double) throws {
        self.init(connected: try connectUnix(path), request: request, timeout: timeout)
    }

    /// A client of the connection `fd` (which it closes).
    init(connected fd: Int32, request: RequestSpec, timeout: Double) {
        self.fd = fd
        setTimeouts(fd, seconds: timeout)
        self.request = request
        scanner = ReplyScanner(request.framing)
        buffer = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit {
        buffer.deallocate()
        close(fd)
    }

    /// Sends requests one at a time for `seconds`; records their round trips unless warming up.
    func run(for seconds: Double, recording: Bool = true) {
        let start = monotonicNanos()
        let end = start + UInt64(seconds * 1e9)
        var now = start
        while !broken && now < end {
            let sent = monotonicNanos()
            guard let failed = roundTrip() else {
                broken = true
                break
            }
            now = monotonicNanos()
            if failed { result.errorReplies += 1 }
            if recording {
                result.replies += 1
                result.latency.record(now - sent)
            }
        }
        if recording { result.seconds += Double(now - start) / 1e9 }
    }

    /// One request and its reply: whether the reply was a failure, `nil` if the connection broke.
    private func roundTrip() -> Bool? {
        let sentOK = request.lines[nextLine].withUnsafeBytes { (try? sendAll(fd, $0)) != nil }
        nextLine = (nextLine + 1) % request.lines.count
        guard sentOK else {
            result.disconnected += 1
            return nil
        }
        var used = 0
        var answered = false
        var failed = false
        while !answered {
            let n = recv(fd, buffer + used, capacity - used, 0)
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                    result.timeouts += 1
                } else {
                    result.disconnected += 1
                }
                return nil
            }
            used += n
            let consumed = scanner.scan(UnsafeRawBufferPointer(start: buffer, count: used)) {
                answered = true
                failed = failed || $0
            }
            if consumed > 0 && consumed < used {
                buffer.copyMemory(from: buffer + consumed, byteCount: used - consumed)
            }
            used -= consumed
            if used == capacity {  // a reply over 1 MiB
                result.errorReplies += 1
                return nil
            }
        }
        return failed
    }
}
