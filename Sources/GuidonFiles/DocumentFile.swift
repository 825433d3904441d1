#if canImport(Glibc)
import Glibc
#endif

/// Why a document file could not be read or replaced.
public struct FileError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable { case unreadable, readOnly, writeFailed }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// Missing, not a regular file, too large, or a read error.
        public static let unreadable = Code(.unreadable)
        /// On a read-only file system (a ConfigMap volume) or a read-only file: it must be changed
        /// where it comes from.
        public static let readOnly = Code(.readOnly)
        /// Creating, writing, syncing or renaming the new file failed (nothing was replaced).
        public static let writeFailed = Code(.writeFailed)

        public var description: String {
            switch value {
            case .unreadable: "unreadable"
            case .readOnly: "readOnly"
            case .writeFailed: "writeFailed"
            }
        }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// Reading a document and replacing it atomically, for the daemon's admin writer and for
/// `guidon flags --file`: the one place that decides how a document reaches the disk.
public enum DocumentFile {
    /// Files larger than this are refused rather than read into memory.
    public static let maxBytes = 64 << 20

    /// The whole file (following symlinks).
    public static func read(_ path: String) throws(FileError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(.unreadable, "cannot read \(path): \(errnoText())") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileError(.unreadable, "cannot read \(path): \(errnoText())") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FileError(.unreadable, "cannot read \(path): not a regular file") }
        guard Int(st.st_size) <= maxBytes else {
            throw FileError(.unreadable, "cannot read \(path): file is larger than \(maxBytes >> 20) MiB")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(st.st_size) + 1)
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(.unreadable, "cannot read \(path): \(errnoText())")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            if bytes.count > maxBytes {
                throw FileError(.unreadable, "cannot read \(path): file is larger than \(maxBytes >> 20) MiB")
            }
        }
        return bytes
    }

    /// Replaces the file at `path` with `bytes` so that, whenever the writer is killed, the file
    /// holds either the old bytes or the new ones, never a mixture: the new bytes go to a
    /// temporary file in the same directory, which is synced, given the original's mode (and
    /// owner and group, where the writer may set them), renamed over the original, and the
    /// directory synced. A symlink (a Kubernetes `..data` link, a file kept elsewhere) is
    /// followed and the file it points to replaced; the link stays. Returns the path written.
    ///
    /// A read-only file system or a file without write permission is refused with `readOnly`:
    /// such a file is managed elsewhere (a ConfigMap, a package) and must be changed there.
    @discardableResult
    public static func replace(_ path: String, with bytes: [UInt8]) throws(FileError) -> String {
        let staged = try stage(path, bytes)
        try staged.commit()
        return staged.target
    }

    /// The first half of `replace`: `bytes` in a synced temporary file next to the file at `path`,
    /// ready to be renamed over it (`StagedFile.commit`) or dropped (`StagedFile.discard`). What a
    /// writer can do while it still validates the bytes: nothing is replaced until `commit`.
    public static func stage(_ path: String, _ bytes: [UInt8]) throws(FileError) -> StagedFile {
        guard let resolved = realpath(path, nil) else {
            throw FileError(.unreadable, "cannot replace \(path): \(errnoText())")
        }
        let real = String(cString: resolved)
        free(resolved)
        var st = stat()
        guard stat(real, &st) == 0 else { throw FileError(.unreadable, "cannot replace \(real): \(errnoText())") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FileError(.unreadable, "cannot replace \(real): not a regular file") }
        let shown = real == path ? path : "\(path) (\(real))"
        let (directory, name) = split(real)
        var fs = statvfs()
        if statvfs(directory, &fs) == 0, fs.f_flag & UInt(ST_RDONLY) != 0 {
            throw readOnlyFileSystem(shown)
        }
        guard st.st_mode & 0o222 != 0 else {
            throw FileError(
                .readOnly,
                "\(shown) is read-only (mode \(octal(st.st_mode & 0o7777))): it is managed elsewhere, so change it at its source "
                    + "(or make it writable to edit it here)")
        }

        var template = Array("\(directory)/.\(name).guidon-\(getpid())-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            if errno == EROFS { throw readOnlyFileSystem(shown) }
            throw FileError(.writeFailed, "cannot create a file next to \(shown) to replace it with: \(errnoText()) (the writer needs write access to \(directory))")
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let temporary = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        var closed = false
        func abandon(_ what: String) -> FileError {
            let error = FileError(.writeFailed, "cannot replace \(shown): \(what): \(errnoText()); the file is unchanged")
            if !closed { close(fd) }
            unlink(temporary)
            return error
        }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                throw abandon("writing \(temporary)")
            }
            written += n
        }
        // The original's permissions; its owner and group where allowed (a writer that is not
        // root owns what it creates, and keeps the group if it belongs to it).
        guard fchmod(fd, st.st_mode & 0o7777) == 0 else { throw abandon("setting the mode of \(temporary)") }
        if fchown(fd, st.st_uid, st.st_gid) != 0 { _ = fchown(fd, UInt32.max, st.st_gid) }
        guard fsync(fd) == 0 else { throw abandon("syncing \(temporary)") }
        closed = true
        guard close(fd) == 0 else { throw abandon("closing \(temporary)") }
        return StagedFile(target: real, shown: shown, temporary: temporary, directory: directory)
    }

    /// Removes temporary files that writers killed before their rename left next to `path`
    /// (`.NAME.guidon-PID-XXXXXX` whose process is gone).
    public static func removeStaleTemporaries(of path: String) {
        guard let resolved = realpath(path, nil) else { return }
        let (directory, name) = split(String(cString: resolved))
        free(resolved)
        guard let dir = opendir(directory) else { return }
        defer { closedir(dir) }
        let prefix = ".\(name).guidon-"
        while let entry = readdir(dir) {
            let file = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard file.hasPrefix(prefix) else { continue }
            let rest = file.dropFirst(prefix.count)
            guard let dash = rest.firstIndex(of: "-"), let pid = Int32(rest[..<dash]) else { continue }
            if pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH {
                unlink("\(directory)/\(file)")
            }
        }
    }

    private static func readOnlyFileSystem(_ shown: String) -> FileError {
        FileError(
            .readOnly,
            "\(shown) is on a read-only file system (a Kubernetes ConfigMap, a read-only mount): it cannot be changed here; change it at its source (the ConfigMap, the repository it is deployed from)")
    }

    private static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }

    private static func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    private static func errnoText(_ code: Int32 = errno) -> String {
        String(cString: strerror(code))
    }
}

/// New bytes for a file, synced in a temporary file next to it (see `DocumentFile.stage`).
public struct StagedFile: Sendable {
    /// The file it replaces (symlinks resolved).
    public let target: String
    let shown: String
    let temporary: String
    let directory: String

    /// Renames the temporary file over the target and syncs the directory: from here on the
    /// file is the new one, durably.
    public func commit() throws(FileError) {
        guard rename(temporary, target) == 0 else {
            let error = FileError(.writeFailed, "cannot replace \(shown): renaming \(temporary) over it: \(String(cString: strerror(errno))); the file is unchanged")
            unlink(temporary)
            throw error
        }
        // The rename is durable once the directory is.
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            _ = fsync(directoryFD)
            close(directoryFD)
        }
    }

    /// Removes the temporary file: the target stays as it was.
    public func discard() {
        unlink(temporary)
    }
}
