/// The timing and limits of one Redis connection (all durations in nanoseconds).
public struct RESPConnectionConfiguration: Sendable {
    /// How long a connection attempt may take (default 1 s).
    public var connectTimeout: UInt64
    /// The first wait before reconnecting after a failure (default 10 ms); doubled after each
    /// failure in a row, up to `maxBackoff` (default 1 s), and reset by a successful connect.
    public var minBackoff: UInt64
    public var maxBackoff: UInt64
    /// How long an abandoned (timed-out) command may stay unanswered before the connection
    /// is taken as hung and closed (default 1 s).
    public var abandonAfter: UInt64
    /// The most commands waiting for replies on this connection (default 10,000): more are
    /// refused with `tooManyPending` at once.
    public var maxPending: Int

    public init(
        connectTimeout: UInt64 = 1_000_000_000, minBackoff: UInt64 = 10_000_000, maxBackoff: UInt64 = 1_000_000_000,
        abandonAfter: UInt64 = 1_000_000_000, maxPending: Int = 10_000
    ) {
        self.connectTimeout = connectTimeout
        self.minBackoff = minBackoff
        self.maxBackoff = maxBackoff
        self.abandonAfter = abandonAfter
        self.maxPending = maxPending
    }
}

/// The protocol side of one Redis connection, without the I/O: a FIFO of commands waiting for
/// their replies, each with a deadline, the bytes still to write, the bytes read and not yet
/// parsed, and the connection's phase (with its reconnection backoff).
///
/// Every event is a mutating method returning the actions the owner of the socket must carry
/// out, so the logic is tested with byte arrays and an explicit `now` (monotonic nanoseconds),
/// no socket and no sleeping. `Request` is what the owner wants back with each reply (the
/// client keeps the completion closure there).
///
/// Timeouts: a command whose deadline passes is completed with `timeout` at once, but its
/// reply will still come, in order, so it stays in the FIFO as *abandoned* and its reply is
/// dropped when it arrives. A server that leaves an abandoned command unanswered for
/// `abandonAfter` is taken as hung: the connection is closed and every waiting command fails.
public struct RESPConnectionStateMachine<Request> {
    public typealias Configuration = RESPConnectionConfiguration

    /// What the socket's owner must do, in order.
    public enum Action {
        /// Open a connection (non-blocking); then report `connected(now:)` or `closed(_:now:)`.
        case connect
        /// `outgoing` holds bytes: send them (one `send` for everything queued), then `wrote(_:)`.
        case write
        /// A command is done: hand `result` to its requester.
        case complete(Request, Result<RESPValue, RESPError>)
        /// These commands failed with `error`: hand it to each requester.
        case failAll([Request], RESPError)
        /// Close the socket now (the machine already counts it as closed: do not report it).
        case close
    }

    public enum Phase: Equatable, Sendable {
        /// Never connected (the first command connects).
        case idle
        /// A connection attempt is under way, until `deadline`.
        case connecting(deadline: UInt64)
        case connected
        /// Closed after a failure: commands fail at once until `until`; the first command after
        /// it reconnects.
        case backingOff(until: UInt64, lastError: RESPError)
        case shutDown
    }

    struct Waiting {
        /// `nil` once abandoned (completed with `timeout`; its reply is dropped).
        var request: Request?
        var deadline: UInt64
    }

    public let configuration: Configuration
    public private(set) var phase: Phase = .idle
    /// Bytes to write, in command order.
    public private(set) var outgoing: [UInt8] = []
    private var waiting: [Waiting] = []
    private var head = 0
    private var input: [UInt8] = []
    private var backoff: UInt64
    private let parser: RESPParser

    public init(configuration: Configuration = Configuration(), parser: RESPParser = RESPParser()) {
        self.configuration = configuration
        self.parser = parser
        backoff = configuration.minBackoff
    }

    /// Commands waiting for a reply (abandoned ones included: they occupy the connection).
    public var pendingCount: Int { waiting.count - head }

    /// When `deadlinePassed(now:)` must next be called: the earliest command deadline, abandon
    /// limit or connect deadline; `nil` when nothing is timed.
    public var nextDeadline: UInt64? {
        var earliest: UInt64?
        func consider(_ t: UInt64) { earliest = min(earliest ?? t, t) }
        if case .connecting(let deadline) = phase { consider(deadline) }
        for w in waiting[head...] {
            consider(w.request == nil ? w.deadline &+ configuration.abandonAfter : w.deadline)
        }
        return earliest
    }

    // MARK: - Events

    /// A new command, already encoded; `deadline` in the same clock as `now`.
    public mutating func enqueue(_ request: Request, command: [UInt8], deadline: UInt64, now: UInt64) -> [Action] {
        switch phase {
        case .shutDown:
            return [.complete(request, .failure(RESPError(.shutdown, "the Redis client is shut down")))]
        case .backingOff(let until, let lastError) where now < until:
            return [.complete(request, .failure(RESPError(.connectionClosed,
                "not connected to Redis (reconnecting in \((until - now) / 1_000_000) ms; last error: \(lastError.message))")))]
        default:
            break
        }
        guard pendingCount < configuration.maxPending else {
            return [.complete(request, .failure(RESPError(.tooManyPending,
                "\(pendingCount) Redis commands already wait for replies on this connection (limit \(configuration.maxPending))")))]
        }
        if deadline <= now {
            return [.complete(request, .failure(RESPError(.timeout, "the command's deadline passed before it was sent")))]
        }
        outgoing.append(contentsOf: command)
        waiting.append(Waiting(request: request, deadline: deadline))
        switch phase {
        case .connected:
            return [.write]
        case .connecting:
            return []
        default:
            phase = .connecting(deadline: now &+ configuration.connectTimeout)
            return [.connect]
        }
    }

