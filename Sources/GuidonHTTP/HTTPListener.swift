import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// Where and how the HTTP listener serves.
public struct HTTPListenerConfiguration: Sendable, Hashable {
    /// The address to bind: loopback unless one is given.
    public var host: String
    /// The TCP port; 0 picks a free one (see `HTTPListener.port`).
    public var port: Int
    /// Largest request body accepted (larger: `413`). 64 KiB: room for an OFREP bulk evaluation's context.
    public var maxBodyBytes: Int
    /// Largest request head (request line and headers; larger: `431`). 16 KiB.
    public var maxHeaderBytes: Int
    /// A request must arrive whole within this time of the connection opening or of the last
    /// response; otherwise (a client that sends nothing, or trickles) the connection is closed.
    public var requestTimeout: Duration
    /// Connections beyond this are closed at once.
    public var maxConnections: Int

    public init(
        host: String = "127.0.0.1", port: Int, maxBodyBytes: Int = 64 * 1024, maxHeaderBytes: Int = 16 * 1024,
        requestTimeout: Duration = .seconds(10), maxConnections: Int = 64
    ) {
        self.host = host
        self.port = port
        self.maxBodyBytes = maxBodyBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.requestTimeout = requestTimeout
        self.maxConnections = maxConnections
    }

    /// `HOST:PORT`, `[V6]:PORT`, or `PORT` alone (on loopback).
    public init(listen text: String) throws(HTTPListenerError) {
        let host: String
        let portText: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw HTTPListenerError(.invalidAddress, "'\(text)': expected [ADDRESS]:PORT") }
            portText = rest.dropFirst()
        } else if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon])
            portText = text[text.index(after: colon)...]
        } else {
            host = "127.0.0.1"
            portText = Substring(text)
        }
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw HTTPListenerError(.invalidAddress, "'\(text)': the port must be a number from 0 to 65535")
        }
        guard !host.isEmpty else { throw HTTPListenerError(.invalidAddress, "'\(text)': no address before the port") }
        self.init(host: host, port: port)
    }
}

/// Why the listener could not start.
public struct HTTPListenerError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable { case invalidAddress, cannotBind, alreadyStarted }
        private let value: Value
        public static let invalidAddress = Code(value: .invalidAddress)
        public static let cannotBind = Code(value: .cannotBind)
        public static let alreadyStarted = Code(value: .alreadyStarted)
        public var description: String {
            switch value {
            case .invalidAddress: "invalid address"
            case .cannotBind: "cannot bind"
            case .alreadyStarted: "already started"
            }
        }
    }

    public var code: Code
    /// What, where, why.
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// An HTTP/1.1 server on NIOHTTP1, on one event-loop thread of its own: whatever its clients do,
/// the Unix-socket loops never run its code. Requests are read whole (head and body, within the
/// configured limits) and handed to an `HTTPRouter`; malformed requests get `400`, oversized
/// heads `431`, oversized bodies `413`, and the connection is closed.
public final class HTTPListener: Sendable {
    private enum State {
        case idle
        case running(group: MultiThreadedEventLoopGroup, channel: any Channel)
        case stopped
    }

    public let configuration: HTTPListenerConfiguration
    private let router: HTTPRouter
    private let state = NIOLockedValueBox(State.idle)
    private let open = NIOLockedValueBox(0)

    public init(configuration: HTTPListenerConfiguration, router: HTTPRouter) {
        self.configuration = configuration
        self.router = router
    }

    /// Binds and starts serving; returns once the socket listens.
    public func start() throws(HTTPListenerError) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let claimed = state.withLockedValue { state -> Bool in
            guard case .idle = state else { return false }
            state = .stopped  // until running: a concurrent start fails
            return true
        }
        guard claimed else {
            try? group.syncShutdownGracefully()
            throw HTTPListenerError(.alreadyStarted, "the HTTP listener was started before")
        }
        let configuration = configuration
        let router = router
        let open = open
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let admitted = open.withLockedValue { count -> Bool in
                    guard count < configuration.maxConnections else { return false }
                    count += 1
                    return true
                }
                guard admitted else { return channel.close() }
                channel.closeFuture.whenComplete { _ in open.withLockedValue { $0 -= 1 } }
                return channel.eventLoop.makeCompletedFuture {
                    try Self.configure(channel.pipeline.syncOperations, configuration, router)
                }
            }
        do {
            let channel = try bootstrap.bind(host: configuration.host, port: configuration.port).wait()
            state.withLockedValue { $0 = .running(group: group, channel: channel) }
        } catch {
            try? group.syncShutdownGracefully()
            throw HTTPListenerError(.cannotBind, "cannot listen on \(configuration.host):\(configuration.port): \(error)")
        }
    }

    /// The port it listens on (the one picked, for port 0), once started.
    public var port: Int? {
        state.withLockedValue { state in
            guard case .running(_, let channel) = state else { return nil }
            return channel.localAddress?.port
        }
    }

    /// Stops listening, closes every connection and stops the thread. Safe to call twice.
    public func shutdown() {
        let running = state.withLockedValue { state -> (MultiThreadedEventLoopGroup, any Channel)? in
            defer { state = .stopped }
            guard case .running(let group, let channel) = state else { return nil }
            return (group, channel)
        }
        guard let (group, channel) = running else { return }
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    private static func configure(
        _ pipeline: ChannelPipeline.SynchronousOperations, _ configuration: HTTPListenerConfiguration, _ router: HTTPRouter
    ) throws {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = configuration.maxHeaderBytes
        limits.maxHeaderFieldSize = configuration.maxHeaderBytes
        limits.maxHeaderFieldCount = 100
        try pipeline.addHandler(HTTPResponseEncoder())
        try pipeline.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, limitConfiguration: limits)))
        try pipeline.addHandler(HTTPServerPipelineHandler())
        try pipeline.addHandler(BadRequestHandler())
        try pipeline.addHandler(NIOHTTPServerRequestAggregator(maxContentLength: configuration.maxBodyBytes))
        try pipeline.addHandler(DeadlineHandler(timeout: TimeAmount.nanoseconds(Self.nanoseconds(configuration.requestTimeout))))
        try pipeline.addHandler(RouterHandler(router: router))
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }
}

