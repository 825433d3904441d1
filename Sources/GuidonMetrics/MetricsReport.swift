public import GuidonJSON
import GuidonEngine
import GuidonProtocol
import NIOConcurrencyHelpers

/// Reload attempts by result, as the configuration store counts them.
public struct ReloadCounts: Sendable, Hashable {
    public var ok: UInt64
    public var unchanged: UInt64
    public var failed: UInt64
    /// When the file was last loaded successfully (Unix seconds; the start counts).
    public var lastSuccessAt: Int64

    public init(ok: UInt64 = 0, unchanged: UInt64 = 0, failed: UInt64 = 0, lastSuccessAt: Int64 = 0) {
        self.ok = ok
        self.unchanged = unchanged
        self.failed = failed
        self.lastSuccessAt = lastSuccessAt
    }
}

/// Everything `stats`, `/metrics` and `guidon metrics` show, at one moment: the loops' counters
/// added up (`CounterSample`) and what the daemon reads when asked (connections, the served
/// configuration, reloads). Renders the Prometheus text format and the `stats` reply.
public struct MetricsReport: Sendable {
    public var counters: CounterSample
    /// Whether the loops count (`guidond --no-metrics` turns it off).
    public var counting: Bool
    public var daemonVersion: String
    public var startedAt: Int64
    public var uptimeSeconds: Int64
    public var connections: Int
    public var configVersion: String
    public var configLoadedAt: Int64
    /// The flags served (keys), for telling counted flags that were removed since.
    public var servedFlags: Set<String>
    public var enabledFlags: Int
    public var disabledFlags: Int
    public var reloads: ReloadCounts
    /// Exposure events' counts when the daemon writes them (`--events`), else `nil`.
    public var exposures: ExposureCounts?
    /// Admin write attempts by (action, result), sorted.
    public var adminWrites: [(action: String, result: String, count: UInt64)] = []

    public init(
        counters: CounterSample, counting: Bool, daemonVersion: String, startedAt: Int64, uptimeSeconds: Int64,
        connections: Int, configVersion: String, configLoadedAt: Int64, servedFlags: Set<String>, enabledFlags: Int,
        disabledFlags: Int, reloads: ReloadCounts, exposures: ExposureCounts?
    ) {
        self.counters = counters
        self.counting = counting
        self.daemonVersion = daemonVersion
        self.startedAt = startedAt
        self.uptimeSeconds = uptimeSeconds
        self.connections = connections
        self.configVersion = configVersion
        self.configLoadedAt = configLoadedAt
        self.servedFlags = servedFlags
        self.enabledFlags = enabledFlags
        self.disabledFlags = disabledFlags
        self.reloads = reloads
        self.exposures = exposures
    }

    /// The evaluation counters in a stable order: by flag, variant, reason.
    var sortedEvaluations: [(key: EvaluationKey, value: UInt64)] {
        counters.evaluations.sorted { a, b in
            (a.key.flag, a.key.variant, a.key.reason) < (b.key.flag, b.key.variant, b.key.reason)
        }
    }

    /// The denial counters in a stable order: by feature, reason, check.
    var sortedDenials: [(key: DenialKey, value: UInt64)] {
        counters.denials.sorted { a, b in
            (a.key.feature, a.key.reason.rawValue, a.key.check.rawValue) < (b.key.feature, b.key.reason.rawValue, b.key.check.rawValue)
        }
    }

    // MARK: - Prometheus text format

