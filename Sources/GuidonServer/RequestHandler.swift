import GuidonEngine
import GuidonJSON
public import GuidonProtocol
public import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What every connection's handler shares.
public struct ServiceContext: Sendable {
    public var store: ConfigStore
    public var connections: Connections
    /// Longest accepted request line, in bytes, without its newline.
    public var maxLineBytes: Int
    /// How many reply bytes a connection may produce before its handler lets them drain
    /// (bounds the memory a burst of small requests with large replies can take).
    public var replyBudget: Int
    /// Builds the `status` reply body.
    public var status: @Sendable () -> DaemonStatus

    public init(
        store: ConfigStore, connections: Connections, maxLineBytes: Int, replyBudget: Int = 256 * 1024,
        status: @escaping @Sendable () -> DaemonStatus
    ) {
        self.store = store
        self.connections = connections
        self.maxLineBytes = maxLineBytes
        self.replyBudget = replyBudget
        self.status = status
    }
}

/// Answers newline-delimited JSON requests on one connection.
///
/// Frames lines itself, straight out of the received buffers (a line split across reads is
/// carried over), decodes each in place into one `Request` kept for the connection (so that
/// the usual request allocates nothing), answers every line of one read from one configuration,
/// encodes the replies into one reusable byte array, writes it as one buffer, and flushes once
/// per read burst.
///
/// Flow control: when the replies of a burst exceed the reply budget, the remaining lines wait
/// (reading from the socket stops) until the replies have been written; and while the channel
/// is not writable (the client is not reading its replies) nothing more is read or answered.
public final class RequestHandler: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private let service: ServiceContext
    private let parser = RequestParser()
    /// The request being answered, kept between lines so that decoding reuses its storage.
    private var request = Request(op: .ping)
    private static let newline = Int32(UInt8(ascii: "\n"))
    /// Received bytes not yet answered: lines held back by flow control, then the start of a
    /// line whose newline has not arrived yet.
    private var partial: ByteBuffer?
    /// Whether reading is stopped (autoRead off) until the held-back lines are answered.
    private var paused = false
    private var resumeScheduled = false
    /// The client will send nothing more (or the daemon is stopping): answer what is held, then close.
    private var finishWhenDone = false
    /// Whether a last line without a newline counts as a request (the client half-closed).
    private var answerUnterminatedLine = false
    /// Replies not yet written (reused: keeps its capacity).
    private var replies: [UInt8] = []
    /// The outbound buffer, reused once the channel has written it out (then we hold the only reference).
    private var outbound: ByteBuffer?
    private var admitted = false
    /// Scratch space kept between reads; bigger bursts get fresh buffers.
    private static let retainedBytes = 64 * 1024
    private var closing = false

    public init(service: ServiceContext) {
        self.service = service
        replies.reserveCapacity(4096)
    }

    public func channelActive(context: ChannelHandlerContext) {
        if service.connections.admit(context.channel) {
            admitted = true
        } else {
            ReplyEncoder.error(RequestError(code: .overloaded, message: "too many connections (limit \(service.connections.limit)); try again later"), into: &replies)
            finish(context: context)
        }
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if admitted { service.connections.remove(context.channel) }
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var input = unwrapInboundIn(data)
        if var carried = partial {
            carried.writeBuffer(&input)
            partial = carried
        } else {
            partial = input
        }
        if !paused { process(context: context) }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
        context.fireChannelReadComplete()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable && paused { process(context: context, flush: true) }
        context.fireChannelWritabilityChanged()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is DrainEvent || (event as? ChannelEvent) == .inputClosed {
            // Stopping, or the client is done sending: answer what has arrived, then hang up.
            finishWhenDone = true
            if !(event is DrainEvent) { answerUnterminatedLine = true }
            if !paused { process(context: context, flush: true) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// Answers the complete lines in `partial` until they run out, the reply budget is spent,
    /// or the channel stops being writable; pauses or resumes reading accordingly.
    /// Every reply of one call comes from the same configuration.
    private func process(context: ChannelHandlerContext, flush: Bool = false) {
        guard !closing, var input = partial else {
            if finishWhenDone { finish(context: context) }
            return
        }
        partial = nil
        // Writability changes only when replies are written or drained, and neither happens
        // before `writeReplies` below.
        let writable = context.channel.isWritable
        let config = service.store.current
        var request = Request(op: .ping)
        swap(&request, &self.request)
        defer { swap(&request, &self.request) }
        var heldBack = false
        let consumed = input.withUnsafeReadableBytes { bytes -> Int in
            guard let base = bytes.baseAddress else { return 0 }
            var start = 0
            var answered = 0
            while !closing, let found = memchr(base + start, Self.newline, bytes.count - start) {
                if replies.count >= service.replyBudget || (answered > 0 && !writable) {
                    heldBack = true
                    break
                }
                let end = base.distance(to: UnsafeRawPointer(found))
                if end - start > service.maxLineBytes {
                    tooLarge()
                    break
                }
                handle(line: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), request: &request, config: config, context: context)
                start = end + 1
                answered += 1
            }
            return start
        }
        input.moveReaderIndex(forwardBy: consumed)
        if !closing && input.readableBytes > 0 {
            if !heldBack && input.readableBytes > service.maxLineBytes {
                tooLarge()
            } else {
                partial = input
            }
        }
        if closing {
            finish(context: context)
            return
        }
        writeReplies(context: context)
        if heldBack {
            setReading(false, context: context)
            context.flush()
            if context.channel.isWritable { scheduleResume(context: context) }
            return
        }
        setReading(true, context: context)
        if finishWhenDone {
            // After a half-close, a last line without a newline is a request too.
            if answerUnterminatedLine, let last = partial {
                partial = nil
                last.withUnsafeReadableBytes { handle(line: $0, request: &request, config: config, context: context) }
            }
            finish(context: context)
        } else if flush {
            context.flush()
        }
    }

    /// Continues with held-back lines on a later event-loop tick, once the replies so far are out.
    private func scheduleResume(context: ChannelHandlerContext) {
        guard !resumeScheduled else { return }
        resumeScheduled = true
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = bound.value
            handler.resumeScheduled = false
            if context.channel.isWritable { handler.process(context: context, flush: true) }
        }
    }

    private func setReading(_ on: Bool, context: ChannelHandlerContext) {
        guard paused == on else { return }
        paused = !on
        context.channel.setOption(ChannelOptions.autoRead, value: on).whenFailure { _ in }
        if on { context.read() }
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: -

    private func tooLarge() {
        closing = true
        partial = nil
        ReplyEncoder.error(RequestError(code: .tooLarge, message: "request line longer than \(service.maxLineBytes) bytes; closing the connection"), into: &replies)
    }

    private func writeReplies(context: ChannelHandlerContext) {
        guard !replies.isEmpty else { return }
        var buffer = outbound.take() ?? context.channel.allocator.buffer(capacity: max(replies.count, 1024))
        buffer.clear()  // no allocation when the previous write has completed and released it
        buffer.writeBytes(replies)
        // Keep the scratch space for the next read, unless a huge burst blew it up.
        let keep = replies.count <= Self.retainedBytes
        replies.removeAll(keepingCapacity: keep)
        outbound = keep ? buffer : nil
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    /// Writes what is pending, then closes once it has gone out.
    private func finish(context: ChannelHandlerContext) {
        closing = true
        writeReplies(context: context)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    /// Answers one line into `replies`, decoding it into `request` (whose storage it reuses).
    private func handle(line: UnsafeRawBufferPointer, request: inout Request, config: ServedConfig, context: ChannelHandlerContext) {
        var line = line
        if let last = line.last, last == UInt8(ascii: "\r") { line = UnsafeRawBufferPointer(rebasing: line.dropLast()) }
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }
        do {
            try parser.parse(line, into: &request)
        } catch {
            ReplyEncoder.error(error, into: &replies)
            return
        }
        let snapshot = config.snapshot
        switch request.op {
        case .eval:
            if let keys = request.flags {
                let results = snapshot.evaluate(keys, context: request.context, type: request.type)
                ReplyEncoder.evalMany(id: request.id, results: results, default: request.defaultValue, into: &replies)
            } else {
                let result = snapshot.evaluate(request.flag ?? "", context: request.context, type: request.type)
                ReplyEncoder.eval(id: request.id, result: result, default: request.defaultValue, into: &replies)
            }
        case .evalAll:
            ReplyEncoder.evalAll(id: request.id, results: snapshot.evaluateAll(context: request.context), into: &replies)
        case .ping:
            ReplyEncoder.ping(id: request.id, configVersion: config.version, flagCount: snapshot.count, into: &replies)
        case .status:
            ReplyEncoder.reply(id: request.id, service.status().json, into: &replies)
        case .list:
            ReplyEncoder.reply(id: request.id, FlagListing.json(configVersion: config.version, flags: snapshot.flags), into: &replies)
        case .watch:
            service.connections.subscribe(context.channel)
            let now = service.store.current
            ReplyEncoder.reply(id: request.id, ["ok": true, "watching": true, "configVersion": .string(now.version)], into: &replies)
        }
    }
}
