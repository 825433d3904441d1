import GuidonSystemd
import Logging
import NIOCore
import NIOPosix

/// The listening socket: the one systemd passed (socket activation), else one bound at `path`.
struct ListeningSocket {
    let channel: any Channel
    /// Set when guidond bound the socket itself: the path and the identity of the file it created.
    private let created: (path: UnixSocketPath, identity: UnixSocketPath.Identity?)?

    static func open(_ bootstrap: ServerBootstrap, path: String, logger: Logger) throws -> ListeningSocket {
        let inherited = SocketActivation.inheritedSockets()
        if !inherited.isEmpty {
            guard let activated = inherited.first(where: \.isUnixStreamListener) else {
                throw StartupError(description: "systemd passed \(inherited.count) socket(s), none a listening Unix stream socket")
            }
            let channel = try bootstrap.withBoundSocket(activated.fileDescriptor).wait()
            logger.info("listening on the socket passed by systemd", metadata: ["socketName": "\(activated.name)"])
            return ListeningSocket(channel: channel, created: nil)
        }
        let socketPath = UnixSocketPath(path: path)
        do throws(UnixSocketPath.Problem) {
            try socketPath.prepare()
        } catch {
            throw StartupError(description: error.description)
        }
        let channel: any Channel
        do {
            channel = try bootstrap.bind(unixDomainSocketPath: path).wait()
        } catch {
            throw StartupError(description: "cannot listen on \(path): \(error)")
        }
        logger.info("listening on \(path)")
        return ListeningSocket(channel: channel, created: (socketPath, socketPath.identity()))
    }

    /// Removes the socket file, if guidond created it and it is still the same file.
    /// A socket passed by systemd is never unlinked.
    func removeSocketFile() {
        guard let created else { return }
        created.path.remove(ifStill: created.identity)
    }
}