    /// The content type of `prometheusText()`: the text exposition format, version 0.0.4.
    public static let prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The Prometheus text exposition format (version 0.0.4).
    ///
    /// Written here rather than through swift-prometheus: its registry keeps each metric's value
    /// itself (a counter is one shared atomic; a histogram takes a lock per observation) and
    /// has no way to set a histogram's bucket counts, so exposing counts merged from the loops
    /// would mean replaying every observation into it at each scrape. What remains is a hundred
    /// lines of text formatting, checked by `promtool check metrics` in CI.
    public func prometheusText() -> [UInt8] {
        var out = PrometheusWriter()
        out.family(MetricTable.evaluations)
        for (key, count) in sortedEvaluations {
            out.sample(
                MetricTable.evaluations.name,
                [("flag", key.flag), ("variant", key.variant), ("reason", MetricTable.label(MetricTable.reasons[key.reason]))],
                count)
        }
        out.family(MetricTable.entitlementDenials)
        for (key, count) in sortedDenials {
            out.sample(
                MetricTable.entitlementDenials.name,
                [("feature", key.feature), ("reason", key.reason.label), ("check", key.check.label)], count)
        }
        for family in MetricTable.counterFamilies {
            out.family(family.family)
            for (value, count) in zip(family.values, counters.counts(family)) {
                out.sample(family.family.name, [(family.family.labels[0], value)], count)
            }
        }
        let histogram = MetricTable.requestDuration
        out.family(histogram)
        var cumulative: UInt64 = 0
        for (i, count) in counters.latencyBuckets.enumerated() {
            cumulative &+= count
            out.sample(histogram.name + "_bucket", [("le", LatencyBuckets.label(i))], cumulative)
        }
        out.sample(histogram.name + "_sum", [], Double(counters.latencySumNanoseconds) / 1e9)
        out.sample(histogram.name + "_count", [], cumulative)

        out.family(MetricTable.connections)
        out.sample(MetricTable.connections.name, [], UInt64(max(0, connections)))
        out.family(MetricTable.reloads)
        for (result, count) in [("ok", reloads.ok), ("unchanged", reloads.unchanged), ("failed", reloads.failed)] {
            out.sample(MetricTable.reloads.name, [("result", result)], count)
        }
        out.family(MetricTable.lastReloadSuccess)
        out.sample(MetricTable.lastReloadSuccess.name, [], Double(reloads.lastSuccessAt))
        out.family(MetricTable.configLoaded)
        out.sample(MetricTable.configLoaded.name, [], Double(configLoadedAt))
        out.family(MetricTable.configInfo)
        out.sample(MetricTable.configInfo.name, [("config_version", configVersion)], UInt64(1))
        out.family(MetricTable.flags)
        out.sample(MetricTable.flags.name, [("state", "enabled")], UInt64(enabledFlags))
        out.sample(MetricTable.flags.name, [("state", "disabled")], UInt64(disabledFlags))
        out.family(MetricTable.buildInfo)
        out.sample(MetricTable.buildInfo.name, [("version", daemonVersion)], UInt64(1))
        out.family(MetricTable.startTime)
        out.sample(MetricTable.startTime.name, [], Double(startedAt))
        out.family(MetricTable.adminWrites)
        for write in adminWrites {
            out.sample(MetricTable.adminWrites.name, [("action", write.action), ("result", write.result)], write.count)
        }
        if let exposures {
            out.family(MetricTable.exposureEvents)
            out.sample(MetricTable.exposureEvents.name, [("outcome", "written")], exposures.written)
            out.sample(MetricTable.exposureEvents.name, [("outcome", "deduplicated")], exposures.deduplicated)
            out.family(MetricTable.exposureEventsDropped)
            for (reason, count) in [
                ("queue_full", exposures.droppedQueueFull), ("too_large", exposures.droppedTooLarge),
                ("write_failed", exposures.droppedWriteFailed),
            ] {
                out.sample(MetricTable.exposureEventsDropped.name, [("reason", reason)], count)
            }
        }
        return out.bytes
    }

    // MARK: - The `stats` reply

