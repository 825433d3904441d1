import CLinux
import GuidonUnixSocket
import NIOConcurrencyHelpers
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A small Redis client: a fixed pool of connections served by one poll thread of its own.
///
/// `send` never blocks its caller. When a connection is open and has nothing left to write,
/// the caller writes its command itself (non-blocking, under that connection's lock): one
/// thread hand-off fewer per command than queueing it for the poll thread, which measured
/// about 20 µs of a 70 µs round trip on the loaded 2-core test machine. Otherwise the command
/// is queued and the poll thread, woken through an eventfd, connects (with backoff after a
/// failure) and writes everything queued on a connection with one `send` (pipelining). The
/// poll thread reads every reply and calls each completion **on the client's thread**, in
/// reply order per connection. All protocol logic (the FIFO, deadlines, backoff) is in
/// `RESPConnectionStateMachine`; this class only carries out its actions on real sockets.
///
/// Deadlines are enforced by the poll thread, which wakes for the earliest one and at least
/// every `tick` (5 ms) while a connection is open (a command written by its caller does not wake
/// it): a command fails with `timeout` at most `tick` after its deadline.
public final class RESPClient: Sendable {
    public typealias Completion = @Sendable (Result<RESPValue, RESPError>) -> Void

    public struct Configuration: Sendable {
        public var address: RedisAddress
        /// Connections in the pool (default 2).
        public var connections: Int
        /// Per-connection timing and limits.
        public var connection: RESPConnectionConfiguration
        /// The longest the poll thread sleeps while a connection is open, in nanoseconds
        /// (default 5 ms): how late past its deadline a command may fail.
        public var tick: UInt64

        public init(address: RedisAddress, connections: Int = 2, connection: RESPConnectionConfiguration = RESPConnectionConfiguration(), tick: UInt64 = 5_000_000) {
            self.address = address
            self.connections = max(1, connections)
            self.connection = connection
            self.tick = max(500_000, tick)
        }
    }

    private struct Submission: Sendable {
        var command: [UInt8]
        var deadline: UInt64
        var completion: Completion
    }

    private struct Queue {
        var items: [Submission] = []
        /// A wake-up is posted and not yet consumed.
        var woken = false
        var stopping = false
    }

    private enum State {
        case idle
        case running(pthread_t)
        case stopped
    }

    typealias Machine = RESPConnectionStateMachine<Completion>

    /// One connection: its socket and its protocol state, under one lock (the poll thread and
    /// callers writing their own commands both use it).
    final class Connection: Sendable {
        struct State {
            var fd: Int32 = -1
            var machine: Machine
            /// Bytes are waiting in `outgoing` for the poll thread to write.
            var wantsWrite = false
        }
        let state: NIOLockedValueBox<State>
        init(_ configuration: RESPConnectionConfiguration) { state = NIOLockedValueBox(State(machine: Machine(configuration: configuration))) }
    }

    public let configuration: Configuration
    private let queue = NIOLockedValueBox(Queue())
    private let state = NIOLockedValueBox(State.idle)
    /// An eventfd: `send` writes to it to wake `poll`.
    private let wakeFD: Int32
    private let target: ConnectTarget
    private let connections: [Connection]
    private let nextConnection = Atomic<Int>(0)

    public init(configuration: Configuration) throws(RESPError) {
        self.configuration = configuration
        target = try ConnectTarget.resolve(configuration.address)
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wakeFD >= 0 else { throw RESPError(.connectFailed, "eventfd: \(String(cString: strerror(errno)))") }
        connections = (0..<configuration.connections).map { _ in Connection(configuration.connection) }
    }

    deinit {
        close(wakeFD)
        for c in connections { c.state.withLockedValue { if $0.fd >= 0 { close($0.fd) } } }
    }

    /// Monotonic nanoseconds: the clock of every deadline here.
    public static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    // MARK: - From any thread

    /// Starts the poll thread (connections open on first use).
    public func start() {
        state.withLockedValue { state in
            guard case .idle = state else { return }
            let loop = PollLoop(client: self)
            let box = Unmanaged.passRetained(loop).toOpaque()
            var thread = pthread_t()
            let created = pthread_create(&thread, nil, { box in
                let loop = Unmanaged<PollLoop>.fromOpaque(box!).takeRetainedValue()
                _ = pthread_setname_np(pthread_self(), "guidon-redis")
                loop.run()
                return nil
            }, box)
            precondition(created == 0, "cannot start the Redis client thread: \(created)")
            state = .running(thread)
        }
    }

