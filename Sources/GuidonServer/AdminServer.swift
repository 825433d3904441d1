import Atomics
import CLinux
import Dispatch
import GuidonJSON
import GuidonProtocol
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// The admin socket: a second NDJSON socket that takes the `document.verb` operations (and
/// answers the query operations too, so that one connection does for the CLI).
///
/// Admin traffic is rare, so it has one small event loop of its own rather than a share of the
/// query loops: a write, however slow, never delays a query, and the query loops' code knows
/// nothing of writes. Each connection is served one request at a time: a write is handed to the
/// `DocumentWriter` (the reload thread), and the connection reads nothing more until its reply
/// is back. Connections beyond `maxConnections` get `OVERLOADED`; lines longer than the query
/// socket's limit get `TOO_LARGE`, as there. Every connection is identified by `SO_PEERCRED`.
final class AdminServer: Sendable {
    let loop: EventLoop
    private let listener: AdminListener
    let path: String?

    init(
        socket: ListeningSocket, path: String?, service: ServiceContext, writer: DocumentWriter, maxConnections: Int, logger: Logger
    ) throws(StartupError) {
        do throws(EventLoop.Failure) {
            loop = try EventLoop(name: "guidon-admin")
        } catch {
            throw StartupError(description: "cannot start the admin loop: \(error)")
        }
        loop.start()
        self.path = path
        listener = AdminListener(
            socket: socket, loop: loop, service: service, writer: writer, maxConnections: maxConnections, logger: logger)
        let registered = DispatchSemaphore(value: 0)
        let failure = NIOLockedValueBox<String?>(nil)
        loop.execute { [listener] in
            if !listener.start() { failure.withLockedValue { $0 = errnoText() } }
            registered.signal()
        }
        registered.wait()
        if let reason = failure.withLockedValue({ $0 }) {
            loop.stop()
            throw StartupError(description: "cannot watch the admin socket: \(reason)")
        }
    }

    /// Stops accepting, closes the listening socket and removes its file (if guidond made it).
    func closeListener() {
        let closed = DispatchSemaphore(value: 0)
        loop.execute { [listener] in
            listener.close()
            closed.signal()
        }
        closed.wait()
    }

    /// Lets every connection finish the request it is on (a write in progress included), then
    /// closes it; waits until all are closed or `timeout` has passed.
    func drain(timeout: Duration) -> Bool {
        loop.drainAll()
        let deadline = ContinuousClock.now + timeout
        while listener.open.load(ordering: .relaxed) > 0 {
            if ContinuousClock.now >= deadline { return false }
            usleep(2_000)
        }
        return true
    }

    func stop() {
        loop.stop()
    }
}

/// Accepts admin connections (on the admin loop).
///
/// `@unchecked Sendable`: after `start`, touched only on its loop (`open` is atomic).
private final class AdminListener: EventLoopHandler, @unchecked Sendable {
    let socket: ListeningSocket
    let loop: EventLoop
    let service: ServiceContext
    let writer: DocumentWriter
    let maxConnections: Int
    let logger: Logger
    /// Open connections (read by `drain` from another thread).
    let open = ManagedAtomic(0)
    private var token: UInt64 = 0
    private var isOpen = true

    init(socket: ListeningSocket, loop: EventLoop, service: ServiceContext, writer: DocumentWriter, maxConnections: Int, logger: Logger) {
        self.socket = socket
        self.loop = loop
        self.service = service
        self.writer = writer
        self.maxConnections = maxConnections
        self.logger = logger
    }

    func start() -> Bool {
        guard let token = loop.register(socket.fd, events: EPOLLIN.rawValue, handler: self) else { return false }
        self.token = token
        return true
    }

    func ready(_ events: UInt32) {
        while isOpen {
            let fd = accept4(socket.fd, nil, nil, Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue))
            guard fd >= 0 else {
                switch errno {
                case EINTR, ECONNABORTED: continue
                case EAGAIN, EWOULDBLOCK: return
                default:
                    logger.warning("cannot accept an admin connection: \(errnoText())")
                    usleep(10_000)
                    return
                }
            }
            guard open.load(ordering: .relaxed) < maxConnections else {
                var reply: [UInt8] = []
                ReplyEncoder.error(
                    RequestError(code: .overloaded, message: "too many admin connections (limit \(maxConnections)); try again later"), into: &reply)
                _ = reply.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                Glibc.close(fd)
                continue
            }
            let connection = AdminConnection(fd: fd, peer: Peer.of(fd), listener: self)
            guard let token = loop.register(fd, events: EPOLLIN.rawValue, handler: connection) else {
                Glibc.close(fd)
                continue
            }
            connection.token = token
            open.wrappingIncrement(ordering: .relaxed)
        }
    }

    func drain() {}

    func close() {
        guard isOpen else { return }
        isOpen = false
        loop.remove(socket.fd, token: token)
        socket.close()
    }
}

