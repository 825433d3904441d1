#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// How a `GuidonClient` reaches `guidond` and how long it waits.
///
/// The field names are those of the Python package's `guidon.Client` constructor where the two
/// overlap (`socket`, `timeout`, `pool_size` there), so that one service's configuration reads the
/// same in both languages.
public struct GuidonClientConfiguration: Sendable, Hashable {
    /// The daemon's socket. Default: `$GUIDON_SOCKET`, else `/run/guidon/guidon.sock`.
    public var socket: String

    /// How long one call may take, from the call to its answer, connecting included (default
    /// 100 ms; every method also takes a per-call `timeout`). A round trip on an idle machine takes
    /// about 20 µs, so the default only expires when the daemon is stuck or the machine is
    /// overloaded — and then the caller's default is better than a slow page.
    public var timeout: Duration

    /// The most connections the client opens to the daemon (default 2). Each one pipelines: any
    /// number of concurrent calls share it, their replies come back in request order. Calls use
    /// the first connection until it has 16 requests in flight; only then does the next one
    /// open, spreading a burst over the daemon's event loops and the client's.
    public var poolSize: Int

    /// Waits between connection attempts after one failed (default 10 ms, doubling up to 1 s).
    /// While it lasts, calls answer at once with `connectionFailed` instead of each trying (and
    /// paying for) a connection to a daemon that is not there.
    public var reconnectBackoff: Backoff

    /// The longest reply line accepted (default 64 MiB). An `evalAll` or `list` of 10,000 flags
    /// is a few MiB; a longer line means a broken peer, and closes the connection.
    public var maxReplyBytes: Int

    /// How long the `watch` stream waits for its subscription (the `watch` acknowledgement and
    /// the `list` that follows it) on each connection (default 5 s: a `list` of a large file can
    /// take longer than an evaluation's timeout, and nobody waits on it).
    public var watchSetupTimeout: Duration

    public struct Backoff: Sendable, Hashable {
        /// The wait after the first failed attempt.
        public var initial: Duration
        /// The longest wait: a daemon that comes back is found again within this time.
        public var maximum: Duration

        public init(initial: Duration = .milliseconds(10), maximum: Duration = .seconds(1)) {
            self.initial = initial
            self.maximum = maximum
        }

        /// The wait after `failures` consecutive failed attempts (1 or more).
        func delay(afterFailures failures: Int) -> Duration {
            var delay = initial
            var n = 1
            while n < failures && delay < maximum {
                delay *= 2
                n += 1
            }
            return min(delay, maximum)
        }
    }

    /// The socket path used when none is given: `$GUIDON_SOCKET`, else `/run/guidon/guidon.sock`.
    public static var defaultSocket: String {
        if let value = getenv("GUIDON_SOCKET"), value.pointee != 0 { return String(cString: value) }
        return "/run/guidon/guidon.sock"
    }

    public init(
        socket: String = GuidonClientConfiguration.defaultSocket,
        timeout: Duration = .milliseconds(100),
        poolSize: Int = 2,
        reconnectBackoff: Backoff = Backoff(),
        maxReplyBytes: Int = 64 << 20,
        watchSetupTimeout: Duration = .seconds(5)
    ) {
        self.socket = socket
        self.timeout = timeout
        self.poolSize = poolSize
        self.reconnectBackoff = reconnectBackoff
        self.maxReplyBytes = maxReplyBytes
        self.watchSetupTimeout = watchSetupTimeout
    }
}
