import Dispatch
import NIOConcurrencyHelpers
public import GuidonEngine
import GuidonEntitlements
import GuidonJSON
public import GuidonProtocol
import GuidonSystemd
public import Logging
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Re-reads the flag file (and the entitlements file, when one is served) and publishes the
/// result: both files as one `ServedConfig`, so that an answer never mixes versions. A reload
/// reads both files whichever changed (a deployment that swaps both at once is then served as
/// one change) and compiles only what changed. Reloads run one at a time on a thread of
/// their own, never on an event loop, at a lower priority so that event loops preempt them. A
/// file that cannot be read or does not validate leaves the last good configuration serving; the failure is logged in full and shown by `status`.
public final class Reloader: Sendable {
    public let path: String
    let files: ServedFiles
    let store: ConfigStore
    let connections: Connections
    let logger: Logger
    /// One thread, so that reloads run in order and lowering its priority affects nothing else.
    private let thread = NIOThreadPool(numberOfThreads: 1)

    public convenience init(path: String, options: CompileOptions, store: ConfigStore, connections: Connections, logger: Logger) {
        self.init(files: ServedFiles(flagPath: path, options: options), store: store, connections: connections, logger: logger)
    }

    public init(files: ServedFiles, store: ConfigStore, connections: Connections, logger: Logger) {
        self.path = files.flagPath
        self.files = files
        self.store = store
        self.connections = connections
        self.logger = logger
        thread.start()
        thread.submit { state in
            if state == .active { Self.lowerThreadPriority() }
        }
    }

    /// Stops the reload thread once the reloads already asked for have run.
    public func shutdown() {
        try? thread.syncShutdownGracefully()
    }

    /// Reloads on the reload thread and waits for the outcome.
    @discardableResult
    public func reload(trigger: String) -> ReloadAttempt {
        let outcome = Outcome()
        reloadAsync(trigger: trigger) { outcome.set($0) }
        return outcome.wait()
    }

    /// Reloads on the reload thread; `done` runs there afterwards.
    public func reloadAsync(trigger: String, done: (@Sendable (ReloadAttempt) -> Void)? = nil) {
        thread.submit { state in
            guard state == .active else {
                let version = self.store.current.version
                done?(ReloadAttempt(trigger: trigger, at: Int64(time(nil)), ok: false, configVersion: version, error: "not reloaded: shutting down"))
                return
            }
            let before = self.store.current
            let attempt = self.reloadOnThread(trigger: trigger)
            if attempt.configVersion != before.version || attempt.entitlementsVersion != before.entitlementsVersion {
                // The old snapshot is released (unless a request in flight still holds it).
                Memory.returnFreedMemory()
            }
            done?(attempt)
        }
    }

    /// Runs `work` on the reload thread, in order with reloads (the admin writer's edits):
    /// `active` is false when the daemon is shutting down and the work should not start.
    func perform(_ work: @escaping @Sendable (_ active: Bool) -> Void) {
        thread.submit { state in work(state == .active) }
    }

    /// Serves `new`, which replaces what is served (on the reload thread): records it as a reload
    /// triggered by `trigger`, publishes it, logs what changed flag by flag, tells `watch`
    /// subscribers and systemd. For a file written by the admin writer, whose bytes the file
    /// watcher will then find unchanged. (The caller returns the freed memory once it has
    /// answered: `Memory.returnFreedMemory`.)
    /// `diff`, when the caller knows what changed, spares comparing every flag (10,000 flags: 2 ms).
    func install(_ new: ServedConfig, trigger: String, diff: SnapshotDiff? = nil) {
        let old = store.current
        var logger = logger
        logger[metadataKey: "configPath"] = "\(path)"
        logger[metadataKey: "trigger"] = "\(trigger)"
        install(
            new, old: old,
            attempt: ReloadAttempt(
                trigger: trigger, at: new.loadedAt, ok: true, configVersion: new.version, entitlementsVersion: new.entitlementsVersion),
            diff: diff, logger: logger)
    }

