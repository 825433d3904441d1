import ArgumentParser
import GuidonJSON
import GuidonMetrics

#if canImport(Glibc)
import Glibc
#endif

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Shows what the daemon answered: busiest flags and their variants, errors, latency, reloads, entitlement denials.",
        discussion: """
            The daemon's counters are cumulative since it started. With --interval N, guidon reads \
            them twice, N seconds apart, and shows the rates and splits of that interval instead.
            """)

    @OptionGroup var options: ClientOptions

    @Option(help: "Read twice, this many seconds apart, and show that interval.")
    var interval: Double?

    @Option(help: "How many of the busiest flags to show.")
    var top = 10

    func validate() throws {
        if let interval, !(interval > 0 && interval <= 3600) { throw ValidationError("--interval must be more than 0 and at most 3600 seconds") }
        guard top >= 0 else { throw ValidationError("--top must be 0 or more") }
    }

    func run() throws {
        let (first, firstRaw) = try options.ask(["op": "stats"])
        guard let interval else {
            if options.json { return printLine(firstRaw) }
            return print(StatsView(first).render(top: top, interval: nil), terminator: "")
        }
        usleep(UInt32(interval * 1_000_000))
        let (second, secondRaw) = try options.ask(["op": "stats"])
        if options.json {
            printLine(firstRaw)
            return printLine(secondRaw)
        }
        print(StatsView(second).minus(StatsView(first)).render(top: top, interval: interval), terminator: "")
    }
}

struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prints the daemon's metrics in the Prometheus text format (for node_exporter's textfile collector).",
        discussion: """
            The same text as GET /metrics (guidond --metrics-listen). For the textfile collector, write it \
            to a temporary file and rename it into the collector's directory, e.g. \
            `guidon metrics > /var/lib/node_exporter/guidon.prom.$$ && mv /var/lib/node_exporter/guidon.prom.$$ /var/lib/node_exporter/guidon.prom`.
            """)

    @OptionGroup var options: ClientOptions

    func run() throws {
        let (reply, raw) = try options.ask(["op": "metrics"])
        if options.json { return printLine(raw) }
        guard let text = reply["text"]?.string else { throw CLIError("unexpected reply: \(JSONValue.object(reply))") }
        print(text, terminator: "")
    }
}

/// A `stats` reply, as numbers (or the difference of two).
struct StatsView {
    var version = ""
    var uptimeSeconds: Int64 = 0
    var connections: Int64 = 0
    var configVersion = ""
    var enabledFlags: Int64 = 0
    var disabledFlags: Int64 = 0
    var counting = true
    var requests: [(String, Int64)] = []
    var requestErrors: [(String, Int64)] = []
    var evaluationErrors: [(String, Int64)] = []
    var evaluations: Int64 = 0
    /// flag → (total, [(variant, count)], removed)
    var flags: [(flag: String, total: Int64, variants: [(String, Int64)], removed: Bool)] = []
    var latencyBuckets: [UInt64] = []
    var reloads: (ok: Int64, unchanged: Int64, failed: Int64) = (0, 0, 0)
    var lastReloadSuccess = ""
    var events: (written: Int64, deduplicated: Int64, dropped: Int64)?
    /// Entitlement denials: the total, by reason, by check, and per feature (`""`: keys that are no feature).
    var denials: Int64 = 0
    var denialReasons: [(String, Int64)] = []
    var denialChecks: [(String, Int64)] = []
    var deniedFeatures: [(feature: String, total: Int64, reasons: [(String, Int64)])] = []

