import CLinux
import GuidonProtocol
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// One client connection, served on one event loop: newline-delimited requests in, replies out.
///
/// A read takes what the socket holds into the loop's scratch space and answers every complete
/// line straight from there (only an unfinished line, or lines held back, are copied); all the
/// lines of one read are answered from one configuration and their replies written with one
/// `send`. Replies that the socket does not take wait in `out`, and until they have gone
/// nothing more is read or answered: a client that stops reading its replies stops being
/// served, and its memory stays bounded (the reply budget, plus one read).
///
/// `@unchecked Sendable`: it is handed to its loop once, and from then on touched only there.
final class Connection: EventLoopHandler, @unchecked Sendable {
    let loop: EventLoop
    private let fd: Int32
    private var token: UInt64 = 0
    private let service: ServiceContext
    private var responder: Responder
    /// Received, not yet answered: lines held back until the replies before them are out,
    /// then the start of a line whose newline has not arrived.
    private var held: [UInt8] = []
    /// Replies; `out[sent...]` has not been written yet.
    private var out: [UInt8] = []
    private var sent = 0
    /// What the loop watches for: `EPOLLIN` while answering, `EPOLLOUT` while replies wait.
    private var interest = EPOLLIN.rawValue
    /// Answer what has arrived, write it out, then close (the daemon drains, the client
    /// half-closed, or a line was refused).
    private var finishing = false
    /// Whether a last line without a newline counts as a request (the client half-closed).
    private var answerUnterminatedLine = false
    /// A line was too long: nothing more is answered.
    private var refused = false
    private(set) var isClosed = false

    /// Scratch and reply space kept between reads; a bigger burst's is given back.
    private static let retainedBytes = 64 * 1024
    private static let newline = Int32(UInt8(ascii: "\n"))

    private init(fd: Int32, loop: EventLoop, service: ServiceContext) {
        self.fd = fd
        self.loop = loop
        self.service = service
        responder = Responder(service: service)
        out.reserveCapacity(4096)
    }

    /// Serves the accepted socket `fd` on `loop` (call on that loop), or refuses it with an
    /// `OVERLOADED` error when the connection limit is reached or the daemon is stopping.
    static func open(_ fd: Int32, on loop: EventLoop, service: ServiceContext) {
        let connection = Connection(fd: fd, loop: loop, service: service)
        guard service.connections.admit(connection) else {
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
        if interest & EPOLLIN.rawValue != 0 {
            readable()
        } else {
            advance()
        }
    }

    func drain() {
        finishing = true
        advance()
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        loop.remove(fd, token: token)
        Glibc.close(fd)
        service.connections.remove(self)
        // The buffers go with the object: this may run while one of them is being read.
    }

    /// Sends one `watch` event, or disconnects a subscriber that has more than `backlogLimit`
    /// bytes waiting already (it is not reading; it will reconnect and list).
    func push(_ event: [UInt8], backlogLimit: Int, logger: Logger) {
        guard !isClosed else { return }
        let waiting = out.count - sent
        if waiting > 0 && waiting + event.count > backlogLimit {
            logger.warning(
                "disconnecting a watch subscriber that is not reading its events",
                metadata: ["waitingBytes": "\(waiting)", "eventBytes": "\(event.count)"])
            close()
            return
        }
        out.append(contentsOf: event)
        if waiting == 0 { advance() }
    }

    // MARK: - Reading and answering

    private func readable() {
        let count = recv(fd, loop.scratch.baseAddress, loop.scratch.count, 0)
        if count > 0 {
            let received = UnsafeRawBufferPointer(rebasing: loop.scratch[0..<count])
            if held.isEmpty {
                let used = answerLines(in: received)
                if !isClosed && !refused && used < count {
                    held.append(contentsOf: UnsafeRawBufferPointer(rebasing: received[used...]))
                }
            } else if !refused {
                held.append(contentsOf: received)
            }
        } else if count == 0 {
            // The client will send nothing more: answer what came, then hang up.
            finishing = true
            answerUnterminatedLine = true
        } else if errno != EAGAIN && errno != EINTR {
            close()
            return
        }
        advance()
    }

    /// Writes what waits, answers held lines, and decides what to wait for next: the socket's
    /// room for replies, more requests, or nothing (closed).
    private func advance() {
        while !isClosed {
            guard flush() else {
                want(EPOLLOUT.rawValue)
                return
            }
            // Nothing waits to be written.
            if !refused, held.withUnsafeBytes({ $0.count > 0 && memchr($0.baseAddress!, Self.newline, $0.count) != nil }) {
                let used = held.withUnsafeBytes { answerLines(in: $0) }
                if !isClosed {
                    held.removeFirst(min(used, held.count))
                    if held.isEmpty && held.capacity > Self.retainedBytes { held = [] }
                }
                continue
            }
            guard finishing else {
                if held.count > service.maxLineBytes {
                    tooLarge()
                    held = []
                    continue
                }
                want(EPOLLIN.rawValue)
                return
            }
            if answerUnterminatedLine && !refused && !held.isEmpty {
                answerUnterminatedLine = false
                let config = service.store.current
                held.withUnsafeBytes { answer($0, config: config) }
                held = []
                continue
            }
            close()
            return
        }
    }

    /// Answers the complete lines in `bytes` in order, all from one configuration, writing the
    /// replies out whenever they reach the reply budget; stops early when the socket does not
    /// take them. Returns how many bytes were used.
    private func answerLines(in bytes: UnsafeRawBufferPointer) -> Int {
        guard let base = bytes.baseAddress else { return 0 }
        let config = service.store.current
        var start = 0
        while let found = memchr(base + start, Self.newline, bytes.count - start) {
            if out.count - sent >= service.replyBudget && !flush() { return start }
            let end = base.distance(to: UnsafeRawPointer(found))
            if end - start > service.maxLineBytes {
                tooLarge()
                return bytes.count
            }
            answer(UnsafeRawBufferPointer(rebasing: bytes[start..<end]), config: config)
            start = end + 1
        }
        if bytes.count - start > service.maxLineBytes {
            tooLarge()
            return bytes.count
        }
        return start
    }

    private func answer(_ line: UnsafeRawBufferPointer, config: ServedConfig) {
        responder.answer(line, config: config, into: &out) {
            service.connections.subscribe(self)
        }
    }

    /// A line longer than the limit: say so, and close once that is written. (The caller
    /// drops the held bytes: this may run while they are being read.)
    private func tooLarge() {
        refused = true
        finishing = true
        ReplyEncoder.error(
            RequestError(code: .tooLarge, message: "request line longer than \(service.maxLineBytes) bytes; closing the connection"),
            into: &out)
    }

    // MARK: - Writing

    /// Writes the waiting replies: `true` once none wait, `false` while the socket is full
    /// (or the connection failed and is closed).
    private func flush() -> Bool {
        while sent < out.count {
            let written = out.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if written >= 0 {
                sent += written
            } else if errno == EINTR {
                continue
            } else {
                if errno != EAGAIN { close() }
                return false
            }
        }
        out.removeAll(keepingCapacity: out.capacity <= Self.retainedBytes)
        sent = 0
        return true
    }

    private func want(_ events: UInt32) {
        guard interest != events else { return }
        interest = events
        loop.modify(fd, token: token, events: events)
    }
}
