import CLinux
import GuidonUnixSocket

#if canImport(Glibc)
import Glibc
#endif

/// The filesystem side of a listening Unix socket that guidond binds itself.
struct UnixSocketPath {
    let path: String

    struct Problem: Error, CustomStringConvertible {
        var description: String
    }

    /// Makes way for binding: a stale socket file (nothing answers on it) is removed;
    /// a live one, or a file that is not a socket, is left alone and reported.
    func prepare() throws(Problem) {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { return }
            throw Problem(description: "cannot use socket path \(path): \(errnoText())")
        }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw Problem(description: "\(path) exists and is not a socket; not removing it")
        }
        if Self.answers(path) {
            throw Problem(description: "another process is already listening on \(path)")
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw Problem(description: "cannot remove stale socket \(path): \(errnoText())")
        }
    }

    /// Which socket file is at the path. The inode number alone is not enough: once another
    /// instance has unlinked our file, the filesystem may hand the same number to the file that
    /// instance binds next; the change time (to the nanosecond) tells the two apart.
    struct Identity: Equatable {
        var device: UInt64
        var inode: UInt64
        var changed: timespec

        static func == (a: Identity, b: Identity) -> Bool {
            a.device == b.device && a.inode == b.inode
                && a.changed.tv_sec == b.changed.tv_sec && a.changed.tv_nsec == b.changed.tv_nsec
        }
    }

    /// The identity of the socket file now at the path, to recognise it at exit.
    func identity() -> Identity? {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK else { return nil }
        return Identity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), changed: st.st_ctim)
    }

    /// Removes the socket file if it is still the one we created.
    func remove(ifStill identity: Identity?) {
        guard let identity, let now = self.identity(), now == identity else { return }
        unlink(path)
    }

    /// Whether something accepts connections on the socket at `path`.
    static func answers(_ path: String) -> Bool {
        let fd = UnixSocket.stream()
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return UnixSocket.connect(fd, to: path) == 0
    }
}