    init(_ reply: JSONObject) {
        func int(_ value: JSONValue?) -> Int64 {
            if case .int(let n)? = value { return n }
            return 0
        }
        func pairs(_ value: JSONValue?) -> [(String, Int64)] {
            guard case .object(let object)? = value else { return [] }
            return object.map { ($0.key, int($0.value)) }
        }
        version = reply["version"]?.string ?? ""
        uptimeSeconds = int(reply["uptimeSeconds"])
        connections = int(reply["connections"])
        configVersion = reply["configVersion"]?.string ?? ""
        enabledFlags = int(reply["flags"]?.object?["enabled"])
        disabledFlags = int(reply["flags"]?.object?["disabled"])
        counting = reply["counting"] != .bool(false)
        requests = pairs(reply["requests"])
        requestErrors = pairs(reply["requestErrors"])
        evaluationErrors = pairs(reply["evaluationErrors"])
        evaluations = int(reply["evaluations"]?.object?["total"])
        for case .object(let flag) in reply["evaluations"]?.object?["flags"]?.array ?? [] {
            let variants: [(String, Int64)] = (flag["variants"]?.array ?? []).compactMap { entry in
                guard case .object(let v) = entry else { return nil }
                return (v["variant"]?.string ?? "", int(v["count"]))
            }
            flags.append((flag["flag"]?.string ?? "", int(flag["total"]), variants, flag["removed"] == .bool(true)))
        }
        if case .object(let latency)? = reply["latency"] {
            latencyBuckets = (latency["buckets"]?.array ?? []).map { UInt64(max(0, int($0.object?["count"]))) }
        }
        if case .object(let r)? = reply["reloads"] {
            reloads = (int(r["ok"]), int(r["unchanged"]), int(r["failed"]))
            lastReloadSuccess = r["lastSuccessAt"]?.string ?? ""
        }
        if case .object(let d)? = reply["entitlementDenials"] {
            denials = int(d["total"])
            denialReasons = pairs(d["reasons"])
            denialChecks = pairs(d["checks"])
            for case .object(let f) in d["features"]?.array ?? [] {
                deniedFeatures.append((f["feature"]?.string ?? "", int(f["total"]), pairs(f["reasons"])))
            }
        }
        if case .object(let e)? = reply["exposureEvents"] {
            let dropped = e["dropped"]?.object ?? [:]
            events = (int(e["written"]), int(e["deduplicated"]), dropped.reduce(0) { $0 + int($1.value) })
        }
    }

    /// What happened between `earlier` and this reading (gauges are this reading's).
    func minus(_ earlier: StatsView) -> StatsView {
        func subtract(_ a: [(String, Int64)], _ b: [(String, Int64)]) -> [(String, Int64)] {
            a.map { key, value in (key, value - (b.first { $0.0 == key }?.1 ?? 0)) }
        }
        var d = self
        d.requests = subtract(requests, earlier.requests)
        d.requestErrors = subtract(requestErrors, earlier.requestErrors)
        d.evaluationErrors = subtract(evaluationErrors, earlier.evaluationErrors)
        d.evaluations = evaluations - earlier.evaluations
        d.flags = flags.map { flag in
            let before = earlier.flags.first { $0.flag == flag.flag }
            return (flag.flag, flag.total - (before?.total ?? 0), subtract(flag.variants, before?.variants ?? []), flag.removed)
        }.filter { $0.total > 0 }.sorted { $0.total > $1.total }
        d.latencyBuckets = zip(latencyBuckets, earlier.latencyBuckets + Array(repeating: 0, count: max(0, latencyBuckets.count - earlier.latencyBuckets.count))).map { $0 &- $1 }
        d.reloads = (reloads.ok - earlier.reloads.ok, reloads.unchanged - earlier.reloads.unchanged, reloads.failed - earlier.reloads.failed)
        d.denials = denials - earlier.denials
        d.denialReasons = subtract(denialReasons, earlier.denialReasons)
        d.denialChecks = subtract(denialChecks, earlier.denialChecks)
        d.deniedFeatures = deniedFeatures.map { feature in
            let before = earlier.deniedFeatures.first { $0.feature == feature.feature }
            return (feature.feature, feature.total - (before?.total ?? 0), subtract(feature.reasons, before?.reasons ?? []))
        }.filter { $0.total > 0 }.sorted { $0.total > $1.total }
        if let now = events, let then = earlier.events {
            d.events = (now.written - then.written, now.deduplicated - then.deduplicated, now.dropped - then.dropped)
        }
        return d
    }

