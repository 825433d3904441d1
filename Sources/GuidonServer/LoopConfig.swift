import GuidonMetrics

/// One event loop's reference to the configuration being served.
///
/// Connections answer from their loop's reference, borrowed, rather than loading the store's
/// atomic reference for every read: that load counts a reference to the `ServedConfig` all
/// loops share, which is an atomic operation on memory that the loops' cores pass back and
/// forth. A loop notices a new configuration with one plain load of the store's publication
/// count before each read, so a reply never comes from a configuration older than the one a
/// client was told about; and the store's publication queues a task on every loop that takes
/// the new one at once, so that a loop without traffic keeps no old snapshot alive.
///
/// It also holds the loop's counters (`LoopCounters`): they count by the position of a flag in
/// the snapshot being answered from, so they are laid out anew exactly when the loop takes a
/// new configuration. Counters belong to the thread that answers, not to connections.
///
/// `@unchecked Sendable`: confined to its loop's thread once handed to it.
///
/// The entitlement denial counters are laid out by the entitlements document the same way.
final class LoopConfig: @unchecked Sendable {
    private let store: ConfigStore
    private var config: ServedConfig
    /// The store's publication count when `config` was taken.
    private var seen: Int
    /// This loop's counters; `nil` when nothing is counted here (tests).
    let counters: LoopCounters?

    init(store: ConfigStore, counters: LoopCounters? = nil) {
        self.store = store
        self.counters = counters
        // The count first: a publication in between makes the next read take it.
        seen = store.publications
        config = store.current
        counters?.adopt(config)
    }

    /// Lends `body` the configuration to answer from. (It is not retained: this holds it, and
    /// only `refresh`, which `body` does not reach, replaces it.)
    @inline(__always)
    func withCurrent<Result>(_ body: (ServedConfig) -> Result) -> Result {
        refresh()
        return Unmanaged.passUnretained(config)._withUnsafeGuaranteedRef(body)
    }

    /// Takes the store's configuration if a newer one was published.
    func refresh() {
        let published = store.publications
        guard published != seen else { return }
        seen = published
        config = store.current
        counters?.adopt(config)
    }
}

extension LoopCounters {
    /// Lays the counters out for `config`: its flags and its entitlements document.
    func adopt(_ config: ServedConfig) {
        adopt(config.snapshot, version: config.version, entitlements: config.entitlements)
    }
}