    /// Raises the calling thread's nice value by 10, so that a compile yields the cores to the
    /// event loops. On Linux the nice value belongs to each thread, and `who` 0 names the calling
    /// thread (not the whole process, as POSIX would have it). A failure only costs latency.
    static func lowerThreadPriority() {
        let which = __priority_which_t(PRIO_PROCESS.rawValue)
        errno = 0
        let current = getpriority(which, 0)
        guard errno == 0 else { return }
        _ = setpriority(which, 0, min(current + 10, 19))
    }

    /// Hands a reload's outcome to the thread waiting for it.
    private final class Outcome: Sendable {
        private let value = NIOLockedValueBox<ReloadAttempt?>(nil)  // a lock TSan understands
        private let ready = DispatchSemaphore(value: 0)

        func set(_ attempt: ReloadAttempt) {
            value.withLockedValue { $0 = attempt }
            ready.signal()
        }

        func wait() -> ReloadAttempt {
            ready.wait()
            return value.withLockedValue { $0! }
        }
    }

    private func reloadOnThread(trigger: String) -> ReloadAttempt {
        let old = store.current
        let now = Int64(time(nil))
        var logger = logger
        logger[metadataKey: "configPath"] = "\(path)"
        logger[metadataKey: "trigger"] = "\(trigger)"

        let new: ServedConfig
        do throws(ConfigLoadError) {
            let contents = try files.read(served: old)
            if contents.flagVersion == old.version && contents.entitlementsVersion == old.entitlementsVersion {
                let attempt = ReloadAttempt(
                    trigger: trigger, at: now, ok: true, configVersion: old.version, entitlementsVersion: old.entitlementsVersion)
                store.record(attempt)
                logger.debug(
                    "flag file unchanged",
                    metadata: ["configVersion": "\(old.version)", "entitlementsVersion": "\(old.entitlementsVersion ?? "-")", "reloadResult": "unchanged"])
                SystemdNotifier.status(Self.servingStatus(old))
                return attempt
            }
            new = try files.compile(contents, reusing: old)
        } catch {
            let attempt = ReloadAttempt(
                trigger: trigger, at: now, ok: false, configVersion: old.version, error: error.description,
                entitlementsVersion: old.entitlementsVersion)
            store.record(attempt)
            logger.error(
                "reload failed, still serving the previous configuration: \(error)",
                metadata: ["configVersion": "\(old.version)", "reloadResult": "failed"])
            SystemdNotifier.status(Self.statusLine(store))
            return attempt
        }

        let attempt = ReloadAttempt(
            trigger: trigger, at: now, ok: true, configVersion: new.version, entitlementsVersion: new.entitlementsVersion)
        install(new, old: old, attempt: attempt, logger: logger)
        return attempt
    }

    private func install(_ new: ServedConfig, old: ServedConfig, attempt: ReloadAttempt, diff known: SnapshotDiff? = nil, logger: Logger) {
        // Recorded first, so that whoever is answered from the new configuration also finds the
        // reload that brought it in `status` (publishing wakes the event loops, which can run
        // before this thread, at nice +10, gets the core back).
        store.record(attempt)
        store.publish(new)
        let flagDiff = known ?? (new.snapshot === old.snapshot ? SnapshotDiff(added: [], changed: [], removed: []) : new.snapshot.diff(from: old.snapshot))
        var diff = flagDiff
        if new.entitlements !== old.entitlements {
            logEntitlements(new: new, old: old, diff: &diff, logger: logger)
        }
        logger.notice(
            "configuration reloaded: \(flagDiff.added.count) added, \(flagDiff.changed.count) changed, \(flagDiff.removed.count) removed",
            metadata: [
                "configVersion": "\(new.version)", "previousConfigVersion": "\(old.version)", "reloadResult": "ok",
                "flags": "\(new.snapshot.count)",
            ])
        audit(flagDiff, old: old.snapshot, new: new.snapshot, logger: logger, version: new.version)
        Self.logWarnings(new.snapshot, logger: logger)
        SystemdNotifier.status(Self.servingStatus(new))
        if !diff.isEmpty {
            var line: [UInt8] = []
            var event = ConfigurationChanged(configVersion: new.version, diff: diff)
            event.entitlementsVersion = new.entitlementsVersion
            ReplyEncoder.line(event.json, into: &line)
            connections.broadcast(line)
        }
    }

