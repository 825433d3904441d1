import Atomics
public import Logging
import NIOConcurrencyHelpers

/// The open connections: enforces the connection limit (and refuses every new one once the
/// daemon is stopping) and keeps the `watch` subscribers.
///
/// Its lock is taken when a connection opens or closes, when it subscribes with `watch`, and
/// when an event is broadcast; answering `eval`, `ping`, `status` or `list` never takes it.
public final class Connections: Sendable {
    private struct State {
        var open: [ObjectIdentifier: Connection] = [:]
        var subscribers: [ObjectIdentifier: Connection] = [:]
        var draining = false
    }

    public let limit: Int
    /// How many unsent bytes a `watch` subscriber may have waiting before it is disconnected.
    public let watchBacklogLimit: Int
    private let logger: Logger
    // A pthread-based lock rather than the standard library's futex-based `Mutex`: ThreadSanitizer
    // understands the former, and the TSan run of the tests must see only real races.
    private let state = NIOLockedValueBox(State())
    private let openCount = ManagedAtomic(0)

    public init(limit: Int, watchBacklogLimit: Int = 1 << 20, logger: Logger = Logger(label: "guidon.connections")) {
        self.limit = limit
        self.watchBacklogLimit = watchBacklogLimit
        self.logger = logger
    }

    /// Open connections (read without locking, for `status`).
    public var count: Int { openCount.load(ordering: .relaxed) }

    /// Admits a new connection, or refuses it when the limit is reached or the daemon is stopping.
    func admit(_ connection: Connection) -> Bool {
        state.withLockedValue { state in
            guard !state.draining, state.open.count < limit else { return false }
            state.open[ObjectIdentifier(connection)] = connection
            openCount.store(state.open.count, ordering: .relaxed)
            return true
        }
    }

    func remove(_ connection: Connection) {
        state.withLockedValue { state in
            state.open[ObjectIdentifier(connection)] = nil
            state.subscribers[ObjectIdentifier(connection)] = nil
            openCount.store(state.open.count, ordering: .relaxed)
        }
    }

    func subscribe(_ connection: Connection) {
        state.withLockedValue { state in
            if state.open[ObjectIdentifier(connection)] != nil {
                state.subscribers[ObjectIdentifier(connection)] = connection
            }
        }
    }

    /// Writes one line to every subscriber.
    ///
    /// A subscriber that is not taking its events — more than `watchBacklogLimit` bytes would be
    /// waiting for it — is disconnected instead: the daemon's memory stays bounded however many
    /// reloads happen, and the client learns that it missed events (it reconnects, subscribes
    /// again and lists). With nothing waiting, one event is always accepted, however large.
    func broadcast(_ line: [UInt8]) {
        let subscribers = state.withLockedValue { Array($0.subscribers.values) }
        let limit = watchBacklogLimit
        let logger = logger
        for connection in subscribers {
            connection.execute { $0.push(line, backlogLimit: limit, logger: logger) }
        }
    }

    /// From now on, every new connection is refused (the daemon is stopping).
    func stopAdmitting() {
        state.withLockedValue { $0.draining = true }
    }
}
