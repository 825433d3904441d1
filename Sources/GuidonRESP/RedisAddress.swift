/// Where a Redis server listens: `redis://HOST[:PORT]` (TCP, port 6379 by default; HOST a name,
/// an IPv4 address or a bracketed IPv6 address) or `redis+unix:///PATH` (a Unix socket).
///
/// No user, password or database number: Guidon's Redis is a private one (see docs/QUOTAS.md).
public enum RedisAddress: Sendable, Hashable, CustomStringConvertible {
    case tcp(host: String, port: UInt16)
    case unix(path: String)

    public init(parsing text: String) throws(RESPError) {
        func invalid(_ why: String) -> RESPError {
            RESPError(.invalidAddress, "invalid Redis address '\(text)': \(why) (expected redis://HOST:PORT or redis+unix:///PATH)")
        }
        if text.hasPrefix("redis+unix://") {
            let path = String(text.dropFirst("redis+unix://".count))
            guard path.hasPrefix("/") else { throw invalid("the socket path must be absolute") }
            guard path.utf8.count < 108 else { throw invalid("the socket path is longer than 107 bytes") }
            self = .unix(path: path)
            return
        }
        guard text.hasPrefix("redis://") else { throw invalid("unknown scheme") }
        var rest = Substring(text.dropFirst("redis://".count))
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.contains("@") else { throw invalid("credentials are not supported") }
        guard !rest.contains("/") else { throw invalid("a database number or path is not supported") }
        let host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw invalid("unterminated IPv6 address") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw invalid("unexpected text after the IPv6 address") }
                portText = after.dropFirst()
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        guard !host.isEmpty else { throw invalid("no host") }
        var port: UInt16 = 6379
        if let portText {
            guard let p = UInt16(portText), p > 0 else { throw invalid("the port must be 1…65535") }
            port = p
        }
        self = .tcp(host: String(host), port: port)
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "redis://[\(host)]:\(port)" : "redis://\(host):\(port)"
        case .unix(let path): "redis+unix://\(path)"
        }
    }
}
