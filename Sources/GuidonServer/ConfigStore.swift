public import Atomics
public import GuidonEngine
public import GuidonEntitlements
public import GuidonMetrics
public import GuidonProtocol
import NIOConcurrencyHelpers

/// The configuration being served: a compiled snapshot, the compiled entitlements when the
/// daemon serves an entitlements file, and what identifies them. Immutable; replaced as a whole
/// on reload, so that an answer never mixes a flag file with another version's entitlements.
public final class ServedConfig: AtomicReference, Sendable {
    public let snapshot: Snapshot
    /// A digest of the flag file's bytes (16 hex digits): equal content, equal version.
    public let version: String
    /// When it was loaded (Unix seconds).
    public let loadedAt: Int64
    /// The entitlements file's compiled value (`--entitlements`), `nil` without one.
    public let entitlements: Entitlements?
    /// A digest of the entitlements file's bytes, `nil` without one.
    public let entitlementsVersion: String?
    /// The context attribute naming the tenant (`--tenant-attribute`, default `tenantId`).
    public let tenantAttribute: String

    public init(
        snapshot: Snapshot, version: String, loadedAt: Int64, entitlements: Entitlements? = nil,
        entitlementsVersion: String? = nil, tenantAttribute: String = "tenantId"
    ) {
        self.snapshot = snapshot
        self.version = version
        self.loadedAt = loadedAt
        self.entitlements = entitlements
        self.entitlementsVersion = entitlementsVersion
        self.tenantAttribute = tenantAttribute
    }

    /// This configuration with another flag snapshot (the same entitlements).
    func replacing(snapshot: Snapshot, version: String, loadedAt: Int64) -> ServedConfig {
        ServedConfig(
            snapshot: snapshot, version: version, loadedAt: loadedAt, entitlements: entitlements,
            entitlementsVersion: entitlementsVersion, tenantAttribute: tenantAttribute)
    }

    /// Both revisions, as one string (what tells one served configuration from another).
    var combinedVersion: String { entitlementsVersion.map { "\(version)+\($0)" } ?? version }
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
            let current = current
            let unchanged = attempt.configVersion == current.version && attempt.entitlementsVersion == current.entitlementsVersion
            let counter = unchanged ? reloadsUnchanged : reloadsOK
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

/// XXH64 of the file's bytes, as 16 hex digits: the file's revision (`Revision.of`).
func contentVersion(of bytes: [UInt8]) -> String {
    Revision.of(bytes)
}