    func render(top: Int, interval: Double?) -> String {
        var out = ""
        func line(_ text: String) { out += text + "\n" }
        func amount(_ n: Int64) -> String {
            guard let interval else { return grouped(n) }
            return grouped(Int64((Double(n) / interval).rounded())) + "/s"
        }
        let totalRequests = requests.reduce(0) { $0 + $1.1 }
        line("guidond \(version), up \(duration(uptimeSeconds)), \(connections) connection(s), config \(configVersion) (\(enabledFlags) enabled, \(disabledFlags) disabled flags)")
        if let interval { line("over the last \(formatNumber(interval)) s:") } else { line("since the start:") }
        if !counting { line("counting is off (guidond --no-metrics)") }
        let ops = requests.filter { $0.1 > 0 }.map { "\($0.0) \(amount($0.1))" }.joined(separator: ", ")
        line("requests     \(amount(totalRequests))\(ops.isEmpty ? "" : " (\(ops))")")
        line("             " + errorText(requestErrors, of: totalRequests))
        line("evaluations  \(amount(evaluations + (evaluationErrors.first { $0.0 == "flag_not_found" }?.1 ?? 0)))")
        line("             " + errorText(evaluationErrors, of: evaluations + (evaluationErrors.first { $0.0 == "flag_not_found" }?.1 ?? 0)))
        let latency = [0.5, 0.9, 0.99].map { q in
            LatencyBuckets.quantile(q, counts: latencyBuckets).map { micros($0) } ?? "–"
        }
        line("latency      p50 \(latency[0]), p90 \(latency[1]), p99 \(latency[2]) (in the daemon, read to reply sent)")
        line("reloads      \(reloads.ok) ok, \(reloads.unchanged) unchanged, \(reloads.failed) failed; last success \(lastReloadSuccess)")
        if let events {
            line("events       \(amount(events.written)) written, \(amount(events.deduplicated)) repeats left out, \(amount(events.dropped)) dropped")
        }
        if denials > 0 {
            func split(_ counts: [(String, Int64)]) -> String {
                counts.filter { $0.1 > 0 }.sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }.map { "\($0.0) \(amount($0.1))" }
                    .joined(separator: ", ")
            }
            line("")
            line("entitlement denials  \(amount(denials)) (\(split(denialReasons))); by check: \(split(denialChecks))")
            let features = deniedFeatures.prefix(min(top, 5))  // a short section: the most denied
            let width = max(20, features.map { $0.feature.isEmpty ? 18 : $0.feature.count }.max() ?? 0)
            for feature in features {
                let name = feature.feature.isEmpty ? "(not a feature)" : feature.feature
                line("  " + name.padding(width) + "  " + amount(feature.total).leftPadding(12) + "  " + split(feature.reasons))
            }
            if deniedFeatures.count > features.count { line("  … and \(deniedFeatures.count - features.count) more features (--json)") }
        }
        let shown = flags.prefix(top)
        if !shown.isEmpty {
            line("")
            let width = max(20, shown.map(\.flag.count).max() ?? 0)
            line("busiest flags".padding(width) + "  " + "evaluations".leftPadding(12) + "  variants")
            for flag in shown {
                let split = flag.variants.filter { $0.1 > 0 }.sorted { $0.1 > $1.1 }.map { name, count in
                    let share = flag.total > 0 ? Double(count) / Double(flag.total) : 0
                    return "\(name.isEmpty ? "(none)" : name) \(formatNumber(share * 100, decimals: 1)) % \(bar(share))"
                }.joined(separator: "  ")
                line((flag.flag + (flag.removed ? " (removed)" : "")).padding(width) + "  " + amount(flag.total).leftPadding(12) + "  " + split)
            }
            if flags.count > shown.count { line("… and \(flags.count - shown.count) more (--top N)") }
        }
        return out
    }

    private func errorText(_ errors: [(String, Int64)], of total: Int64) -> String {
        let sum = errors.reduce(0) { $0 + $1.1 }
        let rate = total > 0 ? Double(sum) / Double(total) * 100 : 0
        let parts = errors.filter { $0.1 > 0 }.map { "\($0.0) \(grouped($0.1))" }.joined(separator: ", ")
        return "errors \(grouped(sum)) (\(formatNumber(rate, decimals: 2)) %)\(parts.isEmpty ? "" : ": \(parts)")"
    }
}

/// Ten cells of eighths: `███▌      `.
func bar(_ share: Double) -> String {
    let eighths = Int((max(0, min(1, share)) * 80).rounded())
    let blocks = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"]
    return String(repeating: "█", count: eighths / 8) + blocks[eighths % 8]
}

func micros(_ nanoseconds: Double) -> String {
    let us = nanoseconds / 1000
    return us >= 1000 ? formatNumber(us / 1000, decimals: 1) + " ms" : formatNumber(us, decimals: us >= 100 ? 0 : 1) + " µs"
}

func duration(_ seconds: Int64) -> String {
    if seconds < 60 { return "\(seconds) s" }
    if seconds < 3600 { return "\(seconds / 60) min" }
    if seconds < 86_400 { return "\(seconds / 3600) h \(seconds % 3600 / 60) min" }
    return "\(seconds / 86_400) d \(seconds % 86_400 / 3600) h"
}

func grouped(_ n: Int64) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return n < 0 ? "-" + out : out
}

func formatNumber(_ x: Double, decimals: Int = 1) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let rounded = (x * scale).rounded() / scale
    if decimals == 0 || rounded == rounded.rounded() && decimals == 0 { return String(Int64(rounded)) }
    var text = String(rounded)
    if let dot = text.firstIndex(of: ".") {
        let fraction = text[text.index(after: dot)...].count
        if fraction < decimals { text += String(repeating: "0", count: decimals - fraction) }
    }
    return text
}

extension String {
    fileprivate func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
    fileprivate func leftPadding(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