    /// Logs what changed in the entitlements file, and adds to `diff` (what `watch` subscribers
    /// are told) the features whose answers may have changed: every feature when a plan, a tenant
    /// or the time zone changed, since any feature's answer may differ for some tenant.
    private func logEntitlements(new: ServedConfig, old: ServedConfig, diff: inout SnapshotDiff, logger: Logger) {
        let newKeys = new.entitlements?.features.map(\.key) ?? []
        guard let now = new.entitlements, let before = old.entitlements else {
            // Entitlements served where there were none (or the other way round): every feature.
            diff.added += newKeys
            diff.removed += old.entitlements?.features.map(\.key) ?? []
            return
        }
        let changes = now.diff(from: before)
        logger.notice(
            "entitlements reloaded: features \(changes.features.added.count) added, \(changes.features.changed.count) changed, \(changes.features.removed.count) removed; plans \(changes.plans.added.count) added, \(changes.plans.changed.count) changed, \(changes.plans.removed.count) removed; tenants \(changes.tenants.added.count) added, \(changes.tenants.changed.count) changed, \(changes.tenants.removed.count) removed",
            metadata: [
                "entitlementsVersion": "\(new.entitlementsVersion ?? "-")", "previousEntitlementsVersion": "\(old.entitlementsVersion ?? "-")",
                "entitlementsPath": "\(files.entitlements?.path ?? "-")", "reloadResult": "ok", "tenants": "\(now.tenantCount)",
            ])
        for warning in now.warnings { logger.warning("\(files.entitlements?.path ?? "entitlements"): \(warning)") }
        diff.added += changes.features.added
        diff.removed += changes.features.removed
        let everything = !changes.plans.isEmpty || !changes.tenants.isEmpty || changes.timezoneChanged
        let added = Set(changes.features.added)
        diff.changed += everything ? newKeys.filter { !added.contains($0) } : changes.features.changed
    }

    /// One log entry per added, changed and removed flag, carrying the flag's metadata
    /// (`updatedBy`, `notes`, `ticket`, …): the audit trail.
    private func audit(_ diff: SnapshotDiff, old: Snapshot, new: Snapshot, logger: Logger, version: String) {
        func entry(_ what: String, _ key: String, _ info: FlagInfo?) {
            var metadata: Logger.Metadata = ["flag": "\(key)", "change": "\(what)", "configVersion": "\(version)"]
            for (name, value) in info?.metadata ?? [:] where metadata[name] == nil {
                metadata[name] = "\(value.string ?? value.description)"
            }
            if let info { metadata["state"] = "\(info.state.rawValue)" }
            logger.notice("flag \(key) \(what)", metadata: metadata)
        }
        for key in diff.added { entry("added", key, new.info(key)) }
        for key in diff.changed { entry("changed", key, new.info(key)) }
        for key in diff.removed { entry("removed", key, old.info(key)) }
    }

    static func logWarnings(_ snapshot: Snapshot, logger: Logger) {
        for warning in snapshot.warnings {
            logger.warning("\(warning)")
        }
    }

    /// The systemd `STATUS=` line while all is well.
    static func servingStatus(_ config: ServedConfig) -> String {
        "serving \(config.snapshot.count) flags\(config.entitlements.map { ", \($0.features.count) features, \($0.tenantCount) tenants" } ?? ""), config v\(config.version)\(config.entitlementsVersion.map { ", entitlements v\($0)" } ?? "") (loaded \(Timestamp.clock(config.loadedAt)) UTC)"
    }

    /// The systemd `STATUS=` line: what is served, or why the last reload failed and what is still served.
    static func statusLine(_ store: ConfigStore) -> String {
        let served = store.current
        guard let last = store.lastReload, !last.ok, let error = last.error else { return servingStatus(served) }
        // The first problem: the report's first diagnostic, or the one-line I/O error.
        let lines = error.split(separator: "\n")
        let first = lines.count > 1 ? String(lines[1]) : error
        return "reload failed at \(Timestamp.clock(last.at)) UTC: \(first) — still serving v\(served.version) (\(served.snapshot.count) flags)"
    }
}
