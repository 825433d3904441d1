public import GuidonRESP
public import Logging

/// Where the daemon counts, from `--state-dir`, `--quota-store` and `--quota-timeout`.
public struct QuotaConfiguration: Sendable {
    public enum Store: Sendable, Equatable {
        /// In memory, durable under `stateDirectory/quota` (the default).
        case embedded(stateDirectory: String)
        /// Shared through Redis.
        case redis(RedisAddress)
    }

    public var store: Store
    /// The longest a request waits for Redis (default 50 ms); unused by the embedded store.
    public var timeout: Duration

    public init(store: Store, timeout: Duration = .milliseconds(50)) {
        self.store = store
        self.timeout = timeout
    }

    /// `quotaStore` is `--quota-store` (`redis://HOST:PORT`, `redis+unix:///PATH`), or `nil` for
    /// the embedded store under `stateDirectory/quota`.
    public init(quotaStore: String?, stateDirectory: String, timeout: Duration = .milliseconds(50)) throws(QuotaStoreError) {
        guard let quotaStore else {
            self.init(store: .embedded(stateDirectory: stateDirectory + "/quota"), timeout: timeout)
            return
        }
        do throws(RESPError) {
            self.init(store: .redis(try RedisAddress(parsing: quotaStore)), timeout: timeout)
        } catch {
            throw QuotaStoreError(.invalidAddress, "--quota-store: \(error.message)")
        }
    }
}

/// A started store, as the daemon holds it: the embedded store answers on the loop
/// (`immediate`), the Redis store through a completion on its own thread (`deferred`).
public enum QuotaBackend: Sendable {
    case immediate(EmbeddedQuotaStore)
    case deferred(RedisQuotaStore)

    /// Creates and starts the configured store (the embedded store reads its state back here).
    public static func start(_ configuration: QuotaConfiguration, logger: Logger) throws(QuotaStoreError) -> QuotaBackend {
        switch configuration.store {
        case .embedded(let directory):
            let store = EmbeddedQuotaStore(configuration: .init(stateDirectory: directory), logger: logger)
            try store.start()
            return .immediate(store)
        case .redis(let address):
            let store = try RedisQuotaStore(configuration: .init(address: address, timeout: configuration.timeout), logger: logger)
            store.start()
            return .deferred(store)
        }
    }

    public var store: any QuotaStore {
        switch self {
        case .immediate(let store): store
        case .deferred(let store): store
        }
    }

    /// Stops the store (the embedded store writes everything first). Safe to call twice.
    public func shutdown() { store.shutdown() }
}
