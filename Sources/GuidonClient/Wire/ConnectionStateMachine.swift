import GuidonJSON
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The protocol logic of one pipelined connection, without the I/O: which request a reply line
/// answers, which requests have run out of time, what fails when the connection ends.
///
/// Requests are answered in request order (PROTOCOL.md §1), so the pending requests are a FIFO
/// and every reply completes the oldest. Each request also carries an `id` that the reply must
/// echo: a mismatch means the two sides disagree about the stream, and the connection is closed
/// rather than hand anyone another caller's answer. A request whose caller stopped waiting (timed
/// out, cancelled) stays in the FIFO without its waiter, so that its reply, when it comes, is
/// read and dropped in its turn.
///
/// Generic over the waiter so that tests drive it with plain values; `ConnectionHandler` carries
/// out what it returns.
struct ConnectionStateMachine<Waiter> {
    struct Pending {
        let id: Int
        let deadline: NIODeadline
        /// `nil` once the caller stopped waiting.
        var waiter: Waiter?
    }

    private enum State {
        case open
        case closed(GuidonClientError)
    }

    private(set) var pending = CircularBuffer<Pending>(initialCapacity: 16)
    private var state = State.open
    /// An error reply that came while nothing was pending (`OVERLOADED`, sent as the daemon
    /// refuses a connection over its limit): why the daemon is about to close.
    private var farewell: GuidonClientError?

    var isOpen: Bool {
        if case .open = state { return true }
        return false
    }

    enum SubmitAction {
        /// Write the request.
        case write
        /// The connection is closed: fail the waiter at once.
        case fail(Waiter, GuidonClientError)
    }

    mutating func submit(id: Int, deadline: NIODeadline, waiter: Waiter) -> SubmitAction {
        switch state {
        case .closed(let error):
            return .fail(waiter, error)
        case .open:
            pending.append(Pending(id: id, deadline: deadline, waiter: waiter))
            return .write
        }
    }

    enum LineAction {
        case none
        /// The reply line of a waiting request, for its caller to parse (`Reply.parse`), or the
        /// daemon's error reply when it came without an id.
        case complete(Waiter, Result<ByteBuffer, GuidonClientError>)
        /// An event line (`watch`), to be handed to whoever subscribed.
        case event(JSONObject)
        /// The peer broke the protocol: close the connection (`closed(with:)` then fails the
        /// waiters with this error).
        case close(GuidonClientError)
    }

    /// Matches one reply line with its request.
    ///
    /// The usual reply starts with the request's id (`{"id":17,`: PROTOCOL.md §3 puts it first)
    /// and is matched by that prefix alone; the caller parses the line, on its own thread. With
    /// one connection shared by many callers, the event loop is the one thread every reply goes
    /// through, and parsing there made it the bottleneck (see docs/SWIFT-CLIENT.md). Anything else
    /// — events, error replies without an id, something broken — is parsed here.
    mutating func received(line: ByteBuffer) -> LineAction {
        guard case .open = state else { return .none }
        if let id = line.withUnsafeReadableBytes({ Self.leadingID(in: $0) }) {
            return complete(id: .int(Int64(id)), with: .success(line), line: line)
        }
        return line.withUnsafeReadableBytes { receivedParsing($0, line) }
    }

