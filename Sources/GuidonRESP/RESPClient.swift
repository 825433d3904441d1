import CLinux
import GuidonUnixSocket
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A small Redis client: a fixed pool of connections served by one poll thread of its own.
///
/// `send` never blocks its caller: it queues the command and wakes the thread, which writes
/// everything queued on a connection with one `send` (pipelining), reads replies, and calls
/// each completion **on the client's thread**, in reply order per connection. Each command
/// has a deadline; a connection that fails is reconnected with backoff (see
/// `RESPConnectionStateMachine`, which holds all of that logic: this class only carries out
/// its actions on real sockets).
public final class RESPClient: Sendable {
    public typealias Completion = @Sendable (Result<RESPValue, RESPError>) -> Void

    public struct Configuration: Sendable {
        public var address: RedisAddress
        /// Connections in the pool (default 2: on a 2-core host one poll thread keeps two
        /// pipelines busy; more only spreads the same replies over more reads).
        public var connections: Int
        /// Per-connection timing and limits.
        public var connection: RESPConnectionConfiguration

        public init(address: RedisAddress, connections: Int = 2, connection: RESPConnectionConfiguration = RESPConnectionConfiguration()) {
            self.address = address
            self.connections = max(1, connections)
            self.connection = connection
        }
    }

    private struct Submission {
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

    public let configuration: Configuration
    private let queue = Mutex(Queue())
    private let state = Mutex(State.idle)
    /// An eventfd: `send` writes to it to wake `poll`.
    private let wakeFD: Int32
    /// Touched only by the poll thread once started.
    private let loop: PollLoop

    public init(configuration: Configuration) throws(RESPError) {
        self.configuration = configuration
        let target = try ConnectTarget.resolve(configuration.address)
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wakeFD >= 0 else { throw RESPError(.connectFailed, "eventfd: \(String(cString: strerror(errno)))") }
        loop = PollLoop(target: target, count: configuration.connections, connection: configuration.connection, wakeFD: wakeFD)
        loop.client = self
    }