/// One admin connection: lines in, one reply per line out, in order, one request at a time.
///
/// `@unchecked Sendable`: touched only on the admin loop (the writer's reply comes back through
/// `loop.execute`).
private final class AdminConnection: EventLoopHandler, @unchecked Sendable {
    private let fd: Int32
    private let peer: Peer?
    private unowned let listener: AdminListener
    var token: UInt64 = 0
    private var responder: Responder
    /// Received and not yet answered.
    private var input: [UInt8] = []
    /// Replies not yet sent: `output[sent...]`.
    private var output: [UInt8] = []
    private var sent = 0
    /// A write is with the writer: nothing more is read or answered until its reply is back.
    private var waiting = false
    /// Answer what came, then close (the client half-closed, the daemon drains, a line was too long).
    private var finishing = false
    /// The client will send nothing more: a last line without a newline is still a request.
    private var endOfInput = false
    /// The rest of a line over the limit is being skipped.
    private var discarding = false
    private var interest = EPOLLIN.rawValue
    private var isClosed = false

    init(fd: Int32, peer: Peer?, listener: AdminListener) {
        self.fd = fd
        self.peer = peer
        self.listener = listener
        responder = Responder(service: listener.service, socket: fd)
    }

    private var maxLineBytes: Int { listener.service.maxLineBytes }

    func ready(_ events: UInt32) {
        if waiting && events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            // Gone while its write is in progress: the write completes (and is audited) unanswered.
            return close()
        }
        if !finishing && !waiting && events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            let scratch = listener.loop.scratch
            let count = recv(fd, scratch.baseAddress, scratch.count, 0)
            if count > 0 {
                input.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[0..<count]))
            } else if count == 0 {
                finishing = true
                endOfInput = true
            } else if errno != EAGAIN && errno != EINTR {
                return close()
            }
        }
        advance()
    }

    func drain() {
        finishing = true
        advance()
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        listener.loop.remove(fd, token: token)
        Glibc.close(fd)
        listener.open.wrappingDecrement(ordering: .relaxed)
    }

    /// Writes what waits, answers what can be answered, and decides what to wait for.
    private func advance() {
        while !isClosed {
            guard flush() else { return close() }
            if sent < output.count { return want(EPOLLOUT.rawValue) }
            if waiting { return want(0) }
            if let newline = input.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(input[..<newline])
                input.removeSubrange(...newline)
                if discarding {
                    discarding = false
                } else {
                    answer(line)
                }
                continue
            }
            if input.count > maxLineBytes || (discarding && !input.isEmpty) {
                if !discarding { tooLarge() }
                input = []
                continue
            }
            if finishing {
                if endOfInput && !input.isEmpty && !discarding {
                    let line = input
                    input = []
                    answer(line)
                    continue
                }
                return close()
            }
            return want(EPOLLIN.rawValue)
        }
    }

    private func answer(_ line: [UInt8]) {
        guard line.count <= maxLineBytes else {
            tooLarge()
            discarding = false
            return
        }
        var line = line
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }
        let request: AdminRequest
        do {
            request = try AdminRequest.parse(line)
        } catch {
            ReplyEncoder.error(error, into: &output)
            return
        }
        guard !request.document.isEmpty else {
            // A query operation: answered here, from what is served, as on the query socket.
            if request.op == "watch" {
                ReplyEncoder.error(
                    RequestError(code: .invalidRequest, message: "watch is served on the query socket, not the admin socket", id: request.id),
                    into: &output)
                return
            }
            let config = listener.service.store.current
            let deferral = line.withUnsafeBytes { responder.answer($0, config: config, into: &output, subscribe: {}) }
            if let deferral {
                // The store answers later (Redis): nothing more is answered until it has.
                waiting = true
                let loop = listener.loop
                deferral.start { [self] reply, _ in loop.execute { self.deliver(reply) } }
            }
            return
        }
        waiting = true
        let loop = listener.loop
        if request.document == "usage" {
            QuotaAdmin.handle(request, service: listener.service, writer: listener.writer, from: Caller(socket: "admin", peer: peer)) {
                [self] reply in loop.execute { self.deliver(reply) }
            }
            return
        }
        listener.writer.submit(request, from: Caller(socket: "admin", peer: peer)) { [self] reply in
            loop.execute { self.deliver(reply) }
        }
    }

    private func deliver(_ reply: [UInt8]) {
        waiting = false
        guard !isClosed else { return }
        output += reply
        advance()
    }

    /// A line over the limit is refused and skipped up to its newline; unlike the query
    /// socket's, the connection stays open (an admin client is a person or a script that
    /// should learn what went wrong and go on).
    private func tooLarge() {
        ReplyEncoder.error(
            RequestError(code: .tooLarge, message: "request line longer than \(maxLineBytes) bytes; it was not read (nothing changed)"),
            into: &output)
        discarding = true
    }

    /// Sends what waits; `false` when the client is gone.
    private func flush() -> Bool {
        while sent < output.count {
            let offset = sent
            let n = output.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n >= 0 {
                sent += n
            } else if errno == EINTR {
                continue
            } else {
                return errno == EAGAIN
            }
        }
        output.removeAll(keepingCapacity: true)
        sent = 0
        return true
    }

    private func want(_ events: UInt32) {
        guard !isClosed, interest != events else { return }
        interest = events
        listener.loop.modify(fd, token: token, events: events)
    }
}