    /// The connection attempt succeeded.
    public mutating func connected(now: UInt64) -> [Action] {
        guard case .connecting = phase else { return [] }
        phase = .connected
        backoff = configuration.minBackoff
        return outgoing.isEmpty ? [] : [.write]
    }

    /// `count` bytes of `outgoing` were sent.
    public mutating func wrote(_ count: Int) {
        outgoing.removeFirst(min(count, outgoing.count))
    }

    /// Bytes arrived: one action per complete reply; a malformed reply or a reply nobody asked
    /// for closes the connection and fails every waiting command.
    public mutating func received(_ bytes: UnsafeRawBufferPointer, now: UInt64) -> [Action] {
        guard case .connected = phase else { return [] }
        input.append(contentsOf: bytes)
        var actions: [Action] = []
        var offset = 0
        while offset < input.count {
            let parsed: (value: RESPValue, end: Int)?
            do {
                parsed = try parser.parse(input, from: offset)
            } catch {
                return actions + fail(error, now: now, close: true)
            }
            guard let (value, end) = parsed else { break }
            offset = end
            guard head < waiting.count else {
                return actions + fail(RESPError(.malformedReply, "Redis sent a reply no command was waiting for"), now: now, close: true)
            }
            let w = waiting[head]
            head += 1
            if let request = w.request {
                if case .error(let message) = value {
                    actions.append(.complete(request, .failure(RESPError(.serverError, message))))
                } else {
                    actions.append(.complete(request, .success(value)))
                }
            }
        }
        input.removeFirst(offset)
        compact()
        return actions
    }

    /// Time passed: commands past their deadline time out; a connect past its deadline, or an
    /// abandoned command unanswered for `abandonAfter`, closes the connection.
    public mutating func deadlinePassed(now: UInt64) -> [Action] {
        if case .connecting(let deadline) = phase, deadline <= now {
            return fail(RESPError(.connectFailed, "connecting to Redis took longer than \(configuration.connectTimeout / 1_000_000) ms"), now: now, close: true)
        }
        var actions: [Action] = []
        var hung = false
        for i in head..<waiting.count {
            if let request = waiting[i].request {
                if waiting[i].deadline <= now {
                    actions.append(.complete(request, .failure(RESPError(.timeout, "no reply from Redis within the command's deadline"))))
                    waiting[i].request = nil
                }
            } else if waiting[i].deadline &+ configuration.abandonAfter <= now {
                hung = true
            }
        }
        if hung {
            actions += fail(RESPError(.timeout, "Redis left a command unanswered for \(configuration.abandonAfter / 1_000_000) ms past its deadline: connection closed"), now: now, close: true)
        }
        return actions
    }

    /// The socket failed or the server closed it (reported by the owner, who closed it).
    public mutating func closed(_ error: RESPError, now: UInt64) -> [Action] {
        switch phase {
        case .connecting, .connected: return fail(error, now: now, close: false)
        default: return []
        }
    }

    /// Fails every waiting command with `shutdown`; later commands are refused.
    public mutating func shutdown() -> [Action] {
        let wasOpen: Bool
        switch phase {
        case .connecting, .connected: wasOpen = true
        default: wasOpen = false
        }
        let requests = drainRequests()
        phase = .shutDown
        var actions: [Action] = []
        if !requests.isEmpty { actions.append(.failAll(requests, RESPError(.shutdown, "the Redis client is shut down"))) }
        if wasOpen { actions.append(.close) }
        return actions
    }

    // MARK: - Internals

    private mutating func fail(_ error: RESPError, now: UInt64, close: Bool) -> [Action] {
        let requests = drainRequests()
        phase = .backingOff(until: now &+ backoff, lastError: error)
        backoff = min(backoff &* 2, configuration.maxBackoff)
        var actions: [Action] = []
        if !requests.isEmpty { actions.append(.failAll(requests, error)) }
        if close { actions.append(.close) }
        return actions
    }

    private mutating func drainRequests() -> [Request] {
        let requests = waiting[head...].compactMap(\.request)
        waiting.removeAll(keepingCapacity: true)
        head = 0
        outgoing.removeAll(keepingCapacity: true)
        input.removeAll(keepingCapacity: true)
        return requests
    }

    /// Drops answered entries from the FIFO's front once they are half of it.
    private mutating func compact() {
        if head == waiting.count {
            waiting.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 64 && head * 2 > waiting.count {
            waiting.removeFirst(head)
            head = 0
        }
    }
}

extension RESPConnectionStateMachine: Sendable where Request: Sendable {}
extension RESPConnectionStateMachine.Waiting: Sendable where Request: Sendable {}
extension RESPConnectionStateMachine.Action: Sendable where Request: Sendable {}
extension RESPConnectionStateMachine.Action: Equatable where Request: Equatable {}