// MARK: - Handlers

/// Answers what the HTTP decoder refuses: `431` for a head over the limits, `400` for anything
/// else malformed; then the connection is closed (the decoder cannot go on after an error).
final class BadRequestHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var responding = false

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        if !responding {
            let status: HTTPResponseStatus = parserError == .headerOverflow ? .requestHeaderFieldsTooLarge : .badRequest
            let body = Array("\(status.code) \(status.reasonPhrase)\n".utf8)
            let head = HTTPResponseHead(
                version: .http1_1, status: status,
                headers: ["Connection": "close", "Content-Type": "text/plain; charset=utf-8", "Content-Length": "\(body.count)"])
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        context.close(promise: nil)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head: responding = true
        case .end: responding = false
        case .body: break
        }
        context.write(data, promise: promise)
    }
}

/// Closes a connection on which no whole request arrives within `timeout` of its opening or of
/// the end of the last response: a client that sends nothing, trickles a request, or keeps an
/// idle connection open does not hold one of the listener's connections for long.
final class DeadlineHandler: ChannelDuplexHandler {
    typealias InboundIn = NIOHTTPServerRequestFull
    typealias InboundOut = NIOHTTPServerRequestFull
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let timeout: TimeAmount
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { arm(context) }
        context.write(data, promise: promise)
    }

    private func arm(_ context: ChannelHandlerContext) {
        deadline?.cancel()
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: timeout) { bound.value.close(promise: nil) }
    }
}

/// Hands each whole request to the router and writes its response (`404`, `405` with `Allow`,
/// `304` for a matching `If-None-Match`, no body for `HEAD`).
final class RouterHandler: ChannelInboundHandler {
    typealias InboundIn = NIOHTTPServerRequestFull
    typealias OutboundOut = HTTPServerResponsePart

    private let router: HTTPRouter

    init(router: HTTPRouter) {
        self.router = router
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let full = unwrapInboundIn(data)
        var request = HTTPRequest(method: full.head.method, uri: full.head.uri, headers: full.head.headers, body: full.body)
        let head = full.head
        switch router.resolve(head.method, path: request.path) {
        case .notFound:
            respond(context, head, .text("404 Not Found: no resource at \(request.path)", status: .notFound))
        case .methodNotAllowed(let allowed):
            var response = HTTPResponse.text("405 Method Not Allowed: \(request.path) answers \(allowed.map(\.rawValue).joined(separator: ", "))", status: .methodNotAllowed)
            response.headers.add(name: "Allow", value: allowed.map(\.rawValue).joined(separator: ", "))
            respond(context, head, response)
        case .handler(let handler, let parameters):
            request.parameters = parameters
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            handler(request, context.eventLoop).hop(to: context.eventLoop).whenComplete { result in
                let (handler, context) = bound.value
                switch result {
                case .success(let response): handler.respond(context, head, response)
                case .failure(let error): handler.respond(context, head, .text("500 Internal Server Error: \(error)", status: .internalServerError))
                }
            }
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, _ response: HTTPResponse) {
        var response = response
        if let etag = response.etag, response.status == .ok, let wanted = request.headers.first(name: "If-None-Match"),
            wanted == "*" || wanted.split(separator: ",").contains(where: { $0.trimmingSpaces == etag })
        {
            response = HTTPResponse(status: .notModified, headers: ["ETag": etag])
        }
        let keepAlive = request.isKeepAlive
        var headers = response.headers
        headers.replaceOrAdd(name: "Content-Length", value: "\(response.body.count)")
        headers.replaceOrAdd(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: response.status, headers: headers))), promise: nil)
        if request.method != .HEAD && !response.body.isEmpty && response.status != .notModified {
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: response.body)))), promise: nil)
        }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            written.whenComplete { _ in bound.value.close(promise: nil) }
        }
    }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var text = self
        while text.first == " " { text.removeFirst() }
        while text.last == " " { text.removeLast() }
        return text
    }
}
