import Atomics
import Dispatch
public import GuidonEngine
import GuidonEntitlements
import GuidonFiles
public import GuidonHTTP
import GuidonProtocol
public import GuidonQuota
import GuidonSystemd
public import Logging
import NIOCore  // System.coreCount: the cores this process may use (cgroup quota, affinity)

#if canImport(Glibc)
import Glibc
#endif

/// How to run the daemon.
public struct DaemonConfiguration: Sendable {
    public var configPath: String
    /// Where to listen when not socket-activated.
    public var socketPath: String
    public var compileOptions: CompileOptions
    public var maxLineBytes: Int
    public var maxConnections: Int
    /// Event-loop threads; `nil` means one per core.
    public var eventLoopThreads: Int?
    /// Whether to reload when the file changes (SIGHUP always reloads).
    public var watchFile: Bool
    /// The admin socket and the audit log.
    public var admin: AdminConfiguration
    /// Counters, `/metrics`, exposure events.
    public var observability: ObservabilityConfiguration
    /// Where to serve OFREP (`--ofrep-listen`); `nil`: nowhere, unless systemd passes a socket
    /// named `ofrep` or `http`.
    public var ofrep: HTTPListenerConfiguration?
    /// The entitlements file served with the flags (`--entitlements`), `nil`: none.
    public var entitlements: EntitlementsFile?

    /// Both files, as the reloader reads them.
    var servedFiles: ServedFiles {
        ServedFiles(flagPath: configPath, options: compileOptions, entitlements: entitlements)
    }
    /// Where usage limits are counted (`--state-dir`, `--quota-store`, `--quota-timeout`);
    /// `nil`: usage limits are off (`consume` and `usage` answer `UNAVAILABLE`).
    public var quota: QuotaConfiguration?

    public init(
        configPath: String, socketPath: String, compileOptions: CompileOptions = CompileOptions(),
        maxLineBytes: Int = 64 * 1024, maxConnections: Int = 1024,
        eventLoopThreads: Int? = nil, watchFile: Bool = true, admin: AdminConfiguration = AdminConfiguration(),
        observability: ObservabilityConfiguration = ObservabilityConfiguration(), ofrep: HTTPListenerConfiguration? = nil,
        quota: QuotaConfiguration? = nil, entitlements: EntitlementsFile? = nil
    ) {
        self.quota = quota
        self.entitlements = entitlements
        self.configPath = configPath
        self.socketPath = socketPath
        self.compileOptions = compileOptions
        self.maxLineBytes = maxLineBytes
        self.maxConnections = maxConnections
        self.eventLoopThreads = eventLoopThreads
        self.watchFile = watchFile
        self.admin = admin
        self.observability = observability
        self.ofrep = ofrep
    }

    public var isLenient: Bool {
        if case .lenient = compileOptions.mode { return true }
        return false
    }
}

/// The admin path: where writes come in, and where they are recorded.
public struct AdminConfiguration: Sendable {
    /// Where the admin socket listens, unless systemd passes one (`FileDescriptorName=admin`);
    /// `nil`: no admin socket, and the query socket's `FORBIDDEN` says so.
    public var socketPath: String?
    /// The mode of the admin socket file when guidond creates it (default 0600: its own user
    /// only; under systemd the socket unit sets it).
    public var socketMode: UInt32
    /// The audit log, one JSON line per write attempt; `nil`: the journal only.
    public var auditLogPath: String?
    /// Admin connections at once (default 16); more get `OVERLOADED`.
    public var maxConnections: Int

    public init(socketPath: String? = nil, socketMode: UInt32 = 0o600, auditLogPath: String? = nil, maxConnections: Int = 16) {
        self.socketPath = socketPath
        self.socketMode = socketMode
        self.auditLogPath = auditLogPath
        self.maxConnections = maxConnections
    }
}

/// Why the daemon could not start.
public struct StartupError: Error, CustomStringConvertible {
    public var description: String
}