    /// Sends `command` (encoded by `RESPCommand`); `completion` is called on the client's
    /// thread with the reply, or with an error by `deadline` (monotonic nanoseconds, see `now()`)
    /// plus `tick` at the latest.
    public func send(_ command: [UInt8], deadline: UInt64, completion: @escaping Completion) {
        if sendDirectly(command, deadline: deadline, completion: completion) { return }
        let (wake, refused) = queue.withLockedValue { queue -> (Bool, Bool) in
            if queue.stopping { return (false, true) }
            queue.items.append(Submission(command: command, deadline: deadline, completion: completion))
            defer { queue.woken = true }
            return (!queue.woken, false)
        }
        if refused {
            completion(.failure(RESPError(.shutdown, "the Redis client is shut down")))
        } else if wake {
            self.wake()
        }
    }

    /// `send` with a deadline `timeout` from now.
    public func send(_ command: [UInt8], timeout: Duration, completion: @escaping Completion) {
        let (seconds, attoseconds) = timeout.components
        let nanos = UInt64(max(0, seconds)) &* 1_000_000_000 &+ UInt64(max(0, attoseconds) / 1_000_000_000)
        send(command, deadline: Self.now() &+ nanos, completion: completion)
    }

    /// Writes `command` from the caller's thread on an open connection with nothing queued;
    /// false when there is none (the poll thread then takes the command).
    private func sendDirectly(_ command: [UInt8], deadline: UInt64, completion: @escaping Completion) -> Bool {
        let first = nextConnection.wrappingAdd(1, ordering: .relaxed).oldValue
        for k in 0..<connections.count {
            let connection = connections[(first &+ k) % connections.count]
            let (handled, refusal, needsPollThread): (Bool, Result<RESPValue, RESPError>?, Bool) = connection.state.withLockedValue { c in
                guard c.fd >= 0, case .connected = c.machine.phase, c.machine.outgoing.isEmpty, !c.wantsWrite else { return (false, nil, false) }
                var refusal: Result<RESPValue, RESPError>?
                for action in c.machine.enqueue(completion, command: command, deadline: deadline, now: Self.now()) {
                    if case .complete(_, let result) = action { refusal = result }
                }
                guard refusal == nil else { return (true, refusal, false) }
                let n = c.machine.outgoing.withUnsafeBytes { raw in
                    Glibc.send(c.fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                }
                if n > 0 { c.machine.wrote(n) }
                // A short write, a full socket buffer or an error: the poll thread carries on.
                guard c.machine.outgoing.isEmpty else {
                    c.wantsWrite = true
                    return (true, nil, true)
                }
                return (true, nil, false)
            }
            if let refusal { completion(refusal) }
            if needsPollThread { wake() }
            if handled { return true }
        }
        return false
    }

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    /// Fails what is waiting with `shutdown`, closes the connections and stops the thread.
    /// Safe to call twice, and from a completion (then it does not wait for the thread).
    public func shutdown() {
        let thread: pthread_t? = state.withLockedValue { state in
            defer { state = .stopped }
            if case .running(let thread) = state { return thread }
            return nil
        }
        queue.withLockedValue { $0.stopping = true }
        guard let thread else {
            // Never started: fail what was queued here.
            let items = queue.withLockedValue { queue in defer { queue.items = [] }; return queue.items }
            for item in items { item.completion(.failure(RESPError(.shutdown, "the Redis client is shut down"))) }
            return
        }
        wake()
        if pthread_equal(thread, pthread_self()) != 0 {
            pthread_detach(thread)
        } else {
            pthread_join(thread, nil)
        }
    }

    private func take() -> (items: [Submission], stopping: Bool) {
        queue.withLockedValue { queue in
            defer {
                queue.items.removeAll(keepingCapacity: true)
                queue.woken = false
            }
            return (queue.items, queue.stopping)
        }
    }

    // MARK: - On the client's thread

    /// The poll loop. `@unchecked Sendable`: handed to the thread once, at start; its scratch
    /// buffer is touched only by that thread (the connections are behind their own locks).
    private final class PollLoop: @unchecked Sendable {
        let client: RESPClient
        private var scratch = [UInt8](repeating: 0, count: 64 * 1024)
        /// Completions to call once the connection's lock is released.
        private var ready: [(Completion, Result<RESPValue, RESPError>)] = []

        init(client: RESPClient) { self.client = client }

        var connections: [Connection] { client.connections }
        var target: ConnectTarget { client.target }

        func run() {
            var fds = [pollfd](repeating: pollfd(), count: connections.count + 1)
            while true {
                var now = RESPClient.now()
                var timeout: Int32 = -1
                for (i, connection) in connections.enumerated() {
                    let (fd, events, deadline, open) = connection.state.withLockedValue { c -> (Int32, Int16, UInt64?, Bool) in
                        var events = Int16(POLLIN)
                        var open = false
                        switch c.machine.phase {
                        case .connecting: events |= Int16(POLLOUT)
                        case .connected:
                            open = true
                            if !c.machine.outgoing.isEmpty { events |= Int16(POLLOUT) }
                        default: break
                        }
                        return (c.fd, events, c.machine.nextDeadline, open)
                    }
                    fds[i + 1] = pollfd(fd: fd, events: events, revents: 0)
                    var wait = deadline.map { $0 <= now ? UInt64(0) : $0 - now }
                    if open { wait = min(wait ?? client.configuration.tick, client.configuration.tick) }
                    if let wait {
                        let ms = Int32(min((wait + 999_999) / 1_000_000, 60_000))
                        timeout = timeout < 0 ? ms : min(timeout, ms)
                    }
                }
                fds[0] = pollfd(fd: client.wakeFD, events: Int16(POLLIN), revents: 0)
                let ready = poll(&fds, nfds_t(fds.count), timeout)
                if ready < 0 && errno != EINTR { fatalError("poll failed in the Redis client: \(String(cString: strerror(errno)))") }
                now = RESPClient.now()

                if fds[0].revents != 0 {
                    var value: UInt64 = 0
                    _ = Glibc.read(client.wakeFD, &value, 8)
                }
                let (items, stopping) = client.take()
                if stopping {
                    let error = RESPError(.shutdown, "the Redis client is shut down")
                    for item in items { item.completion(.failure(error)) }
                    for c in connections { withConnection(c, now: now) { $0.machine.shutdown() } }
                    return
                }
                for item in items {
                    let c = choose(now: now)
                    withConnection(c, now: now) { $0.machine.enqueue(item.completion, command: item.command, deadline: item.deadline, now: now) }
                }
                for (i, c) in connections.enumerated() where fds[i + 1].fd >= 0 && fds[i + 1].revents != 0 {
                    let revents = fds[i + 1].revents
                    withConnection(c, now: now) { state -> [Machine.Action] in
                        guard state.fd == fds[i + 1].fd else { return [] }  // replaced meanwhile
                        if case .connecting = state.machine.phase { return self.finishConnect(&state, now: now) }
                        if revents & Int16(POLLOUT) != 0 { state.wantsWrite = true }
                        return revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 ? self.receive(&state, now: now) : []
                    }
                }
                for c in connections {
                    withConnection(c, now: now) { state -> [Machine.Action] in
                        var actions: [Machine.Action] = []
                        if state.wantsWrite { actions += self.flush(&state, now: now) }
                        if state.machine.nextDeadline.map({ $0 <= now }) ?? false { actions += state.machine.deadlinePassed(now: now) }
                        return actions
                    }
                }
            }
        }

        /// Runs `body` under the connection's lock, carries out the actions it returns (socket
        /// work under the lock), then calls the completions after releasing it.
        private func withConnection(_ c: Connection, now: UInt64, _ body: (inout Connection.State) -> [Machine.Action]) {
            c.state.withLockedValue { state in
                var pending = body(&state)
                while !pending.isEmpty {
                    var next: [Machine.Action] = []
                    for action in pending {
                        switch action {
                        case .connect: next += open(&state, now: now)
                        case .write: state.wantsWrite = true
                        case .complete(let completion, let result): ready.append((completion, result))
                        case .failAll(let completions, let error): for completion in completions { ready.append((completion, .failure(error))) }
                        case .close: closeSocket(&state)
                        }
                    }
                    pending = next
                }
            }
            let calls = ready
            ready.removeAll(keepingCapacity: true)
            for (completion, result) in calls { completion(result) }
        }

        /// The connection a queued command goes to: the least busy open one; else one
        /// connecting; else one allowed to reconnect; else the first (which refuses at once
        /// while backing off).
        private func choose(now: UInt64) -> Connection {
            var best: Connection?
            var bestRank = Int.max
            for c in connections {
                let rank = c.state.withLockedValue { state -> Int in
                    switch state.machine.phase {
                    case .connected: return state.machine.pendingCount
                    case .connecting: return 1_000_000 + state.machine.pendingCount
                    case .idle: return 2_000_000
                    case .backingOff(let until, _): return until <= now ? 2_000_000 : 3_000_000
                    case .shutDown: return Int.max
                    }
                }
                if rank < bestRank { (best, bestRank) = (c, rank) }
            }
            return best ?? connections[0]
        }

        private func closeSocket(_ state: inout Connection.State) {
            if state.fd >= 0 { close(state.fd) }
            state.fd = -1
            state.wantsWrite = false
        }

        /// The socket failed: close it and tell the machine.
        private func failed(_ state: inout Connection.State, _ error: RESPError, now: UInt64) -> [Machine.Action] {
            closeSocket(&state)
            return state.machine.closed(error, now: now)
        }

        private func open(_ state: inout Connection.State, now: UInt64) -> [Machine.Action] {
            closeSocket(&state)
            let fd = socket(target.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else {
                return failed(&state, RESPError(.connectFailed, "socket: \(String(cString: strerror(errno)))"), now: now)
            }
            state.fd = fd
            if target.family != AF_UNIX {
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            if target.connect(fd) == 0 { return state.machine.connected(now: now) }
            if errno == EINPROGRESS || errno == EAGAIN { return [] }
            return failed(&state, RESPError(.connectFailed, "cannot connect to \(target.name): \(String(cString: strerror(errno)))"), now: now)
        }

        private func finishConnect(_ state: inout Connection.State, now: UInt64) -> [Machine.Action] {
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(state.fd, SOL_SOCKET, SO_ERROR, &error, &length)
            if error == 0 { return state.machine.connected(now: now) }
            return failed(&state, RESPError(.connectFailed, "cannot connect to \(target.name): \(String(cString: strerror(error)))"), now: now)
        }

        private func flush(_ state: inout Connection.State, now: UInt64) -> [Machine.Action] {
            state.wantsWrite = false
            guard state.fd >= 0, case .connected = state.machine.phase, !state.machine.outgoing.isEmpty else { return [] }
            let fd = state.fd
            let n = state.machine.outgoing.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if n > 0 {
                state.machine.wrote(n)
            } else if n < 0 && errno != EAGAIN && errno != EINTR {
                return failed(&state, RESPError(.connectionClosed, "writing to \(target.name): \(String(cString: strerror(errno)))"), now: now)
            }
            return []
        }

        private func receive(_ state: inout Connection.State, now: UInt64) -> [Machine.Action] {
            var actions: [Machine.Action] = []
            // A bounded number of reads per wake-up keeps one busy connection from starving the others.
            for _ in 0..<16 {
                guard state.fd >= 0 else { break }
                let fd = state.fd
                let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n > 0 {
                    actions += scratch.withUnsafeBytes { state.machine.received(UnsafeRawBufferPointer(rebasing: $0[0..<n]), now: now) }
                    if n < scratch.count { break }
                } else if n == 0 {
                    actions += failed(&state, RESPError(.connectionClosed, "\(target.name) closed the connection"), now: now)
                    break
                } else {
                    if errno == EAGAIN || errno == EINTR { break }
                    actions += failed(&state, RESPError(.connectionClosed, "reading from \(target.name): \(String(cString: strerror(errno)))"), now: now)
                    break
                }
            }
            return actions
        }
    }
}

/// A resolved server address, ready for `connect(2)`.
struct ConnectTarget: Sendable {
    let family: Int32
    let name: String
    private let storage: [UInt8]
    private let path: String?

    static func resolve(_ address: RedisAddress) throws(RESPError) -> ConnectTarget {
        switch address {
        case .unix(let path):
            return ConnectTarget(family: AF_UNIX, name: address.description, storage: [], path: path)
        case .tcp(let host, let port):
            var hints = addrinfo()
            hints.ai_family = AF_UNSPEC
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var result: UnsafeMutablePointer<addrinfo>?
            let rc = getaddrinfo(host, String(port), &hints, &result)
            guard rc == 0, let first = result else {
                throw RESPError(.invalidAddress, "cannot resolve Redis host '\(host)': \(String(cString: gai_strerror(rc)))")
            }
            defer { freeaddrinfo(result) }
            let bytes = Array(UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
            return ConnectTarget(family: first.pointee.ai_family, name: address.description, storage: bytes, path: nil)
        }
    }

    /// `connect(2)`: 0, or -1 with `errno` set.
    func connect(_ fd: Int32) -> Int32 {
        if let path { return UnixSocket.connect(fd, to: path) }
        return storage.withUnsafeBytes { raw in
            Glibc.connect(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
    }
}
