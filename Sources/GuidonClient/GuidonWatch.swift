import Logging
import NIOCore

/// The daemon's configuration changes, as an `AsyncSequence` that never fails.
///
/// ```swift
/// for await change in guidon.watch() {
///     print(change.kind, change.configVersion, change.added, change.changed, change.removed)
/// }
/// ```
///
/// Each iteration opens a connection of its own (never one of the pool's), sends `watch`, then
/// `list`. Its first element is `.subscribed`: from then on every reload that changes the flag
/// set arrives as `.changed`. When the connection is lost (the daemon restarts, or this consumer
/// fell so far behind that the daemon or the client gave up on it), events may have been
/// missed: the stream reconnects with the client's back-off, subscribes and lists again, and
/// yields `.resynchronized` with what it can tell (see `GuidonConfigurationChange.Kind`).
///
/// The sequence ends when the client shuts down or the iterating task is cancelled; never with
/// an error. One consumer per iterator.
public struct GuidonWatch: AsyncSequence, Sendable {
    public typealias Element = GuidonConfigurationChange
    public typealias Failure = Never

    let client: GuidonClient

    public func makeAsyncIterator() -> Iterator {
        Iterator(session: WatchSession(client: client))
    }

    /// Sendable (it can move into another task), but one `next()` at a time, as for any iterator.
    public struct Iterator: AsyncIteratorProtocol, Sendable {
        public typealias Element = GuidonConfigurationChange
        public typealias Failure = Never

        let session: WatchSession

        public mutating func next() async -> GuidonConfigurationChange? {
            await session.next()
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async -> GuidonConfigurationChange? {
            await session.next()
        }
    }
}

/// One `watch` stream's connection and what it knows: the version last seen and the flag keys,
/// to tell what changed across a reconnection.
actor WatchSession {
    private let client: GuidonClient
    private let mailbox = WatchMailbox(capacity: 4096)
    private let registered: Bool
    private var connection: Connection?
    private var generation = 0
    /// The version last seen; `nil` before the first subscription.
    private var configVersion: String?
    private var keys: Set<String> = []
    private var ready: [GuidonConfigurationChange] = []
    private var failures = 0
    private var retryAt: NIODeadline?
    private var finished = false
    /// A `next()` is running (and suspended): a second one at the same time is a misuse.
    private var consuming = false

    init(client: GuidonClient) {
        self.client = client
        registered = client.register(mailbox)
    }

    deinit {
        connection?.close(with: ConnectionPool.shutDownError)
        client.unregister(mailbox)
    }

    func next() async -> GuidonConfigurationChange? {
        precondition(!consuming, "GuidonWatch.Iterator.next() called while another call is waiting")
        consuming = true
        defer { consuming = false }
        let eventLoop = client.group.next()
        while !finished {
            if !ready.isEmpty { return ready.removeFirst() }
            if !registered || mailbox.isTerminated || Task.isCancelled { break }
            guard let current = connection else {
                if let retryAt {
                    switch await mailbox.next(until: retryAt, on: eventLoop) {
                    case .terminated, .cancelled: finish()
                    default: break
                    }
                    if finished { break }
                }
                await subscribe()
                continue
            }
            switch await mailbox.next(on: eventLoop) {
            case .event(let event):
                apply(event)
            case .closed, .overflowed:
                current.close(with: GuidonClientError(.connectionClosed, "the watch stream fell behind"))
                connection = nil
                retryAt = nil  // at once: the daemon may be back already; a failure starts the back-off
                client.logger.info("guidond watch connection lost; resubscribing", metadata: ["socket": "\(client.configuration.socket)"])
            case .terminated, .cancelled:
                finish()
            case .timedOut:
                break
            }
        }
        finish()
        return nil
    }

    private func finish() {
        guard !finished else { return }
        finished = true
        connection?.close(with: ConnectionPool.shutDownError)
        connection = nil
        client.unregister(mailbox)
    }

    private func apply(_ event: JSONObject) {
        guard let change = try? Watch.decodeEvent(event) else {
            client.logger.warning("unreadable watch event ignored", metadata: ["event": "\(JSONValue.object(event))"])
            return
        }
        configVersion = change.configVersion
        keys.formUnion(change.added)
        keys.subtract(change.removed)
        ready.append(change)
    }

    /// Connects, subscribes and lists; on success queues `.subscribed` or `.resynchronized`.
    private func subscribe() async {
        generation += 1
        let generation = generation
        let mailbox = mailbox
        mailbox.begin(generation: generation)
        let configuration = client.configuration
        let deadline = NIODeadline.now() + TimeAmount(configuration.watchSetupTimeout)
        do {
            let opened: Connection
            do {
                opened = try await Connection.connect(
                    to: configuration.socket, group: client.group, maxLineBytes: configuration.maxReplyBytes,
                    timeout: TimeAmount(configuration.watchSetupTimeout),
                    onEvent: { mailbox.push(.event($0), generation: generation) }
                ).get()
            } catch {
                throw GuidonClientError(.connectionFailed, "cannot connect to guidond on \(configuration.socket): \(error)")
            }
            opened.channel.closeFuture.whenComplete { _ in mailbox.push(.closed, generation: generation) }
            connection = opened
            let subscribedAt = try Watch().decode(try await request(Watch(), on: opened, deadline: deadline))
            let list = try List().decode(try await request(List(), on: opened, deadline: deadline))
            let listed = Set(list.flags.map(\.key))
            if let previous = configVersion {
                let same = previous == list.configVersion
                ready.append(GuidonConfigurationChange(
                    kind: .resynchronized, configVersion: list.configVersion,
                    added: listed.subtracting(keys).sorted(),
                    changed: same ? [] : keys.intersection(listed).sorted(),
                    removed: keys.subtracting(listed).sorted()))
                configVersion = list.configVersion
            } else {
                ready.append(GuidonConfigurationChange(kind: .subscribed, configVersion: subscribedAt))
                configVersion = subscribedAt
            }
            keys = listed
            if failures > 0 {
                client.logger.notice("guidond watch resubscribed", metadata: ["socket": "\(configuration.socket)"])
            }
            failures = 0
            retryAt = nil
        } catch {
            let failure = error as? GuidonClientError ?? GuidonClientError(.connectionFailed, "\(error)")
            connection?.close(with: failure)
            connection = nil
            failures += 1
            retryAt = .now() + TimeAmount(configuration.reconnectBackoff.delay(afterFailures: failures))
            if failures == 1 {
                client.logger.warning(
                    "guidond watch cannot subscribe; retrying", metadata: ["socket": "\(configuration.socket)", "error": "\(error)"])
            }
        }
    }

    private func request<Operation: GuidonOperation>(
        _ operation: Operation, on connection: Connection, deadline: NIODeadline
    ) async throws(GuidonClientError) -> JSONObject {
        var members: [UInt8] = []
        operation.encodeMembers(into: &members)
        return try await connection.request(members, deadline: deadline).get()
    }
}
