public import GuidonEngine
public import GuidonProtocol

/// One metric family as Prometheus shows it: its name, kind, help text and label names.
public struct MetricFamily: Sendable, Hashable {
    public enum Kind: String, Sendable {
        case counter, gauge, histogram
    }

    public let name: String
    public let kind: Kind
    public let help: String
    public let labels: [String]

    public init(_ name: String, _ kind: Kind, help: String, labels: [String] = []) {
        self.name = name
        self.kind = kind
        self.help = help
        self.labels = labels
    }
}

/// A counter family whose one label takes a closed set of values known when the daemon is
/// built (operations, error types, …): each loop keeps one counter per value, at a fixed
/// place in its block (see `LoopCounters`).
///
/// A feature that brings its own counters adds one entry to `MetricTable.counterFamilies` and
/// one `LoopCounters.count(_:_:)` call where the event happens, e.g. for the admin socket:
/// `CounterFamily(MetricFamily("guidon_admin_writes_total", .counter, help: …, labels: ["action"]), values: […])`.
public struct CounterFamily: Sendable, Hashable {
    public let family: MetricFamily
    public let values: [String]

    public init(_ family: MetricFamily, values: [String]) {
        precondition(family.labels.count == 1, "a counter family has one label")
        self.family = family
        self.values = values
    }
}

/// Every metric guidond exposes, in one place: names (`guidon_` prefix, `_total` for counters,
/// `_seconds` for times), help texts and labels. The Prometheus text, `stats`, the Grafana
/// dashboard check (`.ci/metrics-check`) and the documentation all follow this table.
public enum MetricTable {
    // MARK: Counted on the event loops

    /// Request lines answered, by operation; `invalid` for lines refused before an operation was
    /// known (`INVALID_REQUEST`, `UNKNOWN_OP`).
    public static let requests = CounterFamily(
        MetricFamily(
            "guidon_requests_total", .counter, help: "Request lines answered on the query socket, by operation.",
            labels: ["op"]),
        values: operations.map(\.rawValue) + ["invalid"])

    /// Protocol errors by their wire code, lower-cased (`invalid_request`, `unknown_op`,
    /// `too_large`, `overloaded`, and any code a later version adds to `ProtocolErrorCode`).
    public static let requestErrors = CounterFamily(
        MetricFamily(
            "guidon_request_errors_total", .counter,
            help: "Requests refused with a protocol error, by error type.", labels: ["error_type"]),
        values: requestErrorCodes.map { $0.rawValue.lowercased() })

    /// Evaluations that ended in an error, by OpenTelemetry's `error.type` values
    /// (`flag_not_found`, `type_mismatch`, `parse_error`, `general`). Unknown flag keys are counted
    /// here only, without their key: a client asking for random keys cannot grow memory.
    public static let evaluationErrors = CounterFamily(
        MetricFamily(
            "guidon_evaluation_errors_total", .counter,
            help: "Flag evaluations that ended in an error, by error type (flag_not_found counts unknown keys).",
            labels: ["error_type"]),
        values: evaluationErrorCodes.map { $0.rawValue.lowercased() })

    /// OFREP requests (`guidond --ofrep-listen`), counted on the HTTP listener's thread, by
    /// endpoint: `flag` (`POST /ofrep/v1/evaluate/flags/{key}`), `bulk` (`POST
    /// /ofrep/v1/evaluate/flags`), `other` (a path under `/ofrep/` or a method that OFREP does
    /// not serve). Their evaluations count in `guidon_evaluations_total` and
    /// `guidon_evaluation_errors_total` like the query socket's.
    public static let ofrepRequests = CounterFamily(
        MetricFamily(
            "guidon_ofrep_requests_total", .counter,
            help: "OFREP requests answered over HTTP, by endpoint (flag, bulk, other: a path or method OFREP does not serve).",
            labels: ["endpoint"]),
        values: ["flag", "bulk", "other"])

    /// OFREP responses by HTTP status: `200`; `304` (a bulk evaluation the client has, by
    /// `If-None-Match`); `400` (a body that is not JSON, a context that is not an object, an
    /// evaluation that failed); `404` (`FLAG_NOT_FOUND`, or no such path); `405`; `413` (a body
    /// over the listener's limit); `500`.
    public static let ofrepResponses = CounterFamily(
        MetricFamily(
            "guidon_ofrep_responses_total", .counter, help: "OFREP responses over HTTP, by status code.", labels: ["code"]),
        values: ofrepStatusCodes.map(String.init))

    /// The status codes of `guidon_ofrep_responses_total`.
    public static let ofrepStatusCodes = [200, 304, 400, 404, 405, 413, 500]

    /// `consume` answers (issue 14), counted on the loop that answers: `allowed`, `denied` (by a
    /// hard limit, or because the tenant is not entitled), `degraded` (the store could not be
    /// asked in time and each limit's `failMode` decided, allowed or not).
    public static let quotaAnswers = CounterFamily(
        MetricFamily(
            "guidon_quota_answers_total", .counter,
            help: "Usage-limit consume answers: allowed, denied (a hard limit, or not entitled), degraded (the store did not answer in time; failMode decided).",
            labels: ["result"]),
        values: ["allowed", "denied", "degraded"])

    /// The families with a closed label set, in the order of each loop's counter block.
    public static let counterFamilies: [CounterFamily] = [
        requests, requestErrors, evaluationErrors, ofrepRequests, ofrepResponses, quotaAnswers,
    ]

