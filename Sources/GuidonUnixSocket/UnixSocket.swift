#if canImport(Glibc)
public import Glibc
#endif

/// Unix-domain socket addressing, shared by the daemon, the CLI, the benchmarks and the tests.
public enum UnixSocket {
    /// Calls `body` with a `sockaddr_un` for `path`, or returns `nil` with `errno` set to
    /// `ENAMETOOLONG` when the path does not fit in `sun_path` (108 bytes on Linux).
    public static func withAddress<R>(
        _ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R
    ) rethrows -> R? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            errno = ENAMETOOLONG
            return nil
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return try withUnsafePointer(to: &address) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                try body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }

    /// `connect(2)` to the socket at `path`: 0, or -1 with `errno` set.
    public static func connect(_ fd: Int32, to path: String) -> Int32 {
        withAddress(path) { Glibc.connect(fd, $0, $1) } ?? -1
    }

    /// `bind(2)` to `path`: 0, or -1 with `errno` set.
    public static func bind(_ fd: Int32, to path: String) -> Int32 {
        withAddress(path) { Glibc.bind(fd, $0, $1) } ?? -1
    }

    /// A new blocking, close-on-exec stream socket, or -1 with `errno` set.
    public static func stream() -> Int32 {
        socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }
}
