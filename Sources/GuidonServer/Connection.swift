import CLinux
import GuidonMetrics
import GuidonProtocol
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// One client connection on one event loop: registers the socket, applies what its `Session`
/// asks to wait for next, and closes it.
///
/// `@unchecked Sendable`: it is handed to its loop once, and from then on touched only there.
final class Connection: EventLoopHandler, @unchecked Sendable {
    let loop: EventLoop
    private let fd: Int32
    private var token: UInt64 = 0
    private let service: ServiceContext
    private var session: Session!
    /// The loop's counters, for the outcome of a deferred `consume`.
    private let counters: LoopCounters?
    /// What the loop watches for: `EPOLLIN` while answering, `EPOLLOUT` while replies wait.
    private var interest = EPOLLIN.rawValue
    private(set) var isClosed = false

    private init(fd: Int32, loop: EventLoop, config: LoopConfig, service: ServiceContext) {
        self.fd = fd
        self.loop = loop
        self.service = service
        counters = config.counters.flatMap { $0.isCounting ? $0 : nil }
        session = Session(fd: fd, config: config, service: service) { [unowned(unsafe) self] slot, deferral in
            startDeferred(slot, deferral)
        }
    }

    /// Asks the store for a deferred reply; it comes back on this loop.
    private func startDeferred(_ slot: UInt64, _ deferral: QuotaDeferral) {
        let loop = self.loop
        deferral.start(on: loop) { [self] reply, outcome in
            loop.execute { [self] in
                if let outcome, let counters {
                    counters.count(counters.handle(MetricTable.quotaAnswers), outcome.rawValue)
                }
                guard !isClosed else { return }
                apply(session.deferredReady(slot, reply) { [unowned(unsafe) self] in subscribe() })
            }
        }
    }

    /// Serves the accepted socket `fd` on `loop` (call on that loop), answering from `config`
    /// (the loop's), or refuses it with an `OVERLOADED` error when the connection limit is
    /// reached or the daemon is stopping.
    static func open(_ fd: Int32, on loop: EventLoop, config: LoopConfig, service: ServiceContext) {
        let connection = Connection(fd: fd, loop: loop, config: config, service: service)
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
