import Atomics
import GuidonJSON
import NIOConcurrencyHelpers
import NIOCore

/// Who waits for a reply: an async caller, or (in tests and for internal chaining) a promise.
enum ReplyWaiter: Sendable {
    case continuation(CheckedContinuation<Void, Never>, ReplySlot)
    case promise(EventLoopPromise<ByteBuffer>)

    func resume(_ result: Result<ByteBuffer, GuidonClientError>) {
        switch self {
        case .continuation(let continuation, let slot):
            slot.put(result)
            continuation.resume()
        case .promise(let promise): promise.completeWith(result.mapError { $0 as any Error })
        }
    }
}

/// Where the event loop leaves a reply for its async caller, who parses it on its own thread.
///
/// The caller makes the slot before it submits the request and takes the reply out after it is
/// resumed; both sides go through the slot's lock. ThreadSanitizer reported, intermittently,
/// races between the loop writing a reply and the caller reading it when the reply itself was
/// handed over through the continuation (an edge it did not see), and between the caller
/// reading a slice of the channel's receive buffer and NIO's pooled allocator reusing that
/// buffer once it looked uniquely owned (the Swift runtime's reference counts, which TSan cannot
/// see: swift-nio issue 303). A lock on an object both threads already share is an edge TSan
/// sees, and the caller gets bytes of its own (one small copy per reply, on the loop).
final class ReplySlot: Sendable {
    private let reply = NIOLockedValueBox<Result<ByteBuffer, GuidonClientError>?>(nil)

    func put(_ result: Result<ByteBuffer, GuidonClientError>) {
        let own = result.map { ByteBuffer(bytes: $0.readableBytesView) }
        reply.withLockedValue { $0 = own }
    }

    /// The reply (call once the waiter was resumed, which happens only after `put`).
    func take() -> Result<ByteBuffer, GuidonClientError> {
        reply.withLockedValue { $0! }
    }
}

/// One request on its way to the handler: the members the operation wrote, the id the
/// connection gave it, when its caller stops waiting, and the caller.
struct Submission: Sendable {
    var id: Int
    /// The request's members other than `id`, without braces (`"op":"ping"`).
    var members: [UInt8]
    var deadline: NIODeadline
    var waiter: ReplyWaiter
}