    /// The body of a `stats` reply (see protocol/PROTOCOL.md): cumulative since the daemon
    /// started, so that any number of readers can take differences (`guidon stats --interval`).
    public var statsJSON: JSONObject {
        func counts(_ family: CounterFamily) -> JSONValue {
            var object = JSONObject()
            for (value, count) in zip(family.values, counters.counts(family)) { object[value] = .int(Int64(count)) }
            return .object(object)
        }
        // Per flag: total, by variant (in order of first appearance when sorted), by reason.
        var flags: [(flag: String, total: UInt64, variants: [(String, UInt64)], reasons: [UInt64])] = []
        var total: UInt64 = 0
        for (key, count) in sortedEvaluations {
            total &+= count
            if flags.last?.flag != key.flag {
                flags.append((key.flag, 0, [], [UInt64](repeating: 0, count: MetricTable.reasons.count)))
            }
            flags[flags.count - 1].total &+= count
            flags[flags.count - 1].reasons[key.reason] &+= count
            if let i = flags[flags.count - 1].variants.firstIndex(where: { $0.0 == key.variant }) {
                flags[flags.count - 1].variants[i].1 &+= count
            } else {
                flags[flags.count - 1].variants.append((key.variant, count))
            }
        }
        flags.sort { $0.total != $1.total ? $0.total > $1.total : $0.flag < $1.flag }
        let flagEntries: [JSONValue] = flags.map { flag in
            var reasons = JSONObject()
            for (i, count) in flag.reasons.enumerated() where count > 0 {
                reasons[MetricTable.label(MetricTable.reasons[i])] = .int(Int64(count))
            }
            return .object([
                "flag": .string(flag.flag),
                "total": .int(Int64(flag.total)),
                "variants": .array(flag.variants.map { name, count in
                    .object(["variant": name.isEmpty ? .null : .string(name), "count": .int(Int64(count))])
                }),
                "reasons": .object(reasons),
                "removed": .bool(!servedFlags.contains(flag.flag)),
            ])
        }
        let buckets = counters.latencyBuckets
        let count = buckets.reduce(0, +)
        var latency: JSONObject = [
            "count": .int(Int64(count)),
            "sumSeconds": .double(Double(counters.latencySumNanoseconds) / 1e9),
            "buckets": .array(buckets.enumerated().map { i, n in .object(["le": .string(LatencyBuckets.label(i)), "count": .int(Int64(n))]) }),
        ]
        for (q, name) in [(0.5, "p50Seconds"), (0.9, "p90Seconds"), (0.99, "p99Seconds")] {
            latency[name] = LatencyBuckets.quantile(q, counts: buckets).map { .double($0 / 1e9) } ?? .null
        }
        var body: JSONObject = [
            "counting": .bool(counting),
            "version": .string(daemonVersion),
            "startedAt": .string(Timestamp.rfc3339(startedAt)),
            "uptimeSeconds": .int(uptimeSeconds),
            "connections": .int(Int64(connections)),
            "configVersion": .string(configVersion),
            "flags": ["enabled": .int(Int64(enabledFlags)), "disabled": .int(Int64(disabledFlags))],
            "requests": counts(MetricTable.requests),
            "requestErrors": counts(MetricTable.requestErrors),
            "evaluations": ["total": .int(Int64(total)), "flags": .array(flagEntries)],
            "evaluationErrors": counts(MetricTable.evaluationErrors),
            "quotaAnswers": counts(MetricTable.quotaAnswers),
            "latency": .object(latency),
            "reloads": [
                "ok": .int(Int64(reloads.ok)), "unchanged": .int(Int64(reloads.unchanged)),
                "failed": .int(Int64(reloads.failed)), "lastSuccessAt": .string(Timestamp.rfc3339(reloads.lastSuccessAt)),
            ],
        ]
        var writes = JSONObject()
        for write in adminWrites {
            var byResult = writes[write.action]?.object ?? JSONObject()
            byResult[write.result] = .int(Int64(write.count))
            writes[write.action] = .object(byResult)
        }
        body["adminWrites"] = .object(writes)
        body["entitlementDenials"] = denialsJSON
        if let exposures {
            body["exposureEvents"] = [
                "written": .int(Int64(exposures.written)),
                "deduplicated": .int(Int64(exposures.deduplicated)),
                "dropped": [
                    "queueFull": .int(Int64(exposures.droppedQueueFull)),
                    "tooLarge": .int(Int64(exposures.droppedTooLarge)),
                    "writeFailed": .int(Int64(exposures.droppedWriteFailed)),
                ],
            ]
        } else {
            body["exposureEvents"] = .null
        }
        return body
    }

