import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Where and how the HTTP listener serves one site (an address and its limits).
public struct HTTPListenerConfiguration: Sendable, Hashable {
    /// Where a site listens.
    public enum Endpoint: Sendable, Hashable, CustomStringConvertible {
        /// A TCP address and port (0: a free port, see `HTTPListener.ports`).
        case tcp(host: String, port: Int)
        /// A Unix stream socket at a path, which must not exist (the caller deals with a stale
        /// file, and removes the socket file after `shutdown()`).
        case unix(path: String)
        /// A listening stream socket bound elsewhere (one systemd passed by socket activation):
        /// served as it is, and closed at `shutdown()`. `name` says where it came from, for logs.
        case socket(descriptor: Int32, name: String)

        public var description: String {
            switch self {
            case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case .unix(let path): path
            case .socket(let descriptor, let name): "the socket systemd passed as \"\(name)\" (fd \(descriptor))"
            }
        }
    }

    public var endpoint: Endpoint
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
        endpoint: Endpoint, maxBodyBytes: Int = 64 * 1024, maxHeaderBytes: Int = 16 * 1024,
        requestTimeout: Duration = .seconds(10), maxConnections: Int = 64
    ) {
        self.endpoint = endpoint
        self.maxBodyBytes = maxBodyBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.requestTimeout = requestTimeout
        self.maxConnections = maxConnections
    }

    /// A TCP site (loopback unless `host` is given).
    public init(
        host: String = "127.0.0.1", port: Int, maxBodyBytes: Int = 64 * 1024, maxHeaderBytes: Int = 16 * 1024,
        requestTimeout: Duration = .seconds(10), maxConnections: Int = 64
    ) {
        self.init(
            endpoint: .tcp(host: host, port: port), maxBodyBytes: maxBodyBytes, maxHeaderBytes: maxHeaderBytes,
            requestTimeout: requestTimeout, maxConnections: maxConnections)
    }

    /// `HOST:PORT`, `[V6]:PORT`, `PORT` alone (on loopback), or a Unix-socket path (starting
    /// with `/` or `.`).
    public init(listen text: String) throws(HTTPListenerError) {
        if text.hasPrefix("/") || text.hasPrefix(".") {
            guard text.utf8.count < 108 else {
                throw HTTPListenerError(.invalidAddress, "'\(text)': a Unix-socket path must be shorter than 108 bytes")
            }
            self.init(endpoint: .unix(path: text))
            return
        }
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
            throw HTTPListenerError(.invalidAddress, "'\(text)': the port must be a number from 0 to 65535 (or give a Unix-socket path)")
        }
        guard !host.isEmpty else { throw HTTPListenerError(.invalidAddress, "'\(text)': no address before the port") }
        self.init(host: host, port: port)
    }

    /// The TCP address, for a TCP site.
    public var host: String? {
        if case .tcp(let host, _) = endpoint { return host }
        return nil
    }

    /// The configured TCP port, for a TCP site.
    public var port: Int? {
        if case .tcp(_, let port) = endpoint { return port }
        return nil
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
/// the Unix-socket loops never run its code. It serves one or more sites (an endpoint, its
/// limits and its router), all on that one thread, so that a handler's state is confined to it
/// whichever site a request came in on. Requests are read whole (head and body, within the
/// site's limits) and handed to the site's `HTTPRouter`; malformed requests get `400`,
/// oversized heads `431`, oversized bodies `413`, and the connection is closed.
public final class HTTPListener: Sendable {
    /// One address and what answers there.
    public struct Site: Sendable {
        public var configuration: HTTPListenerConfiguration
        public var router: HTTPRouter

        public init(configuration: HTTPListenerConfiguration, router: HTTPRouter) {
            self.configuration = configuration
            self.router = router
        }
    }

    private enum State {
        case idle
        case running(group: MultiThreadedEventLoopGroup, channels: [any Channel])
        case stopped
    }

    public let sites: [Site]
    private let state = NIOLockedValueBox(State.idle)

    public init(sites: [Site]) {
        precondition(!sites.isEmpty, "an HTTP listener serves at least one site")
        self.sites = sites
    }

    public convenience init(configuration: HTTPListenerConfiguration, router: HTTPRouter) {
        self.init(sites: [Site(configuration: configuration, router: router)])
    }

    /// Binds (or adopts) every site's socket and starts serving; returns once they all listen.
    /// When one cannot be bound, none is served (and an adopted socket is closed).
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
        var channels: [any Channel] = []
        for site in sites {
            do {
                channels.append(try Self.bootstrap(site, group: group).wait())
            } catch {
                for channel in channels { try? channel.close().wait() }
                if case .socket(let descriptor, _) = site.configuration.endpoint { close(descriptor) }
                try? group.syncShutdownGracefully()
                throw HTTPListenerError(.cannotBind, "cannot listen on \(site.configuration.endpoint): \(error)")
            }
        }
        state.withLockedValue { $0 = .running(group: group, channels: channels) }
    }

    private static func bootstrap(_ site: Site, group: MultiThreadedEventLoopGroup) -> EventLoopFuture<any Channel> {
        let configuration = site.configuration
        let router = site.router
        let open = NIOLockedValueBox(0)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
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
        switch configuration.endpoint {
        case .tcp(let host, let port): return bootstrap.bind(host: host, port: port)
        case .unix(let path): return bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: false)
        case .socket(let descriptor, _): return bootstrap.withBoundSocket(descriptor)
        }
    }

    /// The TCP port the first site listens on (the one picked, for port 0), once started.
    public var port: Int? { ports.first ?? nil }

    /// Each site's TCP port (`nil` for a Unix socket), in the order of `sites`, once started.
    public var ports: [Int?] {
        state.withLockedValue { state in
            guard case .running(_, let channels) = state else { return [] }
            return channels.map { $0.localAddress?.port }
        }
    }

    /// Runs `task` on the listener's thread (where every handler runs), if it is running.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        let loop = state.withLockedValue { state -> (any EventLoop)? in
            guard case .running(let group, _) = state else { return nil }
            return group.next()
        }
        loop?.execute(task)
    }

    /// Stops listening, closes every connection and stops the thread. Safe to call twice.
    public func shutdown() {
        let running = state.withLockedValue { state -> (MultiThreadedEventLoopGroup, [any Channel])? in
            defer { state = .stopped }
            guard case .running(let group, let channels) = state else { return nil }
            return (group, channels)
        }
        guard let (group, channels) = running else { return }
        for channel in channels { try? channel.close().wait() }
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
        try pipeline.addHandler(OversizedBodyHandler(router: router, limit: configuration.maxBodyBytes))
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

/// Gives the `413` that `NIOHTTPServerRequestAggregator` sends for a body over the limit (an
/// empty one) the body its router words for the request's path (`HTTPRouter.Refusal`): for
/// OFREP, a JSON error saying what the limit is. It sits just before the aggregator, so it sees
/// each request's head on the way in and the aggregator's response on the way out.
final class OversizedBodyHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let router: HTTPRouter
    private let limit: Int
    /// The target of the request being read (its path is worked out only for a refusal).
    private var uri = "/"
    private var rewriting = false

    init(router: HTTPRouter, limit: Int) {
        self.router = router
        self.limit = limit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) { uri = head.uri }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.status == .payloadTooLarge && head.headers.first(name: "content-length") == "0":
            let response = router.refusal(.payloadTooLarge(limit: limit), path: HTTPRequest(method: .POST, uri: uri).path)
            for (name, value) in response.headers where name.lowercased() != "content-length" {
                head.headers.replaceOrAdd(name: name, value: value)
            }
            head.headers.replaceOrAdd(name: "Content-Length", value: "\(response.body.count)")
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: response.body)))), promise: promise)
        default:
            context.write(data, promise: promise)
        }
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
            respond(context, head, router.refusal(.notFound, path: request.path))
        case .methodNotAllowed(let allowed):
            respond(context, head, router.refusal(.methodNotAllowed(allowed: allowed), path: request.path))
        case .handler(let handler, let parameters):
            request.parameters = parameters
            let path = request.path
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            handler(request, context.eventLoop).hop(to: context.eventLoop).whenComplete { result in
                let (handler, context) = bound.value
                switch result {
                case .success(let response): handler.respond(context, head, response)
                case .failure(let error): handler.respond(context, head, handler.router.refusal(.failed(error), path: path))
                }
            }
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, _ response: HTTPResponse) {
        var response = response
        if let etag = response.etag, response.status == .ok, HTTPRequest.ifNoneMatch(request.headers, matches: etag) {
            response = HTTPResponse(status: .notModified, headers: ["ETag": etag])
        }
        let keepAlive = request.isKeepAlive
        var headers = response.headers
        if response.status == .notModified {
            headers.remove(name: "Content-Length")  // a 304 has no body, and no length of its own
        } else {
            headers.replaceOrAdd(name: "Content-Length", value: "\(response.body.count)")
        }
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