/// guidond: loads the flag file, serves it on a Unix socket, reloads it, talks to systemd,
/// and shuts down cleanly on SIGTERM or SIGINT.
public final class Daemon: Sendable {
    public static let version = "0.1.0"
    /// glibc malloc arenas (`MALLOC_ARENA_MAX` in the environment overrides it).
    static let mallocArenas: Int32 = 2

    let configuration: DaemonConfiguration
    let logger: Logger

    public init(configuration: DaemonConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs until SIGTERM or SIGINT. Throws when it cannot start (the flag file is missing or
    /// invalid, the socket cannot be bound); the error says why in full.
    public func run() throws {
        let config = configuration
        // Before any thread starts: few malloc arenas keep peak RSS down (what a reload frees is
        // reused by the next instead of staying in the reload thread's own arena). Measured with
        // 10,000 flags: VmHWM 61 MiB with 1 or 2 arenas, 72 MiB with glibc's default; 2 contend less.
        Memory.limitArenas(to: Self.mallocArenas)
        Memory.disableFastBins()
        // Signals are handled by dispatch sources, not by the default actions. SIGTERM and SIGINT
        // are caught from the start, so that a stop requested during startup is not lost.
        for sig in [SIGHUP, SIGTERM, SIGINT, SIGPIPE] { signal(sig, SIG_IGN) }
        // On Linux a dispatch signal source is registered later, on libdispatch's manager thread;
        // until then an ignored signal is discarded. Blocked signals are kept pending instead (and
        // every thread started from here on inherits the mask), so the sources' signalfd gets them.
        var handled = sigset_t()
        sigemptyset(&handled)
        for sig in [SIGHUP, SIGTERM, SIGINT] { sigaddset(&handled, sig) }
        pthread_sigmask(SIG_BLOCK, &handled, nil)
        let signalQueue = DispatchQueue(label: "guidon.signals")
        let stop = DispatchSemaphore(value: 0)
        let stopSignal = ManagedAtomic<Int32>(0)
        var stopSources: [any DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            let source = DispatchSource.makeSignalSource(signal: sig, queue: signalQueue)
            source.setEventHandler {
                if stopSignal.compareExchange(expected: 0, desired: sig, ordering: .relaxed).exchanged { stop.signal() }
            }
            source.resume()
            stopSources.append(source)
        }
        defer { for source in stopSources { source.cancel() } }
        let startedAt = ContinuousClock.now  // uptime from a clock that does not jump

        var logger = self.logger
        logger[metadataKey: "configPath"] = "\(config.configPath)"
        // What has been started, to be stopped in reverse order should a later step fail.
        let started = StartedParts()
        do throws(StartupError) {
            // The watch is armed before the file is read, and reports from before the first
            // request is answered: no change can fall between the load and the watch unseen.
            let watcher = config.watchFile ? Self.armWatcher(config.configPath, logger: logger) : nil
            if let watcher { started.add { watcher.stop() } }
            let entitlementsWatcher = config.watchFile ? config.entitlements.flatMap { Self.armWatcher($0.path, logger: logger) } : nil
            if let entitlementsWatcher { started.add { entitlementsWatcher.stop() } }

            // Only the store holds the first configuration: a local of this function would keep
            // the first snapshot in memory for as long as the daemon runs, after reloads replaced it.
            let store = try Self.loadFlagFile(config)
            Reloader.logWarnings(store.current.snapshot, logger: logger)
            let observability = try Observability(config.observability, daemonVersion: Self.version, logger: logger)
            started.add { observability.shutdown() }

            let quotas = try Self.startQuotas(config.quota, logger: logger)
            started.add { quotas.shutdown() }

            let connections = Connections(limit: config.maxConnections, logger: logger)
            let reloader = Reloader(files: config.servedFiles, store: store, connections: connections, logger: logger)
            started.add { reloader.shutdown() }
            watcher?.start { reloader.reload(trigger: "inotify") }
            entitlementsWatcher?.start { reloader.reload(trigger: "inotify") }

            // Both sockets first: whether there is an admin socket decides what the query socket
            // says to a write.
            let inherited = SocketActivation.inheritedSockets()
            let listener = try ListeningSocket.open(path: config.socketPath, role: .query, inherited: inherited, logger: logger)!
            let queryPart = started.add { listener.close() }
            let adminListener = try config.admin.socketPath.flatMap { path throws(StartupError) in
                try ListeningSocket.open(path: path, role: .admin, inherited: inherited, mode: mode_t(config.admin.socketMode), logger: logger)
            }
            let adminPart = adminListener.map { socket in started.add { socket.close() } }
            if config.admin.socketPath != nil && adminListener == nil {
                logger.warning("no admin socket: systemd passed none named \"admin\" (is guidon-admin.socket enabled?); writes are refused")
            }
            let writer = DocumentWriter(
                documents: [FlagsDocument(path: config.configPath, options: config.compileOptions, store: store, reloader: reloader)]
                    + (config.entitlements.map { [EntitlementsDocument(file: $0, store: store, reloader: reloader)] } ?? []),
                audit: AuditLog(path: config.admin.auditLogPath, logger: logger), reloader: reloader, logger: logger,
                counts: observability.adminWrites)
            started.add { writer.shutdown() }
            if adminListener != nil {
                DocumentFile.removeStaleTemporaries(of: config.configPath)
                if let entitlements = config.entitlements { DocumentFile.removeStaleTemporaries(of: entitlements.path) }
            }
            let adminPath = adminListener != nil ? config.admin.socketPath : nil
            let service = ServiceContext(
                store: store, connections: connections, maxLineBytes: config.maxLineBytes, adminSocketPath: adminPath,
                refusedWrite: { line, error, socket in writer.auditForbidden(line, error: error, peer: Peer.of(socket, named: false)) },
                observability: observability, quotas: quotas
            ) {
                let served = store.current
                return DaemonStatus(
                    daemonVersion: Daemon.version, configPath: config.configPath, configVersion: served.version,
                    flagCount: served.snapshot.count, loadedAt: served.loadedAt, uptimeSeconds: (ContinuousClock.now - startedAt).components.seconds,
                    lenient: config.isLenient, warnings: served.snapshot.warnings.count, connections: connections.count,
                    lastReload: store.lastReload,
                    entitlements: Daemon.zip2(config.entitlements, served.entitlements, served.entitlementsVersion).map { file, value, version in
                        EntitlementsStatus(
                            path: file.path, version: version, features: value.features.count, plans: value.plans.count,
                            tenants: value.tenantCount, warnings: value.warnings.count)
                    })
            }

            let server = try Server(
                threads: config.eventLoopThreads ?? System.coreCount, socket: listener, service: service, logger: logger)
            // The loops own the listening socket now.
            started.replace(queryPart) {
                server.closeListener()
                listener.removeSocketFile()
                server.stop()
            }
            let admin = try adminListener.map { socket throws(StartupError) in
                try AdminServer(
                    socket: socket, path: adminPath, service: service, writer: writer,
                    maxConnections: config.admin.maxConnections, logger: logger)
            }
            if let admin, let adminPart {
                started.replace(adminPart) {
                    admin.closeListener()
                    admin.stop()
                }
            }
            let http = try HTTPFront.start(
                HTTPPlan(metrics: config.observability.http, ofrep: config.ofrep, inherited: inherited),
                service: service, loops: server.loops, observability: observability, logger: logger)
            if let http { started.add { http.shutdown() } }

            let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: signalQueue)
            hangup.setEventHandler {
                logger.info("SIGHUP: reloading")
                SystemdNotifier.reloading(status: "reloading \(config.configPath)")
                reloader.reloadAsync(trigger: "sighup") { _ in
                    SystemdNotifier.ready(status: Reloader.statusLine(store))
                }
            }
            hangup.resume()

            let watchdog = Watchdog(loops: server.loops + (admin.map { [$0.loop] } ?? []), interval: SystemdNotifier.watchdogInterval)
            watchdog?.start()

            Self.logReady(store.current, logger: logger)
            SystemdNotifier.ready(status: Reloader.statusLine(store))

            stop.wait()

            let signalName = stopSignal.load(ordering: .relaxed) == SIGINT ? "SIGINT" : "SIGTERM"
            logger.notice("\(signalName): shutting down")
            SystemdNotifier.stopping(status: "shutting down: answering requests in flight")
            watchdog?.stop()
            hangup.cancel()
            http?.shutdown()
            server.closeListener()
            admin?.closeListener()
            // Nothing accepts on the path any more: give it up now rather than after the drain, so
            // that a successor started meanwhile binds a fresh file which this instance never touches.
            listener.removeSocketFile()
            // Writes in progress finish (and are answered) before the reload thread stops.
            if let admin, !admin.drain(timeout: .seconds(10)) {
                logger.warning("some admin connections did not finish within 10 s; closing them")
            }
            if !server.drain(connections, timeout: .seconds(10)) {
                logger.warning("some connections did not finish within 10 s; closing them")
            }
            watcher?.stop()
            entitlementsWatcher?.stop()
            reloader.shutdown()
            writer.shutdown()
            admin?.stop()
            server.stop()
            // Every connection is closed: write every count (the embedded store's log and snapshot).
            quotas.shutdown()
            observability.shutdown()
        } catch {
            started.stopAll()
            throw error
        }
        logger.info("stopped")
    }

    /// The usage-limit store, started (the embedded store reads its state back here).
    private static func startQuotas(_ configuration: QuotaConfiguration?, logger: Logger) throws(StartupError) -> QuotaService {
        do throws(QuotaStoreError) {
            let service = try QuotaService(configuration, logger: logger)
            switch configuration?.store {
            case .embedded(let directory)?: logger.info("usage limits: counted here, durable under \(directory)")
            case .redis(let address)?: logger.info("usage limits: counted in Redis at \(address)")
            case nil: logger.info("usage limits: off (no --state-dir or --quota-store)")
            }
            return service
        } catch {
            throw StartupError(description: "usage limits: \(error.message)")
        }
    }

    private static func zip2<A, B, C>(_ a: A?, _ b: B?, _ c: C?) -> (A, B, C)? {
        guard let a, let b, let c else { return nil }
        return (a, b, c)
    }

    /// A watch on a served file (not yet reporting), or `nil`, logged, when inotify refuses one.
    private static func armWatcher(_ path: String, logger: Logger) -> FileWatcher? {
        do throws(FileWatcher.WatchError) {
            return try FileWatcher(path: path)
        } catch {
            logger.warning("not watching the flag file (reload with SIGHUP): \(error)")
            return nil
        }
    }

    /// The store serving the flag file as it is now.
    private static func loadFlagFile(_ config: DaemonConfiguration) throws(StartupError) -> ConfigStore {
        do throws(ConfigLoadError) {
            return ConfigStore(try config.servedFiles.load())
        } catch {
            throw StartupError(description: error.description)
        }
    }

    /// The parts of a starting daemon that need stopping, newest first, should it fail to start.
    private final class StartedParts {
        private var stops: [() -> Void] = []

        /// Adds how to stop a part; the index names it for `replace`.
        @discardableResult
        func add(_ stop: @escaping () -> Void) -> Int {
            stops.append(stop)
            return stops.count - 1
        }

        /// A part changed hands (a socket taken over by its loops): stop it the new way.
        func replace(_ index: Int, with stop: @escaping () -> Void) { stops[index] = stop }

        func stopAll() {
            for stop in stops.reversed() { stop() }
            stops = []
        }
    }

    private static func logReady(_ served: ServedConfig, logger: Logger) {
        logger.notice(
            "guidond \(Daemon.version) ready: \(served.snapshot.count) flags\(served.entitlements.map { ", \($0.features.count) features, \($0.plans.count) plans, \($0.tenantCount) tenants" } ?? "")",
            metadata: ["configVersion": "\(served.version)", "entitlementsVersion": "\(served.entitlementsVersion ?? "-")", "reloadResult": "startup"])
    }

}
