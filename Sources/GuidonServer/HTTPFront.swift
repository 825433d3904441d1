import GuidonHTTP
import GuidonSystemd
import Logging

/// What guidond serves over HTTP, and where: worked out from `--metrics-listen`,
/// `--ofrep-listen` and the sockets systemd passed. Pure (tested on its own); `HTTPFront` runs it.
///
/// - A socket systemd passes named `metrics` serves `/metrics` and `/healthz`; one named
///   `ofrep`, OFREP; one named `http`, both. The socket unit is the opt-in: no flag is needed
///   (under the shipped sandbox, `PrivateNetwork=yes` and `RestrictAddressFamilies=AF_UNIX`,
///   guidond cannot bind a TCP socket itself; systemd binds it outside and passes it in).
/// - A flag whose service such a socket already serves is not bound (noted in the log);
///   otherwise guidond binds the flag's address itself, as it does without systemd.
/// - Both flags naming the same address share one site (one socket, both services); different
///   addresses are separate sites. Every site is served by one listener on one thread.
struct HTTPPlan: Equatable {
    struct Services: OptionSet, Hashable, CustomStringConvertible {
        let rawValue: Int
        static let metrics = Services(rawValue: 1)
        static let ofrep = Services(rawValue: 2)

        var description: String {
            switch self {
            case .metrics: "/metrics and /healthz"
            case .ofrep: "OFREP"
            default: "/metrics, /healthz and OFREP"
            }
        }
    }

    struct Site: Equatable {
        var configuration: HTTPListenerConfiguration
        var services: Services
    }

    /// The `FileDescriptorName=`s guidond takes for HTTP (the query socket's fallback skips them).
    static let socketNames: Set<String> = ["http", "metrics", "ofrep"]

    static func services(forSocketNamed name: String) -> Services? {
        switch name {
        case "http": [.metrics, .ofrep]
        case "metrics": .metrics
        case "ofrep": .ofrep
        default: nil
        }
    }

    var sites: [Site] = []
    /// What the log should say about choices made (a flag not bound, a passed socket not used).
    var notes: [String] = []

    init(metrics: HTTPListenerConfiguration?, ofrep: HTTPListenerConfiguration?, inherited: [InheritedSocket]) {
        var passed: Services = []
        for socket in inherited {
            guard let services = Self.services(forSocketNamed: socket.name) else { continue }
            guard socket.isStreamListener else {
                notes.append("systemd passed a socket named \"\(socket.name)\" that is not a listening stream socket; not serving HTTP on it")
                continue
            }
            // The limits of the flag for that service, when there is one; the defaults otherwise.
            var configuration = (services.contains(.metrics) ? metrics : nil) ?? (services.contains(.ofrep) ? ofrep : nil)
                ?? HTTPListenerConfiguration(port: 0)
            configuration.endpoint = .socket(descriptor: socket.fileDescriptor, name: socket.name)
            sites.append(Site(configuration: configuration, services: services))
            passed.formUnion(services)
        }
        let metrics = metrics.flatMap { configuration -> HTTPListenerConfiguration? in
            guard passed.contains(.metrics) else { return configuration }
            notes.append("--metrics-listen \(configuration.endpoint) is not bound: /metrics is served on the socket systemd passed")
            return nil
        }
        let ofrep = ofrep.flatMap { configuration -> HTTPListenerConfiguration? in
            guard passed.contains(.ofrep) else { return configuration }
            notes.append("--ofrep-listen \(configuration.endpoint) is not bound: OFREP is served on the socket systemd passed")
            return nil
        }
        switch (metrics, ofrep) {
        case let (metrics?, ofrep?) where metrics.endpoint == ofrep.endpoint:
            sites.append(Site(configuration: metrics, services: [.metrics, .ofrep]))
        default:
            if let metrics { sites.append(Site(configuration: metrics, services: .metrics)) }
            if let ofrep { sites.append(Site(configuration: ofrep, services: .ofrep)) }
        }
    }
}

