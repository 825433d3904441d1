import Atomics
public import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The open connections: enforces the connection limit, keeps the `watch` subscribers,
/// and drains everything on shutdown.
///
/// Its lock is taken when a connection opens or closes, when it subscribes with `watch`, and
/// when an event is broadcast; answering `eval`, `ping`, `status` or `list` never takes it.
public final class Connections: Sendable {
    private struct State {
        var open: [ObjectIdentifier: any Channel] = [:]
        var subscribers: [ObjectIdentifier: any Channel] = [:]
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
    func admit(_ channel: any Channel) -> Bool {
        state.withLockedValue { state in
            guard !state.draining, state.open.count < limit else { return false }
            state.open[ObjectIdentifier(channel)] = channel
            openCount.store(state.open.count, ordering: .relaxed)
            return true
        }
    }

    func remove(_ channel: any Channel) {
        state.withLockedValue { state in
            state.open[ObjectIdentifier(channel)] = nil
            state.subscribers[ObjectIdentifier(channel)] = nil
            openCount.store(state.open.count, ordering: .relaxed)
        }
    }

    func subscribe(_ channel: any Channel) {
        state.withLockedValue { state in
            if state.open[ObjectIdentifier(channel)] != nil {
                state.subscribers[ObjectIdentifier(channel)] = channel
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
        for channel in subscribers {
            channel.eventLoop.execute {
                let waiting = (try? channel.syncOptions?.getOption(ChannelOptions.bufferedWritableBytes)) ?? 0
                if waiting > 0 && waiting + line.count > limit {
                    logger.warning(
                        "disconnecting a watch subscriber that is not reading its events",
                        metadata: ["waitingBytes": "\(waiting)", "eventBytes": "\(line.count)"])
                    channel.close(promise: nil)
                    return
                }
                var buffer = channel.allocator.buffer(capacity: line.count)
                buffer.writeBytes(line)
                channel.writeAndFlush(buffer, promise: nil)
            }
        }
    }

    /// Stops admitting connections, then asks every open one to finish: what has been
    /// received is answered, written out, and the connection closed. Succeeds once all are closed.
    func drain(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let channels = state.withLockedValue { state in
            state.draining = true
            return Array(state.open.values)
        }
        let closed = channels.map { channel in
            channel.pipeline.fireUserInboundEventTriggered(DrainEvent())
            return channel.closeFuture
        }
        return EventLoopFuture.andAllComplete(closed, on: eventLoop)
    }
}

/// Tells a connection's handler to finish up and close.
struct DrainEvent: Sendable {}
