import Atomics
import GuidonJSON
import NIOCore
import NIOPosix

/// One connection to the daemon, shared by any number of concurrent callers: each call is
/// handed to the channel's event loop, written at once (pipelined behind the others) and
/// resumed when its reply comes back.
final class Connection: PooledConnection, Sendable {
    let channel: any Channel
    let socket: String
    private let handler: NIOLoopBound<ConnectionHandler>
    /// Request ids; unique on this connection (the order of replies is the order in which the
    /// event loop received the requests, which need not be the order of their ids).
    private let lastID = ManagedAtomic<Int>(0)
    /// Cleared by the handler as the connection starts closing, before it fails the waiting
    /// requests: a request sent again from one of them must not land on this connection.
    private let open: ManagedAtomic<Bool>

    private init(channel: any Channel, socket: String, handler: ConnectionHandler, open: ManagedAtomic<Bool>) {
        self.channel = channel
        self.socket = socket
        self.handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        self.open = open
    }

    var isOpen: Bool { open.load(ordering: .acquiring) }

    /// Requests sent and not yet answered (or given up on), for the pool to spread a burst.
    private let inFlight = ManagedAtomic<Int>(0)
    var load: Int { inFlight.load(ordering: .relaxed) }

    /// Connects to the daemon's socket. Event lines (`watch`) go to `onEvent`, on the event loop.
    static func connect(
        to socket: String, group: any EventLoopGroup, maxLineBytes: Int, timeout: TimeAmount,
        onEvent: (@Sendable (JSONObject) -> Void)? = nil
    ) -> EventLoopFuture<Connection> {
        let open = ManagedAtomic(true)
        return ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionHandler(maxLineBytes: maxLineBytes, open: open, onEvent: onEvent))
                }
            }
            .connect(unixDomainSocketPath: socket)
            .flatMapThrowing { channel in
                let handler = try channel.pipeline.syncOperations.handler(type: ConnectionHandler.self)
                return Connection(channel: channel, socket: socket, handler: handler, open: open)
            }
    }

    /// Sends one request and waits for its reply until `deadline`. Never throws: the failure
    /// is in the result, for the caller to turn into a default or an error. The reply is parsed
    /// here, on the caller's thread, not on the event loop every reply goes through.
    func request(_ members: [UInt8], deadline: NIODeadline) async -> Result<JSONObject, GuidonClientError> {
        inFlight.wrappingIncrement(ordering: .relaxed)
        let reply = await send(members, deadline: deadline)
        inFlight.wrappingDecrement(ordering: .relaxed)
        return reply.flatMap(Reply.parse)
    }

    private func send(_ members: [UInt8], deadline: NIODeadline) async -> Result<ByteBuffer, GuidonClientError> {
        let id = lastID.wrappingIncrementThenLoad(ordering: .relaxed)
        let handler = handler
        let slot = ReplySlot()
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let submission = Submission(id: id, members: members, deadline: deadline, waiter: .continuation(continuation, slot))
                handler.eventLoop.execute { handler.value.submit(submission) }
            }
        } onCancel: {
            handler.eventLoop.execute { handler.value.cancel(id: id) }
        }
        return slot.take()
    }

    /// Closes the connection; pending requests fail with `error`.
    func close(with error: GuidonClientError) {
        let handler = handler
        handler.eventLoop.execute { handler.value.close(with: error) }
    }
}
