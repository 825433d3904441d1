import Dispatch

#if canImport(Glibc)
import Glibc
#endif

/// Watches the flag file with inotify and calls `onChange` after each burst of changes.
///
/// It watches the file's directory rather than the file, so that every way of replacing a
/// file is seen: in-place writes, editors that save by renaming a temporary file, `mv` of
/// a new file over the old one, and Kubernetes ConfigMap volumes, which swap a `..data`
/// symlink. When the path is a symlink into another directory, that directory is watched
/// too (and re-resolved after every change). Events are debounced: `onChange` runs once
/// the directory has been quiet for `quietPeriod` (or `maxDelay` after the first event).
public final class FileWatcher: Sendable {
    public let path: String
    let quietPeriod: Duration
    let maxDelay: Duration
    let onChange: @Sendable () -> Void
    private let inotifyFD: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let queue = DispatchQueue(label: "guidon.inotify")

    public init(
        path: String, quietPeriod: Duration = .milliseconds(50), maxDelay: Duration = .milliseconds(500),
        onChange: @escaping @Sendable () -> Void
    ) throws(WatchError) {
        self.path = path
        self.quietPeriod = quietPeriod
        self.maxDelay = maxDelay
        self.onChange = onChange
        inotifyFD = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard inotifyFD >= 0 else { throw WatchError(reason: "inotify_init1: \(errnoText())") }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            close(inotifyFD)
            throw WatchError(reason: "pipe: \(errnoText())")
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
        }
        wakeRead = fds[0]
        wakeWrite = fds[1]
    }

    public struct WatchError: Error, CustomStringConvertible {
        public var reason: String
        public var description: String { reason }
    }

    /// Starts watching. The watches exist when this returns: a change made right after (say, once
    /// the daemon has reported ready) is never missed.
    public func start() {
        var targets = Targets()
        refreshWatches(&targets)
        let initial = targets
        queue.async { self.run(initial) }
    }

    /// Stops watching; returns once the watcher thread has finished.
    public func stop() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
        queue.sync {}
        close(inotifyFD)
        close(wakeRead)
        close(wakeWrite)
    }

    // MARK: - The watcher thread

    private struct Targets: Sendable {
        var names: Set<String> = []
        var watched: [Int32: String] = [:]
    }

    private func run(_ initial: Targets) {
        var targets = initial
        var firstEvent: ContinuousClock.Instant?
        var lastEvent: ContinuousClock.Instant?
        let clock = ContinuousClock()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)

        while true {
            var timeout: Int32 = 1000
            if let first = firstEvent, let last = lastEvent {
                let due = min(last + quietPeriod, first + maxDelay)
                timeout = max(0, Int32(clamping: (due - clock.now).milliseconds))
            }
            var fds = [pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, timeout)
            if ready < 0 && errno != EINTR { return }
            if fds[1].revents != 0 { return }
            if fds[0].revents != 0 {
                if drainEvents(&buffer, targets: &targets) {
                    let now = clock.now
                    if firstEvent == nil { firstEvent = now }
                    lastEvent = now
                }
            }
            if let first = firstEvent, let last = lastEvent {
                let now = clock.now
                if now >= last + quietPeriod || now >= first + maxDelay {
                    firstEvent = nil
                    lastEvent = nil
                    onChange()
                    refreshWatches(&targets)
                }
            } else if ready == 0 && targets.watched.isEmpty {
                // The directory was gone; try again.
                refreshWatches(&targets)
            }
        }
    }

    /// Reads all queued events; returns whether any concerned the flag file.
    private func drainEvents(_ buffer: inout [UInt8], targets: inout Targets) -> Bool {
        var relevant = false
        while true {
            let n = buffer.withUnsafeMutableBytes { read(inotifyFD, $0.baseAddress, $0.count) }
            guard n > 0 else { return relevant }
            buffer.withUnsafeBytes { raw in
                var offset = 0
                while offset + MemoryLayout<inotify_event>.size <= n {
                    let wd = raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)
                    let mask = raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
                    let length = Int(raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
                    let nameStart = offset + MemoryLayout<inotify_event>.size
                    let nameBytes = UnsafeRawBufferPointer(rebasing: raw[nameStart..<(nameStart + length)])
                    let name = String(decoding: nameBytes.prefix { $0 != 0 }, as: UTF8.self)
                    offset = nameStart + length
                    if mask & UInt32(IN_IGNORED) != 0 {
                        targets.watched[wd] = nil
                        relevant = true
                    } else if mask & UInt32(IN_Q_OVERFLOW) != 0 || targets.names.contains(name) || name.hasPrefix("..") {
                        relevant = true
                    }
                }
            }
        }
    }

    /// Watches the directory of the path and, when the path is a symlink, that of its target.
    private func refreshWatches(_ targets: inout Targets) {
        var directories: [String] = [Self.directory(of: path)]
        var names: Set<String> = [Self.base(of: path)]
        if let resolved = Self.resolve(path), resolved != path {
            directories.append(Self.directory(of: resolved))
            names.insert(Self.base(of: resolved))
        }
        targets.names = names
        let mask = UInt32(IN_CLOSE_WRITE | IN_MODIFY | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB)
        var wanted: [Int32: String] = [:]
        for directory in directories {
            let wd = inotify_add_watch(inotifyFD, directory, mask | UInt32(IN_ONLYDIR))
            if wd >= 0 { wanted[wd] = directory }
        }
        for (wd, _) in targets.watched where wanted[wd] == nil {
            inotify_rm_watch(inotifyFD, wd)
        }
        targets.watched = wanted
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func base(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    static func resolve(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