    deinit {
        close(wakeFD)
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
        state.withLock { state in
            guard case .idle = state else { return }
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

    /// Queues `command` (encoded by `RESPCommand`); `completion` is called on the client's
    /// thread with the reply, or with an error at `deadline` (monotonic nanoseconds, see `now()`)
    /// at the latest.
    public func send(_ command: [UInt8], deadline: UInt64, completion: @escaping Completion) {
        let (wake, refused) = queue.withLock { queue -> (Bool, Bool) in
            if queue.stopping { return (false, true) }
            queue.items.append(Submission(command: command, deadline: deadline, completion: completion))
            defer { queue.woken = true }
            return (!queue.woken, false)
        }
        if refused {
            completion(.failure(RESPError(.shutdown, "the Redis client is shut down")))
        } else if wake {
            var one: UInt64 = 1
            _ = write(wakeFD, &one, 8)
        }
    }

    /// `send` with a deadline `timeout` from now.
    public func send(_ command: [UInt8], timeout: Duration, completion: @escaping Completion) {
        let (seconds, attoseconds) = timeout.components
        let nanos = UInt64(max(0, seconds)) &* 1_000_000_000 &+ UInt64(max(0, attoseconds) / 1_000_000_000)
        send(command, deadline: Self.now() &+ nanos, completion: completion)
    }

    /// Fails what is waiting with `shutdown`, closes the connections and stops the thread.
    /// Safe to call twice, and from a completion (then it does not wait for the thread).
    public func shutdown() {
        let thread: pthread_t? = state.withLock { state in
            defer { state = .stopped }
            if case .running(let thread) = state { return thread }
            return nil
        }
        queue.withLock { $0.stopping = true }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
        guard let thread else {
            // Never started: fail what was queued here.
            let items = queue.withLock { queue in defer { queue.items = [] }; return queue.items }
            for item in items { item.completion(.failure(RESPError(.shutdown, "the Redis client is shut down"))) }
            return
        }
        if pthread_equal(thread, pthread_self()) != 0 {
            pthread_detach(thread)
        } else {
            pthread_join(thread, nil)
        }
    }

    private func take() -> (items: [Submission], stopping: Bool) {
        queue.withLock { queue in
            defer {
                queue.items.removeAll(keepingCapacity: true)
                queue.woken = false
            }
            return (queue.items, queue.stopping)
        }
    }

    // MARK: - On the client's thread

    /// The poll loop and everything it owns.
    ///
    /// `@unchecked Sendable`: handed to the thread once, at start; from then on only that thread
    /// touches it (the submission queue it reads is the client's, behind its lock).
    private final class PollLoop: @unchecked Sendable {
        let target: ConnectTarget
        let wakeFD: Int32
        var connections: [Connection]
        weak var client: RESPClient?
        private var scratch = [UInt8](repeating: 0, count: 64 * 1024)

        final class Connection {
            var fd: Int32 = -1
            var machine: RESPConnectionStateMachine<Completion>
            var wantsWrite = false
            init(_ configuration: RESPConnectionConfiguration) { machine = RESPConnectionStateMachine(configuration: configuration) }
        }

        init(target: ConnectTarget, count: Int, connection: RESPConnectionConfiguration, wakeFD: Int32) {
            self.target = target
            self.wakeFD = wakeFD
            connections = (0..<count).map { _ in Connection(connection) }
        }

        func run() {
            var fds = [pollfd](repeating: pollfd(), count: connections.count + 1)
            while true {
                var now = RESPClient.now()
                var timeout: Int32 = -1
                for c in connections {
                    guard let deadline = c.machine.nextDeadline else { continue }
                    let ms = deadline <= now ? 0 : Int32(min((deadline - now + 999_999) / 1_000_000, 60_000))
                    timeout = timeout < 0 ? ms : min(timeout, ms)
                }
                fds[0] = pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)
                for (i, c) in connections.enumerated() {
                    var events = Int16(POLLIN)
                    switch c.machine.phase {
                    case .connecting: events |= Int16(POLLOUT)
                    case .connected where !c.machine.outgoing.isEmpty: events |= Int16(POLLOUT)
                    default: break
                    }
                    fds[i + 1] = pollfd(fd: c.fd, events: events, revents: 0)
                }
                let ready = poll(&fds, nfds_t(fds.count), timeout)
                if ready < 0 && errno != EINTR { fatalError("poll failed in the Redis client: \(String(cString: strerror(errno)))") }
                now = RESPClient.now()

                if fds[0].revents != 0 {
                    var value: UInt64 = 0
                    _ = Glibc.read(wakeFD, &value, 8)
                }
                let (items, stopping) = client?.take() ?? ([], true)
                if stopping {
                    let error = RESPError(.shutdown, "the Redis client is shut down")
                    for item in items { item.completion(.failure(error)) }
                    for c in connections { perform(c.machine.shutdown(), on: c, now: now) }
                    return
                }
                for item in items {
                    let c = choose(now: now)
                    perform(c.machine.enqueue(item.completion, command: item.command, deadline: item.deadline, now: now), on: c, now: now)
                }
                for (i, c) in connections.enumerated() where fds[i + 1].fd >= 0 && fds[i + 1].fd == c.fd && fds[i + 1].revents != 0 {
                    let revents = fds[i + 1].revents
                    if case .connecting = c.machine.phase {
                        finishConnect(c, now: now)
                    } else {
                        if revents & Int16(POLLOUT) != 0 { c.wantsWrite = true }
                        if revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { receive(c, now: now) }
                    }
                }
                for c in connections where c.wantsWrite { flush(c, now: now) }
                for c in connections where c.machine.nextDeadline.map({ $0 <= now }) ?? false {
                    perform(c.machine.deadlinePassed(now: now), on: c, now: now)
                }
            }
        }

        /// The connection a new command goes to: the least busy open one; else one connecting;
        /// else one allowed to reconnect; else the first (which refuses at once while backing off).
        private func choose(now: UInt64) -> Connection {
            var best: Connection?
            var bestRank = Int.max
            for c in connections {
                let rank: Int
                switch c.machine.phase {
                case .connected: rank = c.machine.pendingCount
                case .connecting: rank = 1_000_000 + c.machine.pendingCount
                case .idle: rank = 2_000_000
                case .backingOff(let until, _): rank = until <= now ? 2_000_000 : 3_000_000
                case .shutDown: rank = Int.max
                }
                if rank < bestRank { (best, bestRank) = (c, rank) }
            }
            return best ?? connections[0]
        }

        private func perform(_ actions: [RESPConnectionStateMachine<Completion>.Action], on c: Connection, now: UInt64) {
            for action in actions {
                switch action {
                case .connect: open(c, now: now)
                case .write: c.wantsWrite = true
                case .complete(let completion, let result): completion(result)
                case .failAll(let completions, let error): for completion in completions { completion(.failure(error)) }
                case .close: closeSocket(c)
                }
            }
        }

        private func closeSocket(_ c: Connection) {
            if c.fd >= 0 { close(c.fd) }
            c.fd = -1
            c.wantsWrite = false
        }

        /// The socket failed: close it and tell the machine.
        private func failed(_ c: Connection, _ error: RESPError, now: UInt64) {
            closeSocket(c)
            perform(c.machine.closed(error, now: now), on: c, now: now)
        }

        private func open(_ c: Connection, now: UInt64) {
            closeSocket(c)
            let fd = socket(target.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else {
                return failed(c, RESPError(.connectFailed, "socket: \(String(cString: strerror(errno)))"), now: now)
            }
            c.fd = fd
            if target.family != AF_UNIX {
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            let rc = target.connect(fd)
            if rc == 0 {
                perform(c.machine.connected(now: now), on: c, now: now)
            } else if errno != EINPROGRESS && errno != EAGAIN {
                failed(c, RESPError(.connectFailed, "cannot connect to \(target.name): \(String(cString: strerror(errno)))"), now: now)
            }
        }

        private func finishConnect(_ c: Connection, now: UInt64) {
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &length)
            if error == 0 {
                perform(c.machine.connected(now: now), on: c, now: now)
            } else {
                failed(c, RESPError(.connectFailed, "cannot connect to \(target.name): \(String(cString: strerror(error)))"), now: now)
            }
        }

        private func flush(_ c: Connection, now: UInt64) {
            c.wantsWrite = false
            guard c.fd >= 0, case .connected = c.machine.phase, !c.machine.outgoing.isEmpty else { return }
            let n = c.machine.outgoing.withUnsafeBytes { raw in
                Glibc.send(c.fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if n > 0 {
                c.machine.wrote(n)
            } else if n < 0 && errno != EAGAIN && errno != EINTR {
                failed(c, RESPError(.connectionClosed, "writing to \(target.name): \(String(cString: strerror(errno)))"), now: now)
            }
        }

        private func receive(_ c: Connection, now: UInt64) {
            // A bounded number of reads per wake-up keeps one busy connection from starving the others.
            for _ in 0..<16 {
                guard c.fd >= 0 else { return }
                let n = scratch.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n > 0 {
                    let actions = scratch.withUnsafeBytes { c.machine.received(UnsafeRawBufferPointer(rebasing: $0[0..<n]), now: now) }
                    perform(actions, on: c, now: now)
                    if n < scratch.count { return }
                } else if n == 0 {
                    return failed(c, RESPError(.connectionClosed, "\(target.name) closed the connection"), now: now)
                } else {
                    if errno == EAGAIN || errno == EINTR { return }
                    return failed(c, RESPError(.connectionClosed, "reading from \(target.name): \(String(cString: strerror(errno)))"), now: now)
                }
            }
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
