import Atomics
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
    private var session: Session
    /// What the loop watches for: `EPOLLIN` while answering, `EPOLLOUT` while replies wait.
    private var interest = EventLoop.sharedMode ? EPOLLIN.rawValue | EPOLLET.rawValue : EPOLLIN.rawValue
    private(set) var isClosed = false
    /// Shared epoll set (experiment): 0 idle, 1 being handled, 2 being handled and ready again.
    private let owner = ManagedAtomic<Int>(0)

    private init(fd: Int32, loop: EventLoop, config: LoopConfig, service: ServiceContext) {
        self.fd = fd
        self.loop = loop
        self.service = service
        session = Session(fd: fd, config: config, service: service)
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
        if loop.shared {
            connection.token = loop.sharedToken(for: connection)
            if !loop.add(fd, token: connection.token, events: connection.interest) {
                Glibc.close(fd)
                service.connections.remove(connection)
            }
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
        ready(events, on: loop)
    }

    func ready(_ events: UInt32, on running: EventLoop) {
        guard running.shared else {
            handle(on: running, deferring: EventLoop.deferFlush)
            return
        }
        while true {
            if owner.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged { break }
            if owner.compareExchange(expected: 1, desired: 2, ordering: .relaxed).exchanged { return }
            if owner.load(ordering: .relaxed) == 2 { return }
        }
        while true {
            guard !isClosed else { return }
            handle(on: running, deferring: false)
            if owner.compareExchange(expected: 1, desired: 0, ordering: .releasing).exchanged { return }
            owner.store(1, ordering: .relaxed)
        }
    }

    private func handle(on running: EventLoop, deferring: Bool) {
        // The loop holds this connection while it handles the event: the closures need not
        // count references to it (once per line answered).
        let next =
            interest & EPOLLIN.rawValue != 0
            ? session.readable(into: running.scratch, deferring: deferring) { [unowned(unsafe) self] in subscribe() }
            : session.advance { [unowned(unsafe) self] in subscribe() }
        apply(next)
    }

    /// Writes the replies `ready` left waiting (`Session.Next.flush`).
    func flushDeferred() {
        guard !isClosed else { return }
        apply(session.advance { [unowned(unsafe) self] in subscribe() })
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
        case .read: want(loop.shared ? EPOLLIN.rawValue | EPOLLET.rawValue : EPOLLIN.rawValue)
        case .write: want(loop.shared ? EPOLLOUT.rawValue | EPOLLET.rawValue : EPOLLOUT.rawValue)
        case .close: close()
        case .flush: loop.flushLater(self)
        }
    }

    private func want(_ events: UInt32) {
        guard !isClosed, interest != events else { return }
        interest = events
        loop.modify(fd, token: token, events: events)
    }
}
