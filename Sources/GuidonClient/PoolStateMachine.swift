import NIOCore

/// Which connection a call uses, when to connect, and when not to try: the pool's logic without
/// the I/O, at an explicit `now` (tests drive it with plain values).
///
/// Calls go to the first open connection that has fewer than `spillAt` requests in flight, and
/// the next slot connects (lazily) only when every open connection is that busy. A caller alone
/// thus keeps one connection — and one event loop on each side — warm: round robin over two
/// connections made each of its calls wake an event loop that had gone to sleep (one caller made
/// 6.2 k round trips per second that way, 9–10 k over one connection, in runs minutes apart on
/// the busy 2-core VM). A burst spreads over the pool.
///
/// A failed connection attempt starts a back-off for the whole pool: until it ends, calls that
/// find no open connection fail at once with `connectionFailed`, so that a daemon that is down
/// costs each call nothing but that answer (not a connection attempt, and never a timeout). A
/// connection that closes empties its slot; a later call connects it again.
struct PoolStateMachine<Connection: PooledConnection, Connecting> {
    enum Slot {
        case idle
        case connecting(Connecting)
        case connected(Connection)
    }

    private(set) var slots: [Slot]
    /// Requests in flight on a connection before calls spill onto the next.
    let spillAt: Int
    /// Connection attempts that failed in a row (0 while the daemon answers).
    private(set) var failures = 0
    private var retryAt: NIODeadline?
    private var lastFailure: GuidonClientError?
    private(set) var isShutDown = false
    let backoff: GuidonClientConfiguration.Backoff

    init(size: Int, backoff: GuidonClientConfiguration.Backoff, spillAt: Int = 16) {
        precondition(size >= 1, "a pool needs at least one connection")
        slots = Array(repeating: .idle, count: size)
        self.backoff = backoff
        self.spillAt = spillAt
    }

    enum LeaseAction {
        case use(Connection)
        /// Another call is connecting this slot: wait for it.
        case wait(Connecting)
        /// Connect `slot`, completing `attempt` (which other calls now wait for).
        case connect(slot: Int, attempt: Connecting)
        case fail(GuidonClientError)
    }

    /// Picks the connection for one call. `newAttempt` makes what later calls wait on while a
    /// slot connects (a promise's future); it is called only when this call is to connect.
    mutating func lease(now: NIODeadline, newAttempt: () -> Connecting) -> LeaseAction {
        if isShutDown { return .fail(GuidonClientError(.clientShutDown, "the client has been shut down")) }
        var leastBusy: Connection?
        var attempt: Connecting?
        var idle: Int?
        for slot in slots.indices {
            switch slots[slot] {
            case .connected(let connection) where connection.isOpen:
                if connection.load < spillAt { return .use(connection) }
                if leastBusy.map({ connection.load < $0.load }) ?? true { leastBusy = connection }
            case .connected:
                // Closed, and the close has not been reported yet: connect it again.
                slots[slot] = .idle
                idle = idle ?? slot
            case .connecting(let pending):
                attempt = attempt ?? pending
            case .idle:
                idle = idle ?? slot
            }
        }
        // Every open connection is busy (or there is none).
        if let leastBusy, attempt != nil || idle == nil { return .use(leastBusy) }
        if let attempt, leastBusy == nil { return .wait(attempt) }
        guard let idle else { preconditionFailure("every slot is open, connecting or idle") }
        if let retryAt, now < retryAt {
            if let leastBusy { return .use(leastBusy) }
            let wait = Duration(retryAt - now)
            let reason = lastFailure?.message ?? "connection failed"
            return .fail(GuidonClientError(.connectionFailed, "\(reason) (next attempt in \(wait.formattedMilliseconds))"))
        }
        let started = newAttempt()
        slots[idle] = .connecting(started)
        return .connect(slot: idle, attempt: started)
    }

    /// Returns whether the pool had been failing (the daemon is back).
    mutating func connected(_ connection: Connection, in slot: Int) -> (keep: Bool, recovered: Bool) {
        let recovered = failures > 0
        failures = 0
        retryAt = nil
        lastFailure = nil
        if isShutDown { return (false, recovered) }
        slots[slot] = .connected(connection)
        return (true, recovered)
    }

    /// Returns whether this is the first failure of a run (the daemon just became unreachable).
    mutating func connectFailed(in slot: Int, _ error: GuidonClientError, now: NIODeadline) -> Bool {
        if case .connecting = slots[slot] { slots[slot] = .idle }
        failures += 1
        retryAt = now + TimeAmount(backoff.delay(afterFailures: failures))
        lastFailure = error
        return failures == 1
    }

    mutating func closed(_ connection: Connection, in slot: Int) {
        if case .connected(let current) = slots[slot], current === connection { slots[slot] = .idle }
    }

    /// Marks the pool shut down; returns the open connections, to close.
    mutating func shutDown() -> [Connection] {
        isShutDown = true
        var open: [Connection] = []
        for i in slots.indices {
            if case .connected(let connection) = slots[i] { open.append(connection) }
            slots[i] = .idle
        }
        return open
    }
}

extension PoolStateMachine: Sendable where Connection: Sendable, Connecting: Sendable {}
extension PoolStateMachine.Slot: Sendable where Connection: Sendable, Connecting: Sendable {}

/// What the pool needs to know of a connection.
protocol PooledConnection: AnyObject {
    /// False as soon as the connection starts closing (before its waiters hear of it).
    var isOpen: Bool { get }
    /// Requests in flight.
    var load: Int { get }
}

extension Duration {
    /// `12 ms`, `1.5 ms`, `250 ms`: for messages.
    var formattedMilliseconds: String {
        let (seconds, attoseconds) = components
        let micros = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        if micros % 1000 == 0 { return "\(micros / 1000) ms" }
        return "\(micros / 1000).\(String(micros % 1000 / 100)) ms"
    }
}