/// The daemon's HTTP listener: `/metrics` and `/healthz` (`Observability.routes`) and OFREP
/// (`OFREPEndpoint`) on the sites of an `HTTPPlan`, on one thread of its own. Thin: it builds each
/// site's router, makes way for a Unix-socket path and removes the file afterwards, and hands
/// OFREP each new configuration.
final class HTTPFront: Sendable {
    private let listener: HTTPListener
    /// Unix-socket files guidond created, to remove at shutdown (if still the same files).
    private let createdFiles: [(path: UnixSocketPath, identity: UnixSocketPath.Identity?)]

    private init(listener: HTTPListener, createdFiles: [(path: UnixSocketPath, identity: UnixSocketPath.Identity?)]) {
        self.listener = listener
        self.createdFiles = createdFiles
    }

    /// Starts serving `plan` (`nil` when it has no site). Throws, saying which flag or socket,
    /// when a site cannot be bound: then nothing is served.
    static func start(
        _ plan: HTTPPlan, service: ServiceContext, loops: [any TaskRunner], observability: Observability, logger: Logger
    ) throws(StartupError) -> HTTPFront? {
        for note in plan.notes { logger.notice("\(note)") }
        guard !plan.sites.isEmpty else { return nil }
        let store = service.store
        let ofrep = plan.sites.contains { $0.services.contains(.ofrep) }
            ? OFREPEndpoint(store: store, counters: observability.makeCounters(serving: store.current.snapshot)) : nil
        var sites: [HTTPListener.Site] = []
        for site in plan.sites {
            var router = HTTPRouter()
            if site.services.contains(.metrics) { router.merge(observability.routes(service: service, loops: loops)) }
            if site.services.contains(.ofrep), let ofrep { router.merge(ofrep.routes) }
            sites.append(HTTPListener.Site(configuration: site.configuration, router: router))
        }
        // A Unix-socket path: a stale file (nothing answers on it) makes way; a live one refuses.
        var paths: [UnixSocketPath] = []
        for site in plan.sites {
            guard case .unix(let path) = site.configuration.endpoint else { continue }
            do throws(UnixSocketPath.Problem) {
                try UnixSocketPath(path: path).prepare()
            } catch {
                throw StartupError(description: "\(flag(site.services)): \(error.description)")
            }
            paths.append(UnixSocketPath(path: path))
        }
        let listener = HTTPListener(sites: sites)
        do throws(HTTPListenerError) {
            try listener.start()
        } catch {
            let hint = plan.sites.contains { if case .tcp = $0.configuration.endpoint { true } else { false } }
                ? " (under systemd's sandbox guidond cannot bind TCP itself: enable guidon-metrics.socket or guidon-ofrep.socket instead, see systemd/README.md)"
                : ""
            throw StartupError(description: "HTTP: \(error.message)\(hint)")
        }
        let front = HTTPFront(listener: listener, createdFiles: paths.map { ($0, $0.identity()) })
        if let ofrep {
            store.onPublish { listener.execute { ofrep.refresh() } }
        }
        for (site, port) in zip(plan.sites, listener.ports) {
            logger.info("serving \(site.services) on \(Self.describe(site.configuration.endpoint, port: port))")
        }
        return front
    }

    /// Stops listening and closes every connection; removes the Unix-socket files it created.
    /// Safe to call twice.
    func shutdown() {
        listener.shutdown()
        for (path, identity) in createdFiles { path.remove(ifStill: identity) }
    }

    private static func flag(_ services: HTTPPlan.Services) -> String {
        switch services {
        case .metrics: "--metrics-listen"
        case .ofrep: "--ofrep-listen"
        default: "--metrics-listen and --ofrep-listen"
        }
    }

    /// Where a site listens, as a URL where there is one (the port picked, for port 0).
    static func describe(_ endpoint: HTTPListenerConfiguration.Endpoint, port: Int?) -> String {
        switch endpoint {
        case .tcp(let host, let configured):
            let host = host.contains(":") ? "[\(host)]" : host
            return "http://\(host):\(port ?? configured)"
        case .unix(let path):
            return "the Unix socket \(path)"
        case .socket(_, let name):
            return "the socket systemd passed as \"\(name)\"" + (port.map { " (port \($0))" } ?? "")
        }
    }
}
