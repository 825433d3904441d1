import ArgumentParser
import GuidonEngine
import GuidonEntitlements
import GuidonFiles
import GuidonHTTP
import GuidonQuota
import GuidonServer
import GuidonSystemd
import Logging

#if canImport(Glibc)
import Glibc
#endif

struct Guidond: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guidond",
        abstract: "Serves feature flags from a flagd flag file over a Unix domain socket.",
        discussion: """
            Loads and validates the flag file (exiting non-zero with every problem if it is \
            invalid), then answers newline-delimited JSON requests on the socket. Reloads when the \
            file changes and on SIGHUP; a bad edit keeps the last good flags serving. Under systemd \
            it uses a socket passed by socket activation, reports readiness and status, and pets \
            the watchdog. SIGTERM or SIGINT stop it cleanly.
            """,
        version: Daemon.version
    )

    @Option(name: .long, help: "The flag file (flagd flag-definition JSON).")
    var config: String

    @Option(name: .long, help: "An entitlements file (features, plans, tenants) to serve with the flags: its features are answered by eval and evalAll for the context's tenant. Watched and reloaded with the flag file, as one version.")
    var entitlements: String?

    @Option(name: .customLong("tenant-attribute"), help: "The context attribute that names the tenant (a string, or an integer as its digits).")
    var tenantAttribute: String = "tenantId"

    @Option(name: .long, help: "The Unix socket to listen on, unless systemd passes one.")
    var socket: String = "/run/guidon/guidon.sock"

    @Flag(name: .long, help: "Load what flagd loads (targeting that does not compile, a flag with mixed-type variants or an unknown default variant, …), answer for it as flagd does, and log it as warnings.")
    var lenient = false

    @Option(name: .customLong("max-line-bytes"), help: "Longest request line accepted; longer ones get TOO_LARGE.")
    var maxLineBytes = 64 * 1024

    @Option(name: .customLong("max-connections"), help: "Connections beyond this get OVERLOADED.")
    var maxConnections = 1024

    @Option(name: .long, help: "Event-loop threads at most (default: one per core); one answers every connection until heavy traffic saturates it.")
    var threads: Int?

    @Flag(name: .customLong("no-watch"), help: "Do not watch the flag file; reload only on SIGHUP.")
    var noWatch = false

    @Option(name: .customLong("admin-socket"), help: "Serve the admin protocol (flag writes) on this Unix socket, unless systemd passes one named \"admin\".")
    var adminSocket: String?

    @Option(name: .customLong("admin-socket-mode"), help: "The admin socket file's mode when guidond creates it (octal).")
    var adminSocketMode: String = "0600"

    @Option(name: .customLong("audit-log"), help: "Append every admin write attempt to this file as a JSON line (default: the journal only).")
    var auditLog: String?

    @Option(name: .customLong("max-admin-connections"), help: "Admin connections beyond this get OVERLOADED.")
    var maxAdminConnections = 16

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Flag(name: .customLong("no-metrics"), help: "Count nothing (stats and /metrics show only gauges); for measuring what counting costs.")
    var noMetrics = false

    @Option(name: .customLong("metrics-listen"), help: "Serve GET /metrics and /healthz over HTTP on [ADDRESS:]PORT (loopback unless an address is given).")
    var metricsListen: String?

    @Option(name: .customLong("ofrep-listen"), help: "Serve OFREP (the OpenFeature Remote Evaluation Protocol) over HTTP on [ADDRESS:]PORT (loopback unless an address is given) or a Unix-socket path; the same address as --metrics-listen shares its listener.")
    var ofrepListen: String?

    @Option(name: .customLong("events"), help: "Write exposure events of flags with metadata.trackEvents to this file (JSON lines).")
    var events: String?

    @Option(name: .customLong("events-max-bytes"), help: "Rotate the events file before it grows past this.")
    var eventsMaxBytes = 64 << 20

    @Option(name: .customLong("events-keep"), help: "Rotated events files kept (PATH.1 … PATH.N).")
    var eventsKeep = 5

    @Option(name: .customLong("events-window"), help: "Seconds within which the same (targeting key, flag, variant) is recorded once; 0 records every evaluation.")
    var eventsWindow = 60

    @Option(name: .customLong("state-dir"), help: "Where usage-limit counts are kept durable (default: $STATE_DIRECTORY, which systemd's StateDirectory= sets; without either, and without --quota-store, usage limits are off).")
    var stateDir: String?

    @Option(name: .customLong("quota-store"), help: "Count usage limits in Redis, shared by every guidond using it: redis://HOST:PORT or redis+unix:///PATH (default: embedded, under --state-dir).")
    var quotaStore: String?

    @Option(name: .customLong("quota-timeout"), help: "The longest a request waits for the Redis quota store, in milliseconds; past it each limit's failMode decides.")
    var quotaTimeout = 50

    /// `--state-dir`, else systemd's `$STATE_DIRECTORY` (the first, should it list several).
    var stateDirectory: String? {
        if let stateDir { return stateDir }
        guard let raw = getenv("STATE_DIRECTORY") else { return nil }
        let first = String(cString: raw).split(separator: ":").first.map(String.init)
        return first?.isEmpty == false ? first : nil
    }

    /// `nil`: usage limits are off.
    func quotaConfiguration() throws -> QuotaConfiguration? {
        guard quotaStore != nil || stateDirectory != nil else { return nil }
        do throws(QuotaStoreError) {
            return try QuotaConfiguration(quotaStore: quotaStore, stateDirectory: stateDirectory ?? "", timeout: .milliseconds(quotaTimeout))
        } catch {
            throw ValidationError(error.message)
        }
    }

    func validate() throws {
        guard (1...60_000).contains(quotaTimeout) else { throw ValidationError("--quota-timeout must be 1 to 60000 milliseconds") }
        if let stateDir, stateDir.isEmpty { throw ValidationError("--state-dir must be a directory path") }
        _ = try quotaConfiguration()
        guard !tenantAttribute.isEmpty else { throw ValidationError("--tenant-attribute must not be empty") }
        guard maxLineBytes >= 64 else { throw ValidationError("--max-line-bytes must be at least 64") }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level '\(logLevel)'") }
        guard let mode = UInt32(adminSocketMode, radix: 8), mode <= 0o777 else {
            throw ValidationError("--admin-socket-mode must be an octal mode such as 0600 or 0660")
        }
        _ = mode
        guard maxAdminConnections >= 1 else { throw ValidationError("--max-admin-connections must be at least 1") }
        if let metricsListen {
            do throws(HTTPListenerError) { _ = try HTTPListenerConfiguration(listen: metricsListen) } catch {
                throw ValidationError("--metrics-listen \(error.message)")
            }
        }
        if let ofrepListen {
            do throws(HTTPListenerError) { _ = try HTTPListenerConfiguration(listen: ofrepListen) } catch {
                throw ValidationError("--ofrep-listen \(error.message)")
            }
        }
        guard eventsMaxBytes >= 4096 else { throw ValidationError("--events-max-bytes must be at least 4096") }
        guard eventsKeep >= 0 else { throw ValidationError("--events-keep must be 0 or more") }
        guard (0...30 * 86_400).contains(eventsWindow) else { throw ValidationError("--events-window must be 0 to 2592000 seconds (30 days)") }
    }

    var observability: ObservabilityConfiguration {
        ObservabilityConfiguration(
            counting: !noMetrics,
            http: metricsListen.flatMap { try? HTTPListenerConfiguration(listen: $0) },
            events: events.map {
                ExposureEventsConfiguration(path: $0, maxBytes: eventsMaxBytes, keep: eventsKeep, windowSeconds: UInt32(eventsWindow))
            })
    }

    func run() throws {
        LoggingSystem.bootstrapForSystemd(level: Logger.Level(rawValue: logLevel) ?? .info)
        let logger = Logger(label: "guidond")
        let configuration = DaemonConfiguration(
            configPath: config, socketPath: socket,
            compileOptions: CompileOptions(mode: lenient ? .lenient : .strict),
            maxLineBytes: maxLineBytes, maxConnections: maxConnections,
            eventLoopThreads: threads, watchFile: !noWatch,
            admin: AdminConfiguration(
                socketPath: adminSocket, socketMode: UInt32(adminSocketMode, radix: 8) ?? 0o600, auditLogPath: auditLog,
                maxConnections: maxAdminConnections),
            observability: observability,
            ofrep: ofrepListen.flatMap { try? HTTPListenerConfiguration(listen: $0) },
            quota: try quotaConfiguration(),
            entitlements: entitlements.map {
                EntitlementsFile(
                    path: $0, tenantAttribute: tenantAttribute,
                    options: EntitlementsCompileOptions(mode: lenient ? .lenient : .strict, isKnownTimeZone: systemZoneExists))
            })
        do {
            try Daemon(configuration: configuration, logger: logger).run()
        } catch {
            logger.critical("cannot start: \(error)")
            SystemdNotifier.status("failed to start: \(error)")
            throw ExitCode(1)
        }
    }
}

Guidond.main()