/// Carries out `ConnectionStateMachine`'s decisions on a NIO channel: writes requests, splits
/// and reads replies, keeps one timer for the earliest deadline, and fails what is pending when
/// the channel goes.
///
/// Confined to its channel's event loop (`Connection` reaches it through `NIOLoopBound`).
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var machine = ConnectionStateMachine<ReplyWaiter>()
    private var lines: NIOSingleStepByteToMessageProcessor<LineDecoder>
    private var context: ChannelHandlerContext?
    /// Armed for the earliest deadline of a waiting request, at most one at a time: a steady
    /// stream of requests costs one timer per timeout period, not one per request.
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    private var flushScheduled = false
    /// Event lines (`watch`), on the event loop.
    private let onEvent: (@Sendable (JSONObject) -> Void)?

    /// Cleared when the connection starts closing, before any waiter hears of it.
    private let open: ManagedAtomic<Bool>

    init(maxLineBytes: Int, open: ManagedAtomic<Bool> = ManagedAtomic(true), onEvent: (@Sendable (JSONObject) -> Void)? = nil) {
        lines = NIOSingleStepByteToMessageProcessor(LineDecoder(maxLineBytes: maxLineBytes))
        self.open = open
        self.onEvent = onEvent
    }

    /// Requests waiting for their replies (tests look).
    var pendingCount: Int { machine.pending.count }

    // MARK: - From `Connection`, on the event loop

    func submit(_ submission: Submission) {
        switch machine.submit(id: submission.id, deadline: submission.deadline, waiter: submission.waiter) {
        case .fail(let waiter, let error):
            waiter.resume(.failure(error))
        case .write:
            guard let context else {
                // Not in a pipeline yet or any more: `handlerRemoved` closed the machine, so
                // this cannot happen after it; before `handlerAdded`, nobody has the handler.
                preconditionFailure("ConnectionHandler used outside a pipeline")
            }
            var buffer = context.channel.allocator.buffer(capacity: submission.members.count + 24)
            buffer.writeStaticString(#"{"id":"#)
            buffer.writeDecimal(submission.id)
            buffer.writeInteger(UInt8(ascii: ","))
            buffer.writeBytes(submission.members)
            buffer.writeStaticString("}\n")
            context.write(wrapOutboundOut(buffer), promise: nil)
            scheduleFlush(context)
            armTimer(for: submission.deadline, context)
        }
    }

    func cancel(id: Int) {
        machine.cancel(id: id)?.resume(.failure(GuidonClientError(.cancelled, "the calling task was cancelled")))
    }

    /// Closes the connection; what is pending fails with `error`.
    func close(with error: GuidonClientError) {
        failAll(machine.closed(with: error))
        context?.close(promise: nil)
    }

    // MARK: - ChannelInboundHandler

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(machine.closed())
        timer?.cancel()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try lines.process(buffer: unwrapInboundIn(data)) { line in
                apply(machine.received(line: line), context)
            }
        } catch {
            lineFailed(error, context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        do {
            try lines.finishProcessing(seenEOF: true) { line in
                apply(machine.received(line: line), context)
            }
        } catch {
            lineFailed(error, context)
        }
        failAll(machine.closed())
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        close(with: GuidonClientError(.connectionClosed, "the connection to guidond failed: \(error)"))
    }

    // MARK: - Private

    private func apply(_ action: ConnectionStateMachine<ReplyWaiter>.LineAction, _ context: ChannelHandlerContext) {
        switch action {
        case .none: break
        case .complete(let waiter, let result): waiter.resume(result)
        case .event(let event): onEvent?(event)
        case .close(let error): close(with: error)
        }
    }

    private func lineFailed(_ error: any Error, _ context: ChannelHandlerContext) {
        if let tooLong = error as? LineDecoder.LineTooLong {
            close(with: .violation("guidond sent a line longer than \(tooLong.limit) bytes (maxReplyBytes)"))
        } else {
            close(with: .violation("unreadable reply stream: \(error)"))
        }
    }

    private func failAll(_ closed: (waiters: [ReplyWaiter], error: GuidonClientError)) {
        open.store(false, ordering: .releasing)
        for waiter in closed.waiters { waiter.resume(.failure(closed.error)) }
    }

    /// Flushes once after every submit queued on the loop so far: concurrent callers' requests
    /// leave in one `write` (measured with 16 tasks pipelining on one connection, see
    /// docs/SWIFT-CLIENT.md).
    private func scheduleFlush(_ context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            self.context?.flush()
        }
    }

    private func armTimer(for deadline: NIODeadline, _ context: ChannelHandlerContext) {
        if let timerDeadline, timerDeadline <= deadline { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.timerFired()
        }
    }

    private func timerFired() {
        timer = nil
        timerDeadline = nil
        guard let context else { return }
        let expired = machine.expire(now: context.eventLoop.now)
        if !expired.isEmpty {
            for waiter in expired {
                waiter.resume(.failure(GuidonClientError(.timeout, "no reply from guidond before the call's deadline")))
            }
            // The daemon has not answered in time: it is stuck or overloaded, and the requests
            // behind may be too. Close, so that they are sent again on a fresh connection while
            // they still have time, and no later request queues behind a stuck one.
            close(with: GuidonClientError(.connectionClosed, "closed after a request to guidond timed out"))
            return
        }
        if let next = machine.earliestDeadline { armTimer(for: next, context) }
    }
}

extension ByteBuffer {
    /// Writes a non-negative integer in decimal without making a `String`.
    mutating func writeDecimal(_ value: Int) {
        precondition(value >= 0)
        if value < 10 {
            writeInteger(UInt8(ascii: "0") + UInt8(value))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes hold any Int's digits
        var count = 0
        var rest = value
        withUnsafeMutableBytes(of: &digits) { raw in
            while rest > 0 {
                count += 1
                raw[raw.count - count] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            }
            writeBytes(UnsafeRawBufferPointer(rebasing: raw[(raw.count - count)...]))
        }
    }
}
