import CSystemd

#if canImport(Glibc)
import Glibc
#endif

/// A socket passed in by the service manager (`sd_listen_fds(3)`).
public struct InheritedSocket: Sendable, Hashable {
    public var fileDescriptor: Int32
    /// The `FileDescriptorName=` of the socket unit (`"unknown"` when none was set).
    public var name: String
    /// Whether it is a listening Unix stream socket (what the query and admin sockets are).
    public var isUnixStreamListener: Bool
    /// Whether it is a listening stream socket of any family (TCP or Unix: what the HTTP
    /// listener can serve on).
    public var isStreamListener: Bool

    public init(fileDescriptor: Int32, name: String, isUnixStreamListener: Bool, isStreamListener: Bool) {
        self.fileDescriptor = fileDescriptor
        self.name = name
        self.isUnixStreamListener = isUnixStreamListener
        self.isStreamListener = isStreamListener
    }
}

public enum SocketActivation {
    /// `SD_LISTEN_FDS_START`: the first passed descriptor.
    public static let firstDescriptor: Int32 = 3

    /// The sockets systemd passed to this process; empty when not socket-activated.
    /// Clears `LISTEN_FDS`/`LISTEN_PID`/`LISTEN_FDNAMES` so that children do not inherit them.
    public static func inheritedSockets() -> [InheritedSocket] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else { return [] }
        defer {
            if let names {
                for i in 0..<Int(count) { free(names[i]) }
                free(names)
            }
        }
        return (0..<count).map { i in
            let fd = firstDescriptor + i
            let name = names?[Int(i)].map { String(cString: $0) } ?? "unknown"
            let unix = sd_is_socket_unix(fd, Int32(SOCK_STREAM.rawValue), 1, nil, 0) > 0
            let stream = sd_is_socket(fd, AF_UNSPEC, Int32(SOCK_STREAM.rawValue), 1) > 0
            return InheritedSocket(fileDescriptor: fd, name: name, isUnixStreamListener: unix, isStreamListener: stream)
        }
    }
}
