import Atomics
import GuidonEngine
public import GuidonHTTP
public import GuidonMetrics
public import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

#if canImport(Glibc)
import Glibc
#endif

/// What the daemon counts and where it shows it.
public struct ObservabilityConfiguration: Sendable, Hashable {
    /// Whether the event loops count requests, evaluations, errors and latencies (on by
    /// default; `guidond --no-metrics` turns it off, to measure what counting costs).
    public var counting: Bool
    /// Where to serve `/metrics` and `/healthz` (`--metrics-listen`); `nil`: nowhere, unless
    /// systemd passes a socket named `metrics` or `http`.
    public var http: HTTPListenerConfiguration?
    /// Exposure events (`--events PATH`); `nil`: none.
    public var events: ExposureEventsConfiguration?

    public init(counting: Bool = true, http: HTTPListenerConfiguration? = nil, events: ExposureEventsConfiguration? = nil) {
        self.counting = counting
        self.http = http
        self.events = events
    }
}

/// The daemon's counters, exposure-event writer and the HTTP routes `/metrics` and `/healthz`
/// (which `HTTPFront` serves): made before the event loops (each loop takes its counters from
/// here), shut down after them.
public final class Observability: Sendable {
    public let registry: MetricsRegistry
    public let events: ExposureWriter?
    /// Admin write attempts, counted by the admin writer.
    public let adminWrites = AdminWriteCounts()
    let configuration: ObservabilityConfiguration
    let daemonVersion: String
    let startedAt: Int64
    private let started = ContinuousClock.now

    /// Opens the events file (when asked for) and starts its writer.
    public init(_ configuration: ObservabilityConfiguration, daemonVersion: String, logger: Logger) throws(StartupError) {
        self.configuration = configuration
        self.daemonVersion = daemonVersion
        startedAt = Int64(time(nil))
        registry = MetricsRegistry(counting: configuration.counting)
        if let events = configuration.events {
            let writer = try ExposureWriter(events, logger: logger)
            writer.start()
            self.events = writer
        } else {
            events = nil
        }
    }

    /// Whether the loops need counters: they count, or write exposure events. (With neither,
    /// `--no-metrics`, the loops do exactly what they did before counting existed.)
    var loopsNeedCounters: Bool { configuration.counting || events != nil }

    /// Counters, and an exposure-event queue when events are written, for one more event loop;
    /// `nil` when the loops need none.
    func makeCounters(serving snapshot: Snapshot) -> LoopCounters? {
        guard loopsNeedCounters else { return nil }
        return registry.addLoop(serving: snapshot, exposures: events?.makeQueue())
    }

    /// Everything `stats`, `/metrics` and `guidon metrics` show, now.
    public func report(store: ConfigStore, connections: Connections) -> MetricsReport {
        let served = store.current
        let counters = registry.collect()
        var exposures: ExposureCounts?
        if let events {
            var counts = counters.exposures
            counts.add(events.counts)
            exposures = counts
        }
        let flags = served.snapshot.flags
        let enabled = flags.reduce(0) { $0 + ($1.state == .enabled ? 1 : 0) }
        var report = MetricsReport(
            counters: counters, counting: registry.counting, daemonVersion: daemonVersion, startedAt: startedAt,
            uptimeSeconds: (ContinuousClock.now - started).components.seconds, connections: connections.count,
            configVersion: served.version, configLoadedAt: served.loadedAt, servedFlags: Set(flags.map(\.key)),
            enabledFlags: enabled, disabledFlags: flags.count - enabled, reloads: store.reloadCounts, exposures: exposures)
        report.adminWrites = adminWrites.sample
        return report
    }

    /// The listener's routes. `/healthz` answers 200 when every event loop runs a task within a
    /// second (the loops are alive and not wedged: what the systemd watchdog checks too), and
    /// 503 otherwise.
    func routes(service: ServiceContext, loops: [any TaskRunner]) -> HTTPRouter {
        var router = HTTPRouter()
        router.on(.GET, "/metrics", sync: { [self] _ in
            HTTPResponse(
                contentType: MetricsReport.prometheusContentType,
                body: report(store: service.store, connections: service.connections).prometheusText())
        })
        router.on(.GET, "/healthz") { _, eventLoop in
            let promise = eventLoop.makePromise(of: HTTPResponse.self)
            let waiting = ManagedAtomic(loops.count)
            let answered = ManagedAtomic(false)
            let served = service.store.current
            let ok = HTTPResponse.text("ok: serving \(served.snapshot.count) flags (config \(served.version)); \(loops.count) event loop(s) answering")
            for loop in loops {
                loop.execute {
                    if waiting.wrappingDecrementThenLoad(ordering: .acquiringAndReleasing) == 0,
                        answered.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
                    {
                        promise.succeed(ok)
                    }
                }
            }
            eventLoop.scheduleTask(in: .seconds(1)) {
                if answered.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged {
                    let stuck = waiting.load(ordering: .relaxed)
                    promise.succeed(.text("unavailable: \(stuck) of \(loops.count) event loop(s) did not answer within 1 s", status: .serviceUnavailable))
                }
            }
            return promise.futureResult
        }
        return router
    }

    /// Writes the events still queued and stops the writer (call after the loops and the HTTP
    /// listener have stopped). Safe to call twice.
    public func shutdown() {
        events?.shutdown()
    }
}
