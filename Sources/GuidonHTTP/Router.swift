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
        if let mark = uri.utf8.firstIndex(of: UInt8(ascii: "?")) {
            path = String(uri[..<mark])
            query = String(uri[uri.utf8.index(after: mark)...])
        } else {
            path = uri
            query = nil
        }
        self.headers = headers
        self.body = body
    }

    /// Whether the request's `If-None-Match` names `etag` (or is `*`): its cached copy is current.
    public func ifNoneMatch(matches etag: String) -> Bool {
        Self.ifNoneMatch(headers, matches: etag)
    }

    /// Whether `If-None-Match` in `headers` names `etag` (or is `*`), compared weakly as RFC 9110
    /// asks for it (`W/"x"` matches `"x"`).
    public static func ifNoneMatch(_ headers: HTTPHeaders, matches etag: String) -> Bool {
        let wanted = headers[canonicalForm: "If-None-Match"]
        guard !wanted.isEmpty else { return false }
        let tag = weak(Substring(etag))
        return wanted.contains { $0 == "*" || weak($0) == tag }
    }

    private static func weak(_ tag: Substring) -> Substring {
        var tag = tag
        while tag.first == " " { tag.removeFirst() }
        while tag.last == " " { tag.removeLast() }
        return tag.hasPrefix("W/") ? tag.dropFirst(2) : tag
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
/// A pattern is a path whose segments are literal or `{name}` (one segment, any text); its last
/// segment may be `{name...}`: the rest of the path, one segment or more, slashes and all. The
/// first route whose pattern and method match wins. A path that a route matches with another
/// method gets `405 Method Not Allowed` with `Allow`; one that no route matches, `404`. `HEAD`
/// is answered wherever `GET` is, without the body. Parameters are percent-decoded (as UTF-8):
/// `%2F` in a `{name}` segment is a slash in its value.
///
/// Handlers return a future, so that one can wait for other threads (a health check asks every
/// event loop) without blocking the listener's thread; `on(_:_:sync:)` wraps a plain function.
///
/// The listener's own refusals (`404`, `405`, `413`, `500`) are plain text, except under a path
/// prefix given to `refusals(under:_:)`, whose protocol words them its own way.
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
        /// The rest of the path (last segment only).
        case rest(String)
    }

    /// What a request resolves to.
    public enum Resolution: Sendable {
        case handler(Handler, parameters: [String: String])
        case notFound
        case methodNotAllowed(allowed: [HTTPMethod])
    }

    /// Why the listener answers a request itself rather than a handler.
    public enum Refusal: Sendable {
        /// No route matches the path.
        case notFound
        /// Routes match the path with other methods.
        case methodNotAllowed(allowed: [HTTPMethod])
        /// The body is longer than the listener's limit (the connection is then closed).
        case payloadTooLarge(limit: Int)
        /// The handler's future failed.
        case failed(any Error)
    }

    public typealias RefusalWriter = @Sendable (Refusal, _ path: String) -> HTTPResponse

    private var routes: [Route] = []
    private var refusalWriters: [(prefix: String, write: RefusalWriter)] = []

    public init() {}

    public mutating func on(_ method: HTTPMethod, _ pattern: String, _ handler: @escaping Handler) {
        let parts = Self.split(pattern)
        let segments = parts.enumerated().map { index, part -> Segment in
            guard part.hasPrefix("{") && part.hasSuffix("}") else { return .literal(String(part)) }
            let name = part.dropFirst().dropLast()
            if name.hasSuffix("...") {
                precondition(index == parts.count - 1, "{\(name)} must be the last segment of \(pattern)")
                return .rest(String(name.dropLast(3)))
            }
            return .parameter(String(name))
        }
        routes.append(Route(method: method, segments: segments, handler: handler))
    }

    public mutating func on(_ method: HTTPMethod, _ pattern: String, sync handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse) {
        on(method, pattern) { request, loop in loop.makeSucceededFuture(handler(request)) }
    }

    /// Words the listener's refusals for paths starting with `prefix` (the longest prefix given wins).
    public mutating func refusals(under prefix: String, _ write: @escaping RefusalWriter) {
        refusalWriters.append((prefix, write))
    }

    /// Adds `other`'s routes after these, and its refusal writers: one router for a site that
    /// serves both.
    public mutating func merge(_ other: HTTPRouter) {
        routes += other.routes
        refusalWriters += other.refusalWriters
    }

    public func resolve(_ method: HTTPMethod, path: String) -> Resolution {
        let parts = Self.segments(path)
        var allowed: [HTTPMethod] = []
        for route in routes {
            guard let parameters = Self.match(route.segments, parts, in: path) else { continue }
            if route.method == method || (method == .HEAD && route.method == .GET) {
                return .handler(route.handler, parameters: parameters)
            }
            if !allowed.contains(route.method) { allowed.append(route.method) }
            if route.method == .GET && !allowed.contains(.HEAD) { allowed.append(.HEAD) }
        }
        return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed: allowed)
    }

    /// The response to `refusal` of a request for `path`: the writer for the longest prefix of
    /// `path` given to `refusals(under:_:)`, else plain text. A `405` always carries `Allow`.
    public func refusal(_ refusal: Refusal, path: String) -> HTTPResponse {
        let writer = refusalWriters.filter { path.hasPrefix($0.prefix) }.max { $0.prefix.count < $1.prefix.count }
        var response = writer?.write(refusal, path) ?? Self.plainText(refusal, path: path)
        if case .methodNotAllowed(let allowed) = refusal {
            response.headers.replaceOrAdd(name: "Allow", value: allowed.map(\.rawValue).joined(separator: ", "))
        }
        return response
    }

    private static func plainText(_ refusal: Refusal, path: String) -> HTTPResponse {
        switch refusal {
        case .notFound:
            .text("404 Not Found: no resource at \(path)", status: .notFound)
        case .methodNotAllowed(let allowed):
            .text("405 Method Not Allowed: \(path) answers \(allowed.map(\.rawValue).joined(separator: ", "))", status: .methodNotAllowed)
        case .payloadTooLarge(let limit):
            .text("413 Payload Too Large: a request body may have at most \(limit) bytes", status: .payloadTooLarge)
        case .failed(let error):
            .text("500 Internal Server Error: \(error)", status: .internalServerError)
        }
    }

    private static func split(_ path: String) -> [Substring] {
        path.split(separator: "/", omittingEmptySubsequences: true)
    }

    /// The path's segments as bytes (every request is routed: Character-wise splitting and
    /// comparing cost 27,000 instructions a request; callgrind).
    private static func segments(_ path: String) -> [Substring.UTF8View] {
        path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true)
    }

    private static func match(_ segments: [Segment], _ parts: [Substring.UTF8View], in path: String) -> [String: String]? {
        var parameters: [String: String] = [:]
        for (i, segment) in segments.enumerated() {
            guard i < parts.count else { return nil }
            switch segment {
            case .literal(let text): if !parts[i].elementsEqual(text.utf8) { return nil }
            case .parameter(let name): parameters[name] = String(Substring(parts[i])).removingPercentEncoding
            case .rest(let name):
                // Everything from this segment on, as sent (a slash inside, or at the end, stays).
                parameters[name] = String(path[parts[i].startIndex...]).removingPercentEncoding
                return parameters
            }
        }
        return segments.count == parts.count ? parameters : nil
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
