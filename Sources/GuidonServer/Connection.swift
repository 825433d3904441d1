import Atomics
import CLinux
import GuidonMetrics
import GuidonProtocol
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// One client connection on one event loop: registers the socket, applies what its `Session`
/// asks to wait for next, and closes it. In a `LoopGroup`, it may move to another loop
/// between batches of events (`move`).
///
/// `@unchecked Sendable`: it is handed to its loop, and from then on touched only there; a
/// move hands it to the next loop the same way (through that loop's task queue). Other
/// threads reach it only through `execute`, which finds where it lives under `home`'s lock.
final class Connection: EventLoopHandler, @unchecked Sendable {
    /// The loop it lives on (read on that loop's thread only, or when it cannot move).
    private(set) var loop: EventLoop
    private let fd: Int32
    private var token: UInt64 = 0
    private let service: ServiceContext
    private var session: Session!
    /// Its loop's counters, for the outcome of a deferred `consume`.
    private var counters: LoopCounters?
    /// What the loop watches for: `EPOLLIN` while answering, `EPOLLOUT` while replies wait.
    private var interest = EPOLLIN.rawValue
    private(set) var isClosed = false
    /// The loops it may move between; `nil`: it stays on `loop`.
    private let group: LoopGroup?
    /// Its loop's position in `group`, for other threads (taken when it opens or moves, and
    /// by `execute`; never while answering).
    private let home: NIOLockedValueBox<Int>

    private init(fd: Int32, loop: EventLoop, config: LoopConfig, service: ServiceContext, group: LoopGroup?, index: Int) {
        self.fd = fd
        self.loop = loop
        self.service = service
        self.group = group
        home = NIOLockedValueBox(index)
        counters = config.counters.flatMap { $0.isCounting ? $0 : nil }
        session = Session(fd: fd, config: config, service: service) { [unowned(unsafe) self] slot, deferral in
            startDeferred(slot, deferral)
        }
    }

    /// Asks the store for a deferred reply; it comes back on the loop the connection lives on
    /// by then (it may have moved meanwhile).
    private func startDeferred(_ slot: UInt64, _ deferral: QuotaDeferral) {
        // Sent through the Redis connection of the loop it lives on now; the reply comes back
        // on that loop (or the pool's thread) and goes to wherever the connection lives by then.
        deferral.start(on: loop) { [self] reply, outcome in
            execute { connection in connection.deferredReady(slot, reply, outcome) }
        }
    }

    private func deferredReady(_ slot: UInt64, _ reply: [UInt8], _ outcome: QuotaOutcome?) {
        if let outcome, let counters {
            counters.count(counters.handle(MetricTable.quotaAnswers), outcome.rawValue)
        }
        guard !isClosed else { return }
        apply(session.deferredReady(slot, reply) { [unowned(unsafe) self] in subscribe() })
    }

    /// Serves the accepted socket `fd` on `loop` (call on that loop), answering from `config`
    /// (the loop's), or refuses it with an `OVERLOADED` error when the connection limit is
    /// reached or the daemon is stopping. In a `group`, `loop` is `group.loops[index]`.
    static func open(
        _ fd: Int32, on loop: EventLoop, config: LoopConfig, service: ServiceContext, group: LoopGroup? = nil, index: Int = 0
    ) {
        let connection = Connection(fd: fd, loop: loop, config: config, service: service, group: group, index: index)
        guard service.connections.admit(connection) else {
            if let counters = config.counters, counters.isCounting { counters.refused(.overloaded) }
            var reply: [UInt8] = []
            let limit = service.connections.limit
            ReplyEncoder.error(RequestError(code: .overloaded, message: "too many connections (limit \(limit)); try again later"), into: &reply)
            _ = reply.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            Glibc.close(fd)
            return
        }
        guard let token = loop.register(fd, events: connection.interest, handler: connection) else {
            Glibc.close(fd)
            service.connections.remove(connection)
            return
        }
        connection.token = token
        // Opened after the drain began on this loop (it was accepted just before): drain it too.
        if let group, group.draining.load(ordering: .relaxed) { connection.drain() }
    }

    /// Runs `body` on the connection's loop, wherever it lives by then (from any thread).
    func execute(_ body: @escaping @Sendable (Connection) -> Void) {
        guard let group else {
            loop.execute { [self] in body(self) }
            return
        }
        // Posted under the lock: a move posts its arrival under the same lock, so a task sent
        // to the new loop runs after the connection has arrived there.
        home.withLockedValue { current in
            let index = current
            group.loops[index].execute { [self] in
                if home.withLockedValue({ $0 }) == index { body(self) } else { execute(body) }
            }
        }
    }

    /// Moves the connection to the group's loop `index` (call on its current loop, between
    /// batches of events): it leaves this loop's epoll set here and joins the other's there,
    /// with everything it had received and not answered, and replies not yet written.
    func move(to index: Int) {
        guard let group, !isClosed, !group.draining.load(ordering: .relaxed), group.loops[index] !== loop else { return }
        loop.remove(fd, token: token)
        let target = group.loops[index], config = group.configs[index]
        home.withLockedValue { home in
            home = index
            target.execute { [self] in arrive(on: target, config: config) }
        }
    }

    private func arrive(on target: EventLoop, config: LoopConfig) {
        loop = target
        session.rehome(config)
        counters = config.counters.flatMap { $0.isCounting ? $0 : nil }
        guard let token = target.register(fd, events: interest, handler: self) else {
            isClosed = true
            Glibc.close(fd)
            service.connections.remove(self)
            return
        }
        self.token = token
        if let group, group.draining.load(ordering: .relaxed) { drain() }
    }

    // MARK: - Events

    func ready(_ events: UInt32) {
        if interest == 0 {
            // Waiting for the store's replies: only a hang-up or an error comes now.
            if events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 { close() }
            return
        }
        // The loop holds this connection while it handles the event: the closures need not
        // count references to it (once per line answered).
        let next =
            interest == EPOLLIN.rawValue
            ? session.readable(into: loop.scratch) { [unowned(unsafe) self] in subscribe() }
            : session.advance { [unowned(unsafe) self] in subscribe() }
        apply(next)
    }

    func drain() {
        apply(session.drain(subscribe: subscribe))
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        loop.remove(fd, token: token)
        Glibc.close(fd)
        service.connections.remove(self)
    }

    /// Sends one `watch` event, or disconnects a subscriber that has more than `backlogLimit`
    /// bytes waiting already (it is not reading; it will reconnect and list).
    func push(_ event: [UInt8], backlogLimit: Int, logger: Logger) {
        guard !isClosed else { return }
        let waiting = session.waiting
        if waiting > 0 && waiting + event.count > backlogLimit {
            logger.warning(
                "disconnecting a watch subscriber that is not reading its events",
                metadata: ["waitingBytes": "\(waiting)", "eventBytes": "\(event.count)"])
            close()
            return
        }
        apply(session.push(event, subscribe: subscribe))
    }

    private func subscribe() {
        service.connections.subscribe(self)
    }

    private func apply(_ next: Session.Next) {
        switch next {
        case .read: want(EPOLLIN.rawValue)
        case .write: want(EPOLLOUT.rawValue)
        case .pause: want(0)
        case .close: close()
        }
    }

    private func want(_ events: UInt32) {
        guard !isClosed, interest != events else { return }
        interest = events
        loop.modify(fd, token: token, events: events)
    }
}
