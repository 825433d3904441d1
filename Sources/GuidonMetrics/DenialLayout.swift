public import GuidonEngine

/// Where an entitlement denial was told (the `check` label of
/// `guidon_entitlement_denials_total`).
public enum EntitlementCheck: Int, CaseIterable, Sendable, BitwiseCopyable {
    /// A feature's answer: `eval` (one key or several), `evalAll`, OFREP's single and bulk evaluation.
    case eval
    /// `{"entitled": …}` in a flag's targeting, answering false.
    case targeting
    /// `consume` refused because the tenant is not entitled to the feature.
    case consume

    public var label: String {
        switch self {
        case .eval: "eval"
        case .targeting: "targeting"
        case .consume: "consume"
        }
    }
}

/// Where each feature's denial counters lie in a loop's flat array, for one entitlements
/// document: feature `i` has one row from `i * rowWidth`, one counter per (check, reason); the
/// row after the last feature counts keys that are no feature, without their key (so a client
/// asking about random keys cannot grow memory). Built once per document and shared by every
/// loop, like `EvaluationLayout`; it holds the features' keys, not the document.
///
/// `@unchecked Sendable`: written in `init`, only read afterwards.
public final class DenialLayout: @unchecked Sendable {
    /// The features' keys, in document order (the engine's feature positions).
    public let features: [String]

    /// Counters per row: one per check and reason.
    @inlinable static var rowWidth: Int { checkCount * reasonCount }
    @inlinable static var checkCount: Int { 3 }
    @inlinable static var reasonCount: Int { 10 }

    /// Rows: one per feature and one for keys that are no feature.
    public var rows: Int { features.count + 1 }
    public var slotCount: Int { rows * Self.rowWidth }

    /// Without entitlements: the one row for keys that are no feature.
    public static let none = DenialLayout(features: [])

    public init(features: [String]) {
        precondition(EntitlementCheck.allCases.count == Self.checkCount)
        precondition(EntitlementDenialReason.allCases.count == Self.reasonCount)
        self.features = features
    }

    /// The counter of `denial` told by `check`, in a layout of `rows` rows.
    @inlinable @inline(__always)
    static func slot(_ denial: EntitlementDenial, _ check: EntitlementCheck, rows: Int) -> Int {
        let feature = Int(denial.feature)
        let row = feature >= 0 && feature < rows - 1 ? feature : rows - 1
        return row * rowWidth + check.rawValue * reasonCount + Int(denial.reason.rawValue)
    }

    /// Calls `body` with the feature (`""` for keys that are no feature), reason and check of
    /// every slot whose count is not zero.
    func forEachCounted(
        _ counts: (Int) -> UInt64,
        _ body: (_ feature: String, _ reason: EntitlementDenialReason, _ check: EntitlementCheck, _ count: UInt64) -> Void
    ) {
        for row in 0..<rows {
            let feature = row < features.count ? features[row] : ""
            for check in EntitlementCheck.allCases {
                for reason in EntitlementDenialReason.allCases {
                    let count = counts(row * Self.rowWidth + check.rawValue * Self.reasonCount + Int(reason.rawValue))
                    if count != 0 { body(feature, reason, check, count) }
                }
            }
        }
    }
}

/// A denial counter's identity across reloads: feature by key (`""` for keys that are no
/// feature), reason and check.
public struct DenialKey: Hashable, Sendable {
    public var feature: String
    public var reason: EntitlementDenialReason
    public var check: EntitlementCheck

    public init(feature: String, reason: EntitlementDenialReason, check: EntitlementCheck) {
        self.feature = feature
        self.reason = reason
        self.check = check
    }
}
