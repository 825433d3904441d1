public import NIOCore
public import NIOHTTP1

/// One HTTP request, whole: its head, its body (at most the listener's `maxBodyBytes`), and
/// the values its route's `{name}` segments matched.
public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    /// The path, without the query.
    public var path: String
    /// The query (after `?`), when there is one.
    public var query: String?
    public var headers: HTTPHeaders
    public var body: ByteBuffer?
    /// `{name}` → the path segment it matched.
    public var parameters: [String: String] = [:]

    public init(method: HTTPMethod, uri: String, headers: HTTPHeaders = HTTPHeaders(), body: ByteBuffer? = nil) {
        self.method = method
        if let mark = uri.firstIndex(of: "?") {
            path = String(uri[..<mark])
            query = String(uri[uri.index(after: mark)...])
        } else {
            path = uri
            query = nil
        }
        self.headers = headers
        self.body = body
    }
}

/// An HTTP response: status, headers and a body the listener sends with a `Content-Length`.
public struct HTTPResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: HTTPResponseStatus = .ok, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A body of `contentType`.
    public init(status: HTTPResponseStatus = .ok, contentType: String, body: [UInt8]) {
        self.init(status: status, headers: ["Content-Type": contentType], body: body)
    }

    /// Plain text (a line feed is added when missing).
    public static func text(_ text: String, status: HTTPResponseStatus = .ok) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "text/plain; charset=utf-8", body: Array((text.hasSuffix("\n") ? text : text + "\n").utf8))
    }

    /// A JSON body (already encoded).
    public static func json(_ body: [UInt8], status: HTTPResponseStatus = .ok) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "application/json", body: body)
    }

    /// The entity tag (`ETag`, quoted as given): a request whose `If-None-Match` names it gets
    /// `304 Not Modified` without the body.
    public var etag: String? {
        get { headers.first(name: "ETag") }
        set {
            headers.remove(name: "ETag")
            if let newValue { headers.add(name: "ETag", value: newValue) }
        }
    }
}

/// Routes requests by method and path to handlers.
///
/// A pattern is a path whose segments are literal or `{name}` (one segment, any text); the
/// first route whose pattern and method match wins. A path that a route matches with another
/// method gets `405 Method Not Allowed` with `Allow`; one that no route matches, `404`. `HEAD`
/// is answered wherever `GET` is, without the body.
///
/// Handlers return a future, so that one can wait for other threads (a health check asks every
/// event loop) without blocking the listener's thread; `on(_:_:sync:)` wraps a plain function.
public struct HTTPRouter: Sendable {
    public typealias Handler = @Sendable (HTTPRequest, any EventLoop) -> EventLoopFuture<HTTPResponse>

    private struct Route: Sendable {
        var method: HTTPMethod
        var segments: [Segment]
        var handler: Handler
    }

    private enum Segment: Sendable, Equatable {
        case literal(String)
        case parameter(String)
    }

    /// What a request resolves to.
    public enum Resolution: Sendable {
        case handler(Handler, parameters: [String: String])
        case notFound
        case methodNotAllowed(allowed: [HTTPMethod])
    }

    private var routes: [Route] = []

    public init() {}

    public mutating func on(_ method: HTTPMethod, _ pattern: String, _ handler: @escaping Handler) {
        let segments = Self.split(pattern).map { part -> Segment in
            part.hasPrefix("{") && part.hasSuffix("}") ? .parameter(String(part.dropFirst().dropLast())) : .literal(part)
        }
        routes.append(Route(method: method, segments: segments, handler: handler))
    }

    public mutating func on(_ method: HTTPMethod, _ pattern: String, sync handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse) {
        on(method, pattern) { request, loop in loop.makeSucceededFuture(handler(request)) }
    }

    public func resolve(_ method: HTTPMethod, path: String) -> Resolution {
        let parts = Self.split(path)
        var allowed: [HTTPMethod] = []
        for route in routes {
            guard let parameters = Self.match(route.segments, parts) else { continue }
            if route.method == method || (method == .HEAD && route.method == .GET) {
                return .handler(route.handler, parameters: parameters)
            }
            if !allowed.contains(route.method) { allowed.append(route.method) }
            if route.method == .GET && !allowed.contains(.HEAD) { allowed.append(.HEAD) }
        }
        return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed: allowed)
    }

    private static func split(_ path: String) -> [String] {
        path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
    }

    private static func match(_ segments: [Segment], _ parts: [String]) -> [String: String]? {
        guard segments.count == parts.count else { return nil }
        var parameters: [String: String] = [:]
        for (segment, part) in zip(segments, parts) {
            switch segment {
            case .literal(let text): if text != part { return nil }
            case .parameter(let name): parameters[name] = part.removingPercentEncoding
            }
        }
        return parameters
    }
}

extension String {
    /// `%XX` escapes decoded (as UTF-8); the text unchanged when an escape is malformed.
    fileprivate var removingPercentEncoding: String {
        guard contains("%") else { return self }
        var bytes: [UInt8] = []
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue) else { return self }
            bytes.append(high << 4 | low)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
