import Dispatch

#if canImport(Glibc)
import Glibc
#endif

/// Watches the flag file with inotify and calls `onChange` after each burst of changes.
///
/// It watches directories rather than the file, so that every way of replacing a file is seen:
/// in-place writes, editors that save by renaming a temporary file, `mv` of a new file over the
/// old one, deleting the file and writing it anew, and Kubernetes ConfigMap volumes, which swap a
/// `..data` symlink. When the path is a symlink (to a symlink, …), the directory of every hop is
/// watched for that hop's name, whether or not the hop's target exists (see `WatchPlan`), and the
/// chain is followed again after every change that concerns it. `onChange` runs at once when an
/// event says the file is complete (closed after writing, renamed into place, a `..data` symlink
/// swapped); other changes (in-place writes still open, deletions, …) are debounced: `onChange`
/// runs once the file has been quiet for `quietPeriod` (or `maxDelay` after the first such event).
///
/// A reload is never lost silently: when following the chain again arms a directory that was not
/// watched before (a link now points elsewhere, a directory was created), the file may have changed
/// there unseen, so that counts as a change too; and while idle the chain is followed again every
/// second, in case a change escaped every watch (a directory replaced between two events).
///
/// The watch is armed when the watcher is made and reported from when it is started: a change
/// in between is reported then. So a daemon arms it before reading the file and starts it once
/// it can reload, and no change falls between the two unseen.
public final class FileWatcher: Sendable {
    public let path: String
    let quietPeriod: Duration
    let maxDelay: Duration
    private let inotifyFD: Int32
    /// What `init` armed.
    private let armed: Targets
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let queue = DispatchQueue(label: "guidon.inotify")

    /// Arms the watch: changes made after this returns are reported once `start` is called.
    public init(
        path: String, quietPeriod: Duration = .milliseconds(50), maxDelay: Duration = .milliseconds(500)
    ) throws(WatchError) {
        self.path = path
        self.quietPeriod = quietPeriod
        self.maxDelay = maxDelay
        let inotifyFD = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard inotifyFD >= 0 else { throw WatchError(reason: "inotify_init1: \(errnoText())") }
        self.inotifyFD = inotifyFD
        var armed = Targets()
        _ = Self.refreshWatches(&armed, path: path, inotifyFD: inotifyFD)
        self.armed = armed
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

    /// Starts reporting, to `onChange` (on the watcher's thread): every change since `init`.
    public func start(onChange: @escaping @Sendable () -> Void) {
        queue.async { [armed] in self.run(armed, onChange: onChange) }
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

    private struct Targets {
        /// Watch descriptor → the names in its directory that concern the flag file.
        var watched: [Int32: Set<String>] = [:]
    }

    /// What a batch of events says about the flag file.
    enum Change {
        case none
        /// Written in place, created, deleted, …: more may follow, so wait for a quiet period.
        case inProgress
        /// Complete: closed after writing, renamed into place, or a `..data`-style symlink swapped.
        case complete
    }

    private func run(_ targets: Targets, onChange: @Sendable () -> Void) {
        var targets = targets
        // The first and the latest in-progress event not yet followed by a reload.
        var pending: (first: ContinuousClock.Instant, last: ContinuousClock.Instant)?
        let clock = ContinuousClock()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)

        while true {
            var timeout: Int32 = 1000
            if let pending {
                let due = min(pending.last + quietPeriod, pending.first + maxDelay)
                timeout = max(0, Int32(clamping: (due - clock.now).milliseconds + 1))
            }
            var fds = [pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, timeout)
            if ready < 0 && errno != EINTR { return }
            // Stopping wins over everything, however busy the directory is.
            if fds[1].revents != 0 { return }
            var change = Change.none
            if fds[0].revents != 0 {
                change = readEvents(&buffer, targets: &targets)
            }
            // Follow the chain again after every change that concerns it (a link may point
            // elsewhere now), and while idle (a safety net). A directory armed only now may hold
            // a change made before its watch existed: read the file again.
            if change != .none || ready == 0 {
                if refreshWatches(&targets), change == .none { change = .inProgress }
            }
            var reloadNow = change == .complete
            if change == .inProgress {
                let now = clock.now
                pending = (pending?.first ?? now, now)
            }
            if !reloadNow, let pending {
                let now = clock.now
                reloadNow = now >= pending.last + quietPeriod || now >= pending.first + maxDelay
            }
            if reloadNow {
                pending = nil
                onChange()
                if refreshWatches(&targets) {
                    // Armed while reloading: what it watches may have changed before the reload read it.
                    pending = (clock.now, clock.now)
                }
            }
        }
    }

    /// Reads the events queued now, with one `read` (a directory that never stops changing must
    /// not keep the watcher from its wake-up pipe), and returns what the last event that concerns
    /// the flag file says about it.
    private func readEvents(_ buffer: inout [UInt8], targets: inout Targets) -> Change {
        let n = buffer.withUnsafeMutableBytes { read(inotifyFD, $0.baseAddress, $0.count) }
        guard n > 0 else { return .none }
        var change = Change.none
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
                let kind = Self.classify(mask: mask, name: name, targets: targets.watched[wd] ?? [])
                if mask & UInt32(IN_IGNORED) != 0 {
                    targets.watched[wd] = nil
                }
                if kind != .none { change = kind }
            }
        }
        return change
    }

    /// What one event says, given the names in its directory that concern the flag file.
    static func classify(mask: UInt32, name: String, targets: Set<String>) -> Change {
        if mask & UInt32(IN_IGNORED | IN_Q_OVERFLOW) != 0 { return .inProgress }
        if targets.contains(name) {
            return mask & UInt32(IN_CLOSE_WRITE | IN_MOVED_TO) != 0 ? .complete : .inProgress
        }
        // A ConfigMap-style update renames a fresh `..data` symlink into place; the rest of its
        // work (creating and deleting `..<timestamp>` directories) changes nothing served.
        if name.hasPrefix(".."), mask & UInt32(IN_MOVED_TO) != 0 { return .complete }
        return .none
    }

    /// Follows the path again and watches what it now goes through; returns whether a directory
    /// is watched that was not before.
    private func refreshWatches(_ targets: inout Targets) -> Bool {
        Self.refreshWatches(&targets, path: path, inotifyFD: inotifyFD)
    }

    private static func refreshWatches(_ targets: inout Targets, path: String, inotifyFD: Int32) -> Bool {
        // Cheap enough to do in full every time (a `readlink` and an `lstat` or two per hop, and
        // `inotify_add_watch`, which returns the same descriptor for a directory already watched).
        let plan = WatchPlan(path: path).existingDirectories()
        let mask = UInt32(IN_CLOSE_WRITE | IN_MODIFY | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB)
        var wanted: [Int32: Set<String>] = [:]
        for (directory, names) in plan.entries {
            let wd = inotify_add_watch(inotifyFD, directory, mask | UInt32(IN_ONLYDIR))
            // Two directories may be one (the same inode by two paths): one watch, every name.
            if wd >= 0 { wanted[wd, default: []].formUnion(names) }
        }
        for wd in targets.watched.keys where wanted[wd] == nil {
            inotify_rm_watch(inotifyFD, wd)
        }
        let armedNew = wanted.keys.contains { targets.watched[$0] == nil }
        targets.watched = wanted
        return armedNew
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
