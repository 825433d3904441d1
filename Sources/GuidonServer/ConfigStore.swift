public import Atomics
public import GuidonEngine
public import GuidonMetrics
public import GuidonProtocol
import NIOConcurrencyHelpers

/// The configuration being served: a compiled snapshot and what identifies it.
/// Immutable; replaced as a whole on reload.
public final class ServedConfig: AtomicReference, Sendable {
    public let snapshot: Snapshot
    /// A digest of the file's bytes (16 hex digits): equal content, equal version.
    public let version: String
    /// When it was loaded (Unix seconds).
    public let loadedAt: Int64

    public init(snapshot: Snapshot, version: String, loadedAt: Int64) {
        self.snapshot = snapshot
        self.version = version
        self.loadedAt = loadedAt
    }
}

final class ReloadRecord: AtomicReference, Sendable {
    let attempt: ReloadAttempt
    init(_ attempt: ReloadAttempt) { self.attempt = attempt }
}

/// Holds the served configuration. Readers take it with one atomic load and use that one
/// `ServedConfig` for a whole reply (an event loop keeps its own reference, see `LoopConfig`);
/// the reloader publishes a new one with one store. Nobody locks to read.
public final class ConfigStore: Sendable {
    private let served: ManagedAtomic<ServedConfig>
    private let lastAttempt: ManagedAtomic<ReloadRecord?>
    private let publicationCount = ManagedAtomic<Int>(0)
    private let observers = NIOLockedValueBox<[@Sendable () -> Void]>([])
    private let preparers = NIOLockedValueBox<[@Sendable (ServedConfig) -> Void]>([])
    /// Reload attempts by result (`guidon_config_reloads_total`), and when the last one succeeded.
    private let reloadsOK = ManagedAtomic<UInt64>(0)
    private let reloadsUnchanged = ManagedAtomic<UInt64>(0)
    private let reloadsFailed = ManagedAtomic<UInt64>(0)
    private let lastSuccess: ManagedAtomic<Int64>

    public init(_ initial: ServedConfig) {
        served = ManagedAtomic(initial)
        lastAttempt = ManagedAtomic(nil)
        lastSuccess = ManagedAtomic(initial.loadedAt)
    }

    /// The configuration to answer a request from.
    @inline(__always)
    public var current: ServedConfig { served.load(ordering: .acquiring) }

    /// How many configurations have been published since the first: a reader that remembers it
    /// can tell with one plain load whether its configuration is still current.
    var publications: Int { publicationCount.load(ordering: .acquiring) }

    func publish(_ config: ServedConfig) {
        for prepare in preparers.withLockedValue({ $0 }) { prepare(config) }
        served.store(config, ordering: .releasing)
        publicationCount.wrappingIncrement(ordering: .releasing)
        for observer in observers.withLockedValue({ $0 }) { observer() }
    }

    /// Calls `prepare` with each configuration before it is published, on the publishing thread
    /// (work that readers would otherwise do when they first take it).
    func beforePublish(_ prepare: @escaping @Sendable (ServedConfig) -> Void) {
        preparers.withLockedValue { $0.append(prepare) }
    }

    /// Calls `observer` after each publication, on the publishing thread.
    func onPublish(_ observer: @escaping @Sendable () -> Void) {
        observers.withLockedValue { $0.append(observer) }
    }

    /// The last reload attempt, `nil` before the first.
    public var lastReload: ReloadAttempt? { lastAttempt.load(ordering: .acquiring)?.attempt }

    func record(_ attempt: ReloadAttempt) {
        // Counted here, where every attempt passes: a new version is recorded before it is
        // published, so the served version tells a change from an unchanged file.
        if !attempt.ok {
            reloadsFailed.wrappingIncrement(ordering: .relaxed)
        } else {
            let counter = attempt.configVersion == current.version ? reloadsUnchanged : reloadsOK
            counter.wrappingIncrement(ordering: .relaxed)
            lastSuccess.store(attempt.at, ordering: .relaxed)
        }
        lastAttempt.store(ReloadRecord(attempt), ordering: .releasing)
    }

    /// Reload attempts so far, by result.
    public var reloadCounts: ReloadCounts {
        ReloadCounts(
            ok: reloadsOK.load(ordering: .relaxed), unchanged: reloadsUnchanged.load(ordering: .relaxed),
            failed: reloadsFailed.load(ordering: .relaxed), lastSuccessAt: lastSuccess.load(ordering: .relaxed))
    }
}

/// 64-bit FNV-1a of the file's bytes, as 16 hex digits: the file's revision.
func contentVersion(of bytes: [UInt8]) -> String {
    Revision.of(bytes)
}
