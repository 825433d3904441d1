#if canImport(Glibc)
import Glibc
#endif

/// Which directory entries decide what the flag file's path opens, and so which changes a
/// watch on it must see.
///
/// A path is followed the way `open` follows it, one symlink at a time with `readlink`: every
/// hop (the path itself, the target of its link, the target of that one, …) is an entry whose
/// replacement changes what is read, whether or not it exists now. A relative link target is
/// resolved against the directory of the link. `realpath` cannot do this: it fails while the
/// target dangles, which is exactly when the target's name must be watched (a deployment tool
/// deletes the file and writes it anew; the write is the change to see).
///
/// Besides the hops, a directory on the way that is itself a symlink (a ConfigMap's `..data`)
/// is an entry of its parent, and a directory that does not exist yet is watched for through
/// its nearest existing ancestor, so that creating it (and then the file) is seen.
struct WatchPlan: Equatable {
    /// Directory → the names in it whose changes concern the flag file.
    var entries: [String: Set<String>] = [:]

    /// More hops than this is a symlink loop (Linux's own limit is 40).
    static let maxHops = 40

    init(entries: [String: Set<String>]) {
        self.entries = entries
    }

    /// The plan for `path` as the file system is now.
    init(path: String) {
        var current = path
        for _ in 0..<Self.maxHops {
            let directory = Self.directory(of: current)
            add(Self.base(of: current), in: directory)
            addSymlinkedAncestors(of: directory)
            guard let target = Self.readLink(current) else { break }
            current = target.hasPrefix("/") ? target : Self.join(directory, target)
        }
    }

    /// The directories to watch: those in `entries` that exist. A directory that does not (yet)
    /// is replaced by its nearest existing ancestor, watched for the name of the child on the way.
    func existingDirectories(_ isDirectory: (String) -> Bool = Self.isDirectory) -> WatchPlan {
        var plan = WatchPlan(entries: [:])
        for (directory, names) in entries {
            var directory = directory
            var names = names
            var depth = 0
            while !isDirectory(directory), directory != "/", directory != ".", depth < 256 {
                names = [Self.base(of: directory)]
                directory = Self.directory(of: directory)
                depth += 1
            }
            plan.entries[directory, default: []].formUnion(names)
        }
        return plan
    }

    private mutating func add(_ name: String, in directory: String) {
        entries[directory, default: []].insert(name)
    }

    /// Adds, for every prefix of `directory` that is a symlink, its name in its parent.
    private mutating func addSymlinkedAncestors(of directory: String) {
        var prefix = directory.hasPrefix("/") ? "" : nil as String?
        for component in directory.split(separator: "/", omittingEmptySubsequences: true) {
            let path = prefix.map { "\($0)/\(component)" } ?? String(component)
            if component != ".", component != "..", Self.isSymlink(path) {
                add(String(component), in: Self.directory(of: path))
            }
            prefix = path
        }
    }

    // MARK: Paths

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func base(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    static func join(_ directory: String, _ name: String) -> String {
        directory == "/" ? "/" + name : directory + "/" + name
    }

    /// The target of the symlink at `path`, or `nil` when `path` is not a symlink (or is missing).
    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func isSymlink(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }
}