    /// Evaluations of flags that exist, by flag, variant served (`""` when none) and reason
    /// (OpenTelemetry's `feature_flag.result.reason` values, lower case).
    public static let evaluations = MetricFamily(
        "guidon_evaluations_total", .counter,
        help: "Flag evaluations by flag, variant served (empty when none) and reason.",
        labels: ["flag", "variant", "reason"])

    /// Times a tenant was told no by an entitlement, by feature (its key: features are declared
    /// in the entitlements document, so the label is bounded; `""` for a key that is no
    /// feature, counted without it), reason (`EntitlementDenialReason`: why the engine's order
    /// of precedence denies) and check (`EntitlementCheck`: a feature's answer to
    /// `eval`/`evalAll`/OFREP, `{"entitled": …}` in a flag's targeting, or `consume`). Counted
    /// per loop in an array laid out by the document (`DenialLayout`), like evaluations.
    public static let entitlementDenials = MetricFamily(
        "guidon_entitlement_denials_total", .counter,
        help: "Times a tenant was told no by an entitlement, by feature (empty: a key that is no feature), reason (not_granted, override, past_due, canceled, expired, ended, no_plan, unknown_tenant, no_tenant, unknown_feature) and check (eval: a feature's eval/evalAll/OFREP answer; targeting: {\"entitled\": ...} in a flag's rules; consume: a usage-limit consume refused).",
        labels: ["feature", "reason", "check"])

    public static let requestDuration = MetricFamily(
        "guidon_request_duration_seconds", .histogram,
        help: "Time from the read that brought a request line to the send that carried its reply.")

    // MARK: Read when collected

    public static let connections = MetricFamily(
        "guidon_connections", .gauge, help: "Open connections on the query socket.")
    public static let reloads = MetricFamily(
        "guidon_config_reloads_total", .counter,
        help: "Reload attempts of the flag file by result (ok: a new version is served; unchanged: same bytes; failed: the last good version keeps serving).",
        labels: ["result"])
    public static let lastReloadSuccess = MetricFamily(
        "guidon_config_last_reload_success_timestamp_seconds", .gauge,
        help: "When the flag file was last loaded or reloaded successfully (Unix time; the start counts).")
    public static let configLoaded = MetricFamily(
        "guidon_config_loaded_timestamp_seconds", .gauge,
        help: "When the configuration being served was loaded (Unix time).")
    public static let configInfo = MetricFamily(
        "guidon_config_info", .gauge, help: "The configuration being served (value 1).", labels: ["config_version"])
    public static let flags = MetricFamily(
        "guidon_flags", .gauge, help: "Flags being served, by state.", labels: ["state"])
    public static let buildInfo = MetricFamily(
        "guidon_build_info", .gauge, help: "The guidond version (value 1).", labels: ["version"])
    public static let startTime = MetricFamily(
        "guidon_start_time_seconds", .gauge, help: "When guidond started (Unix time).")
    public static let exposureEvents = MetricFamily(
        "guidon_exposure_events_total", .counter,
        help: "Evaluations of flags with metadata.trackEvents: events written, or left out as repeats within the window.",
        labels: ["outcome"])
    /// Admin write attempts by operation and result (every audit record: `applied`, `unchanged`,
    /// `conflict`, `invalid`, `forbidden` on the query socket, `notFound`, `failed`), counted by
    /// the admin writer (off the event loops) and read when collected.
    public static let adminWrites = MetricFamily(
        "guidon_admin_writes_total", .counter,
        help: "Admin write attempts (every audit record) by operation and result.",
        labels: ["action", "result"])

    public static let exposureEventsDropped = MetricFamily(
        "guidon_exposure_events_dropped_total", .counter,
        help: "Exposure events dropped, by reason (queue_full: the writer fell behind; too_large; write_failed).",
        labels: ["reason"])

    /// Every family, in the order the Prometheus text shows them.
    public static let all: [MetricFamily] =
        [evaluations, entitlementDenials] + counterFamilies.map(\.family) + [
            requestDuration, connections, reloads, lastReloadSuccess, configLoaded, configInfo, flags, buildInfo,
            startTime, exposureEvents, exposureEventsDropped, adminWrites,
        ]

    // MARK: Label values

    /// Every protocol error code, including those later versions add.
    public static let requestErrorCodes: [ProtocolErrorCode] = ProtocolErrorCode.allCases
    /// Every evaluation error code.
    public static let evaluationErrorCodes: [ErrorCode] = ErrorCode.allCases

    /// The operations of `guidon_requests_total`, in the order of `operationIndex`.
    public static let operations: [Request.Operation] = Request.Operation.allCases

    /// The position of `op` in `operations` (the declaration order of `Request.Operation`).
    @inlinable
    public static func operationIndex(_ op: Request.Operation) -> Int {
        // Request lines are mostly `eval`: one comparison for them.
        if op == .eval { return 0 }
        return operations.firstIndex(of: op) ?? 0
    }

    /// The reasons of `guidon_evaluations_total`, in the order of `reasonIndex`.
    public static let reasons: [Reason] = [.static, .targetingMatch, .default, .disabled, .error]

    @inlinable
    public static func reasonIndex(_ reason: Reason) -> Int {
        switch reason {
        case .static: 0
        case .targetingMatch: 1
        case .default: 2
        case .disabled: 3
        case .error: 4
        }
    }

    /// OpenTelemetry's `feature_flag.result.reason` value: the wire reason in lower case.
    public static func label(_ reason: Reason) -> String {
        reason.rawValue.lowercased()
    }
}
