import CLinux

#if canImport(Glibc)
import Glibc
#endif

/// What sends a command and calls back with its reply: the pool (`RESPClient`, callbacks on
/// its poll thread) or one connection driven by its owner's event loop (`RESPLoopConnection`,
/// callbacks on that loop).
public protocol RESPSender: AnyObject, Sendable {
    func send(_ command: [UInt8], deadline: UInt64, completion: @escaping RESPClient.Completion)
}

extension RESPClient: RESPSender {}

/// One Redis connection driven by its owner's event loop, not by a thread of its own: the
/// owner watches `fd` (readable, and writable while `wantsWrite`) and calls `handle`, and wakes
/// it at `nextDeadline` with `timePassed`. Completions are called on the owner's thread: a
/// reply read by the loop that asked for it completes there, with no thread hand-off.
///
/// The same `RESPConnectionStateMachine` as the pool's connections decides everything (FIFO,
/// deadlines, backoff, hung connections); this class only does its socket work. Confined to
/// one thread (`@unchecked Sendable` so that a `@Sendable` closure run on that thread may hold
/// it). After any call the owner reads `fd`, `wantsWrite` and `nextDeadline` again (or is told
/// through `changed`). A completion may send again: it is called once the state is settled.
public final class RESPLoopConnection: RESPSender, @unchecked Sendable {
    typealias Machine = RESPConnectionStateMachine<RESPClient.Completion>

    private var machine: Machine
    private let target: ConnectTarget
    public private(set) var fd: Int32 = -1
    /// Counts the sockets opened: a new socket may reuse the number of the one closed before it
    /// (the owner's registration of that one is gone with it).
    public private(set) var socketGeneration = 0
    /// The socket has bytes to write that it did not take (or a connect under way).
    public private(set) var wantsWrite = false
    private var scratch = [UInt8](repeating: 0, count: 16 * 1024)
    private var ready: [(RESPClient.Completion, Result<RESPValue, RESPError>)] = []
    /// Called after every event that may have changed `fd`, `wantsWrite` or `nextDeadline`,
    /// before the completions.
    public var changed: () -> Void = {}

    public init(address: RedisAddress, configuration: RESPConnectionConfiguration = RESPConnectionConfiguration()) throws(RESPError) {
        target = try ConnectTarget.resolve(address)
        machine = Machine(configuration: configuration)
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// When `timePassed` must be called next (monotonic nanoseconds, `RESPClient.now()`).
    public var nextDeadline: UInt64? { machine.nextDeadline }

    public func send(_ command: [UInt8], deadline: UInt64, completion: @escaping RESPClient.Completion) {
        let now = RESPClient.now()
        perform(machine.enqueue(completion, command: command, deadline: deadline, now: now), now: now)
        if fd >= 0, case .connected = machine.phase, !machine.outgoing.isEmpty { perform(flush(now: now), now: now) }
        settle()
    }

    /// The socket is ready (epoll's or poll's readiness, as booleans).
    public func handle(readable: Bool, writable: Bool, failed: Bool) {
        let now = RESPClient.now()
        guard fd >= 0 else { return settle() }
        if case .connecting = machine.phase {
            if writable || failed { perform(finishConnect(now: now), now: now) }
            return settle()
        }
        if readable || failed { perform(receive(now: now), now: now) }
        if fd >= 0, writable || wantsWrite { perform(flush(now: now), now: now) }
        settle()
    }

    /// The owner's timer: deadlines that passed are acted on.
    public func timePassed() {
        let now = RESPClient.now()
        if machine.nextDeadline.map({ $0 <= now }) ?? false { perform(machine.deadlinePassed(now: now), now: now) }
        settle()
    }

    /// Fails what waits with `shutdown` and closes the socket; later commands are refused.
    public func shutdown() {
        perform(machine.shutdown(), now: RESPClient.now())
        closeSocket()
        settle()
    }

    // MARK: - Socket work

    private func settle() {
        changed()
        guard !ready.isEmpty else { return }
        let calls = ready
        ready.removeAll(keepingCapacity: true)
        for (completion, result) in calls { completion(result) }
    }

    private func perform(_ actions: [Machine.Action], now: UInt64) {
        var pending = actions
        while !pending.isEmpty {
            var next: [Machine.Action] = []
            for action in pending {
                switch action {
                case .connect: next += open(now: now)
                case .write: next += flush(now: now)
                case .complete(let completion, let result): ready.append((completion, result))
                case .failAll(let completions, let error): for completion in completions { ready.append((completion, .failure(error))) }
                case .close: closeSocket()
                }
            }
            pending = next
        }
    }

    private func closeSocket() {
        if fd >= 0 { close(fd) }
        fd = -1
        wantsWrite = false
    }

    private func failed(_ error: RESPError, now: UInt64) -> [Machine.Action] {
        closeSocket()
        return machine.closed(error, now: now)
    }

    private func open(now: UInt64) -> [Machine.Action] {
        closeSocket()
        let socketFD = socket(target.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard socketFD >= 0 else { return failed(RESPError(.connectFailed, "socket: \(String(cString: strerror(errno)))"), now: now) }
        fd = socketFD
        socketGeneration &+= 1
        if target.family != AF_UNIX {
            var one: Int32 = 1
            setsockopt(socketFD, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        if target.connect(socketFD) == 0 { return machine.connected(now: now) }
        if errno == EINPROGRESS || errno == EAGAIN {
            wantsWrite = true
            return []
        }
        return failed(RESPError(.connectFailed, "cannot connect to \(target.name): \(String(cString: strerror(errno)))"), now: now)
    }

    private func finishConnect(now: UInt64) -> [Machine.Action] {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        wantsWrite = false
        if error == 0 { return machine.connected(now: now) }
        return failed(RESPError(.connectFailed, "cannot connect to \(target.name): \(String(cString: strerror(error)))"), now: now)
    }

    private func flush(now: UInt64) -> [Machine.Action] {
        guard fd >= 0, case .connected = machine.phase else { return [] }
        wantsWrite = false
        guard !machine.outgoing.isEmpty else { return [] }
        let socketFD = fd
        let n = machine.outgoing.withUnsafeBytes { raw in
            Glibc.send(socketFD, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
        }
        if n > 0 {
            machine.wrote(n)
        } else if n < 0 && errno != EAGAIN && errno != EINTR {
            return failed(RESPError(.connectionClosed, "writing to \(target.name): \(String(cString: strerror(errno)))"), now: now)
        }
        wantsWrite = !machine.outgoing.isEmpty
        return []
    }

    private func receive(now: UInt64) -> [Machine.Action] {
        var actions: [Machine.Action] = []
        for _ in 0..<16 {
            guard fd >= 0 else { break }
            let socketFD = fd
            let n = scratch.withUnsafeMutableBytes { recv(socketFD, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                actions += scratch.withUnsafeBytes { machine.received(UnsafeRawBufferPointer(rebasing: $0[0..<n]), now: now) }
                if n < scratch.count { break }
            } else if n == 0 {
                actions += failed(RESPError(.connectionClosed, "\(target.name) closed the connection"), now: now)
                break
            } else {
                if errno == EAGAIN || errno == EINTR { break }
                actions += failed(RESPError(.connectionClosed, "reading from \(target.name): \(String(cString: strerror(errno)))"), now: now)
                break
            }
        }
        return actions
    }
}
