import Logging
import NIOConcurrencyHelpers
import NIOCore

/// `poolSize` pipelined connections, connected lazily, with a shared reconnection back-off
/// (the logic is `PoolStateMachine`; this adds the lock, the connecting and the logging).
final class ConnectionPool: Sendable {
    private typealias Machine = PoolStateMachine<Connection, EventLoopPromise<Connection>>
    private let state: NIOLockedValueBox<Machine>
    private let configuration: GuidonClientConfiguration
    private let group: any EventLoopGroup
    private let logger: Logger

    init(configuration: GuidonClientConfiguration, group: any EventLoopGroup, logger: Logger) {
        state = NIOLockedValueBox(Machine(size: max(1, configuration.poolSize), backoff: configuration.reconnectBackoff))
        self.configuration = configuration
        self.group = group
        self.logger = logger
    }

    /// A connection for one call.
    func lease() async -> Result<Connection, GuidonClientError> {
        let group = group
        let action = state.withLockedValue {
            $0.lease(now: .now(), newAttempt: { group.next().makePromise(of: Connection.self) })
        }
        switch action {
        case .use(let connection):
            return .success(connection)
        case .fail(let error):
            return .failure(error)
        case .wait(let attempt):
            return await Self.outcome(of: attempt.futureResult)
        case .connect(let slot, let attempt):
            connect(slot: slot, completing: attempt)
            return await Self.outcome(of: attempt.futureResult)
        }
    }

    /// Closes every connection and refuses new calls; waits until the connections are closed.
    func shutdown() async {
        let open = state.withLockedValue { $0.shutDown() }
        for connection in open { connection.close(with: Self.shutDownError) }
        for connection in open { try? await connection.channel.closeFuture.get() }
    }

    /// For `deinit`: the same without waiting.
    func shutdownNow() {
        for connection in state.withLockedValue({ $0.shutDown() }) { connection.close(with: Self.shutDownError) }
    }

    static let shutDownError = GuidonClientError(.clientShutDown, "the client has been shut down")

    private func connect(slot: Int, completing attempt: EventLoopPromise<Connection>) {
        let socket = configuration.socket
        let state = state
        let logger = logger
        Connection.connect(
            to: socket, group: group, maxLineBytes: configuration.maxReplyBytes,
            timeout: TimeAmount(configuration.timeout)
        ).whenComplete { result in
            switch result {
            case .success(let connection):
                let (keep, recovered) = state.withLockedValue { $0.connected(connection, in: slot) }
                guard keep else {
                    connection.close(with: Self.shutDownError)
                    attempt.fail(Self.shutDownError)
                    return
                }
                if recovered { logger.notice("guidond answers again", metadata: ["socket": "\(socket)"]) }
                connection.channel.closeFuture.whenComplete { _ in
                    state.withLockedValue { $0.closed(connection, in: slot) }
                }
                attempt.succeed(connection)
            case .failure(let error):
                let failure = GuidonClientError(.connectionFailed, "cannot connect to guidond on \(socket): \(error)")
                let first = state.withLockedValue { $0.connectFailed(in: slot, failure, now: .now()) }
                if first {
                    // Once per outage, not once per call: calls answer their defaults meanwhile.
                    logger.warning(
                        "guidond is unreachable; evaluations answer their defaults until it is back",
                        metadata: ["socket": "\(socket)", "error": "\(error)"])
                }
                attempt.fail(failure)
            }
        }
    }

    private static func outcome(of future: EventLoopFuture<Connection>) async -> Result<Connection, GuidonClientError> {
        do {
            return .success(try await future.get())
        } catch let error as GuidonClientError {
            return .failure(error)
        } catch {
            return .failure(GuidonClientError(.connectionFailed, "\(error)"))
        }
    }
}