    private mutating func receivedParsing(_ bytes: UnsafeRawBufferPointer, _ line: ByteBuffer) -> LineAction {
        if bytes.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) { return .none }
        let parsed: JSONValue
        do {
            parsed = try JSONParser().parse(bytes)
        } catch {
            return .close(.violation("guidond sent a line that is not JSON (\(error)): \(Self.excerpt(line))"))
        }
        guard case .object(let reply) = parsed else {
            return .close(.violation("guidond sent a line that is not a JSON object: \(Self.excerpt(line))"))
        }
        let id = reply["id"]
        if id == nil, reply["event"] != nil { return .event(reply) }
        let errorReply = Reply.daemonError(reply)
        if id == nil {
            guard let errorReply else {
                // Every request carries an id, and only an error reply may lack it (§4).
                return .close(.violation("guidond sent a reply without the request's id: \(Self.excerpt(line))"))
            }
            if pending.isEmpty {
                farewell = errorReply
                return .none
            }
        }
        return complete(id: id, with: errorReply.map { .failure($0) } ?? .success(line), line: line)
    }

    /// Hands `result` to the oldest pending request, if `id` (when there is one) is its id.
    private mutating func complete(id: JSONValue?, with result: Result<ByteBuffer, GuidonClientError>, line: ByteBuffer) -> LineAction {
        guard let head = pending.first else {
            return .close(.violation("guidond sent a reply while no request was waiting: \(Self.excerpt(line))"))
        }
        if let id, id != .int(Int64(head.id)) {
            return .close(.violation("guidond answered id \(id) where id \(head.id) was next: \(Self.excerpt(line))"))
        }
        pending.removeFirst()
        guard let waiter = head.waiter else { return .none }
        return .complete(waiter, result)
    }

    /// The id of a line that starts `{"id":` and a non-negative integer followed by `,` or `}`.
    static func leadingID(in line: UnsafeRawBufferPointer) -> Int? {
        let prefix: StaticString = #"{"id":"#
        let count = prefix.utf8CodeUnitCount
        guard line.count > count, memcmp(line.baseAddress!, prefix.utf8Start, count) == 0 else { return nil }
        var id = 0
        var i = count
        while i < line.count, line[i] >= UInt8(ascii: "0"), line[i] <= UInt8(ascii: "9"), i - count < 18 {
            id = id * 10 + Int(line[i] - UInt8(ascii: "0"))
            i += 1
        }
        guard i > count, i < line.count, line[i] == UInt8(ascii: ",") || line[i] == UInt8(ascii: "}") else { return nil }
        return id
    }

    /// The connection ended (or is being closed): every waiter fails, now and for later submits.
    /// `error` says why; by default the connection closed (or the daemon's farewell, if it sent one).
    mutating func closed(with error: GuidonClientError? = nil) -> (waiters: [Waiter], error: GuidonClientError) {
        if case .closed(let earlier) = state { return ([], earlier) }
        let error = error ?? farewell ?? GuidonClientError(.connectionClosed, "the connection to guidond closed")
        state = .closed(error)
        var waiters: [Waiter] = []
        while let entry = pending.popFirst() {
            if let waiter = entry.waiter { waiters.append(waiter) }
        }
        return (waiters, error)
    }

    /// The waiters whose deadline is `now` or earlier; they stop waiting (their replies will be dropped).
    mutating func expire(now: NIODeadline) -> [Waiter] {
        var expired: [Waiter] = []
        for i in pending.indices {
            if let waiter = pending[i].waiter, pending[i].deadline <= now {
                expired.append(waiter)
                pending[i].waiter = nil
            }
        }
        return expired
    }

    /// The earliest deadline of a request someone still waits for.
    var earliestDeadline: NIODeadline? {
        var earliest: NIODeadline?
        for entry in pending where entry.waiter != nil {
            if earliest.map({ entry.deadline < $0 }) ?? true { earliest = entry.deadline }
        }
        return earliest
    }

    /// The waiter of request `id`, which stops waiting; `nil` if it is not waiting any more.
    mutating func cancel(id: Int) -> Waiter? {
        for i in pending.indices where pending[i].id == id {
            let waiter = pending[i].waiter
            pending[i].waiter = nil
            return waiter
        }
        return nil
    }

    private static func excerpt(_ line: ByteBuffer) -> String {
        let text = String(decoding: line.readableBytesView.prefix(200), as: UTF8.self)
        return line.readableBytes > 200 ? text + "…" : text
    }
}

/// A reply line, read by the caller that waited for it.
enum Reply {
    /// The line as a JSON object; the daemon's error reply as a `daemonError`.
    static func parse(_ line: ByteBuffer) -> Result<JSONObject, GuidonClientError> {
        let parsed: Result<JSONValue, JSONSyntaxError> = line.withUnsafeReadableBytes { bytes in
            do throws(JSONSyntaxError) { return .success(try JSONParser().parse(bytes)) } catch { return .failure(error) }
        }
        switch parsed {
        case .success(.object(let reply)):
            if let error = daemonError(reply) { return .failure(error) }
            return .success(reply)
        case .success:
            return .failure(.violation("guidond's reply is not a JSON object: \(String(buffer: line).prefix(200))"))
        case .failure(let error):
            return .failure(.violation("guidond's reply is not JSON (\(error)): \(String(buffer: line).prefix(200))"))
        }
    }

    /// The daemon's error reply (`{"error":{"code":…,"message":…}}`) as an error, or `nil`.
    static func daemonError(_ reply: JSONObject) -> GuidonClientError? {
        guard case .object(let error)? = reply["error"] else { return nil }
        let code = error["code"]?.string ?? "UNKNOWN"
        let message = error["message"]?.string ?? "(no message)"
        return GuidonClientError(.daemonError, "guidond refused the request: \(message)", daemonCode: code)
    }
}
