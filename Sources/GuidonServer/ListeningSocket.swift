import CLinux
import Dispatch
import GuidonSystemd
import GuidonUnixSocket
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// The listening socket: the one systemd passed (socket activation), else one bound at `path`.
struct ListeningSocket {
    let fd: Int32
    /// Set when guidond bound the socket itself: the path and the identity of the file it created.
    private let created: (path: UnixSocketPath, identity: UnixSocketPath.Identity?)?
    /// Queued connections the kernel keeps for us (a socket systemd passed has its own).
    static let backlog: Int32 = 512

    /// Which of guidond's sockets: systemd tells them apart by `FileDescriptorName=`.
    enum Role: String {
        /// The query socket (`FileDescriptorName=query`; a socket without a name is taken for it).
        case query
        /// The admin socket (`FileDescriptorName=admin`).
        case admin
    }

    static func open(path: String, logger: Logger) throws(StartupError) -> ListeningSocket {
        try open(path: path, role: .query, inherited: SocketActivation.inheritedSockets(), logger: logger)!
    }

    /// The socket for `role`: the one systemd passed (socket activation), else one bound at
    /// `path` (with `mode`, when given). `nil` for the admin socket when systemd passed sockets but
    /// not that one (the socket unit is not enabled): then there is none.
    static func open(
        path: String, role: Role, inherited: [InheritedSocket], mode: mode_t? = nil, logger: Logger
    ) throws(StartupError) -> ListeningSocket? {
        if !inherited.isEmpty {
            let listeners = inherited.filter(\.isUnixStreamListener)
            let chosen: InheritedSocket?
            switch role {
            case .query:
                chosen = listeners.first { $0.name == Role.query.rawValue }
                    ?? listeners.first { $0.name != Role.admin.rawValue && !HTTPPlan.socketNames.contains($0.name) }
            case .admin: chosen = listeners.first { $0.name == Role.admin.rawValue }
            }
            guard let activated = chosen else {
                if role == .admin { return nil }
                throw StartupError(description: "systemd passed \(inherited.count) socket(s), none a listening Unix stream socket for queries")
            }
            let fd = activated.fileDescriptor
            guard fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0 else {
                throw StartupError(description: "cannot use the socket passed by systemd: \(errnoText())")
            }
            logger.info("listening on the \(role.rawValue) socket passed by systemd", metadata: ["socketName": "\(activated.name)"])
            return ListeningSocket(fd: fd, created: nil)
        }
        let socketPath = UnixSocketPath(path: path)
        do throws(UnixSocketPath.Problem) {
            try socketPath.prepare()
        } catch {
            throw StartupError(description: error.description)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw StartupError(description: "cannot listen on \(path): socket: \(errnoText())") }
        guard UnixSocket.bind(fd, to: path) == 0, mode.map({ chmod(path, $0) == 0 }) ?? true, listen(fd, backlog) == 0 else {
            let reason = errnoText()
            Glibc.close(fd)
            throw StartupError(description: "cannot listen on \(path): \(reason)")
        }
        logger.info("listening on \(path)\(role == .admin ? " (admin)" : "")")
        return ListeningSocket(fd: fd, created: (socketPath, socketPath.identity()))
    }

    /// Closes the socket (when no loop took it over) and removes the file guidond created.
    func close() {
        Glibc.close(fd)
        removeSocketFile()
    }

    /// Removes the socket file, if guidond created it and it is still the same file.
    /// A socket passed by systemd is never unlinked.
    func removeSocketFile() {
        guard let created else { return }
        created.path.remove(ifStill: created.identity)
    }
}

/// Accepts connections on the listening socket (on the first loop) and hands them to the
/// group's loops: to the first, or, while the group is spread, to the loops in turn.
///
/// `@unchecked Sendable`: after `start`, touched only on its loop.
final class Acceptor: EventLoopHandler, @unchecked Sendable {
    private let socket: ListeningSocket
    private let group: LoopGroup
    private let service: ServiceContext
    private let logger: Logger
    private var token: UInt64 = 0
    private var next = 0
    private var isOpen = true

    init(socket: ListeningSocket, group: LoopGroup, service: ServiceContext, logger: Logger) {
        self.socket = socket
        self.group = group
        self.service = service
        self.logger = logger
    }

    var loop: EventLoop { group.loops[0] }

    /// Starts accepting (call from any thread; returns once the loop watches the socket).
    func start() throws(StartupError) {
        let registered = DispatchSemaphore(value: 0)
        let failure = NIOLockedValueBox<String?>(nil)
        loop.execute { [self] in
            if let token = loop.register(socket.fd, events: EPOLLIN.rawValue, handler: self) {
                self.token = token
            } else {
                failure.withLockedValue { $0 = errnoText() }
            }
            registered.signal()
        }
        registered.wait()
        if let reason = failure.withLockedValue({ $0 }) {
            throw StartupError(description: "cannot watch the listening socket: \(reason)")
        }
    }

    func ready(_ events: UInt32) {
        while isOpen {
            let fd = accept4(socket.fd, nil, nil, Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue))
            guard fd >= 0 else {
                switch errno {
                case EAGAIN, EWOULDBLOCK:
                    return
                case EINTR, ECONNABORTED:
                    continue
                default:
                    // Out of file descriptors or memory: the connection stays queued. Pause this
                    // loop briefly rather than spin on a listener that stays readable.
                    logger.warning("cannot accept a connection: \(errnoText())")
                    usleep(10_000)
                    return
                }
            }
            let index = group.placement(next)
            next &+= 1
            let (target, config, group, service) = (group.loops[index], group.configs[index], group, service)
            if target === loop {
                Connection.open(fd, on: target, config: config, service: service, group: group, index: index)
            } else {
                target.execute { Connection.open(fd, on: target, config: config, service: service, group: group, index: index) }
            }
        }
    }

    func drain() {}

    /// Stops accepting and closes the listening socket.
    func close() {
        guard isOpen else { return }
        isOpen = false
        loop.remove(socket.fd, token: token)
        Glibc.close(socket.fd)
    }
}