    /// `stats`' `entitlementDenials`: the total, by reason and by check, and per feature (the
    /// most denied first; `""` for keys that are no feature) by reason.
    var denialsJSON: JSONValue {
        var total: UInt64 = 0
        var byReason = [UInt64](repeating: 0, count: EntitlementDenialReason.allCases.count)
        var byCheck = [UInt64](repeating: 0, count: EntitlementCheck.allCases.count)
        var features: [(feature: String, total: UInt64, reasons: [UInt64])] = []
        for (key, count) in sortedDenials {
            total &+= count
            byReason[Int(key.reason.rawValue)] &+= count
            byCheck[key.check.rawValue] &+= count
            if features.last?.feature != key.feature {
                features.append((key.feature, 0, [UInt64](repeating: 0, count: EntitlementDenialReason.allCases.count)))
            }
            features[features.count - 1].total &+= count
            features[features.count - 1].reasons[Int(key.reason.rawValue)] &+= count
        }
        features.sort { $0.total != $1.total ? $0.total > $1.total : $0.feature < $1.feature }
        func object(_ counts: [UInt64], _ label: (Int) -> String) -> JSONValue {
            var object = JSONObject()
            for (i, count) in counts.enumerated() where count > 0 { object[label(i)] = .int(Int64(count)) }
            return .object(object)
        }
        let reasonLabel = { (i: Int) in EntitlementDenialReason.allCases[i].label }
        return [
            "total": .int(Int64(total)),
            "reasons": object(byReason, reasonLabel),
            "checks": object(byCheck) { EntitlementCheck.allCases[$0].label },
            "features": .array(features.map { feature in
                .object([
                    "feature": feature.feature.isEmpty ? .null : .string(feature.feature),
                    "total": .int(Int64(feature.total)),
                    "reasons": object(feature.reasons, reasonLabel),
                ])
            }),
        ]
    }
}

/// Appends the text exposition format.
struct PrometheusWriter {
    var bytes: [UInt8] = []

    mutating func family(_ family: MetricFamily) {
        append("# HELP \(family.name) ")
        for byte in family.help.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): append("\\\\")
            case UInt8(ascii: "\n"): append("\\n")
            default: bytes.append(byte)
            }
        }
        append("\n# TYPE \(family.name) \(family.kind.rawValue)\n")
    }

    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: UInt64) {
        head(name, labels)
        append(String(value))
        bytes.append(UInt8(ascii: "\n"))
    }

    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Double) {
        head(name, labels)
        append(value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : "\(value)")
        bytes.append(UInt8(ascii: "\n"))
    }

    private mutating func head(_ name: String, _ labels: [(String, String)]) {
        append(name)
        if !labels.isEmpty {
            bytes.append(UInt8(ascii: "{"))
            for (i, (label, value)) in labels.enumerated() {
                if i > 0 { bytes.append(UInt8(ascii: ",")) }
                append(label)
                append("=\"")
                for byte in value.utf8 {
                    switch byte {
                    case UInt8(ascii: "\\"): append("\\\\")
                    case UInt8(ascii: "\""): append("\\\"")
                    case UInt8(ascii: "\n"): append("\\n")
                    default: bytes.append(byte)
                    }
                }
                bytes.append(UInt8(ascii: "\""))
            }
            bytes.append(UInt8(ascii: "}"))
        }
        bytes.append(UInt8(ascii: " "))
    }

    private mutating func append(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }
}

/// Admin write attempts by (action, result): counted where the audit record is written (the
/// admin writer, off the event loops; a write is rare), read when collected.
public final class AdminWriteCounts: Sendable {
    private let counts = NIOLockedValueBox<[String: [String: UInt64]]>([:])

    public init() {}

    public func count(action: String, result: String) {
        counts.withLockedValue { $0[action, default: [:]][result, default: 0] &+= 1 }
    }

    /// Sorted by action, then result.
    public var sample: [(action: String, result: String, count: UInt64)] {
        counts.withLockedValue { counts in
            counts.keys.sorted().flatMap { action in counts[action]!.keys.sorted().map { (action, $0, counts[action]![$0]!) } }
        }
    }
}
