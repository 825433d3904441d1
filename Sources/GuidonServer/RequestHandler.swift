import GuidonEngine
import GuidonJSON
public import GuidonProtocol
public import NIOCore

/// What every connection's handler shares.
public struct ServiceContext: Sendable {
    public var store: ConfigStore
    public var connections: Connections
    /// Longest accepted request line, in bytes, without its newline.
    public var maxLineBytes: Int
    /// Builds the `status` reply body.
    public var status: @Sendable () -> DaemonStatus

    public init(store: ConfigStore, connections: Connections, maxLineBytes: Int, status: @escaping @Sendable () -> DaemonStatus) {
        self.store = store
        self.connections = connections
        self.maxLineBytes = maxLineBytes
        self.status = status
    }
}

/// Answers newline-delimited JSON requests on one connection.
///
/// Frames lines itself, straight out of the received buffers (a line split across reads is
/// carried over), decodes each in place, encodes every reply of one read into one reusable
/// byte array, writes it as one buffer, and flushes once per read burst.
public final class RequestHandler: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private let service: ServiceContext
    private let parser = RequestParser()
    /// The start of a line whose newline has not arrived yet.
    private var partial: ByteBuffer?
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
            partial = nil
            carried.writeBuffer(&input)
            input = carried
        }
        let newline = UInt8(ascii: "\n")
        while !closing, let end = input.readableBytesView.firstIndex(of: newline) {
            let length = end - input.readerIndex
            if length > service.maxLineBytes {
                tooLarge()
                break
            }
            input.withUnsafeReadableBytes { bytes in
                handle(line: UnsafeRawBufferPointer(rebasing: bytes[0..<length]), channel: context.channel)
            }
            input.moveReaderIndex(forwardBy: length + 1)
        }
        if !closing && input.readableBytes > 0 {
            if input.readableBytes > service.maxLineBytes {
                tooLarge()
            } else {
                partial = input
            }
        }
        if closing {
            finish(context: context)
        } else {
            writeReplies(context: context)
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
        context.fireChannelReadComplete()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is DrainEvent {
            closing = true
            finish(context: context)
        } else if let event = event as? ChannelEvent, event == .inputClosed {
            // The client is done sending: answer a last unterminated line, then hang up.
            if let last = partial {
                partial = nil
                last.withUnsafeReadableBytes { handle(line: $0, channel: context.channel) }
            }
            closing = true
            finish(context: context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
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

    /// Answers one line into `replies`.
    private func handle(line: UnsafeRawBufferPointer, channel: any Channel) {
        var line = line
        if let last = line.last, last == UInt8(ascii: "\r") { line = UnsafeRawBufferPointer(rebasing: line.dropLast()) }
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }
        let request: Request
        do {
            request = try parser.parse(line)
        } catch {
            ReplyEncoder.error(error, into: &replies)
            return
        }
        let config = service.store.current
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
            service.connections.subscribe(channel)
            let now = service.store.current
            ReplyEncoder.reply(id: request.id, ["ok": true, "watching": true, "configVersion": .string(now.version)], into: &replies)
        }
    }
}
