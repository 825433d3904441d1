public import GuidonJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What `list` shows of a flag.
public struct FlagInfo: Sendable, Hashable {
    public enum State: String, Sendable { case enabled = "ENABLED", disabled = "DISABLED" }

    public var key: String
    public var state: State
    /// Variant names in document order.
    public var variants: [String]
    public var defaultVariant: String?
    /// The flag's merged metadata (set-level overlaid with the flag's own).
    public var metadata: JSONObject
    /// Whether the flag has targeting (a non-empty rule).
    public var hasTargeting: Bool
    /// A digest of the flag's definition: equal fingerprints mean an unchanged flag.
    public var fingerprint: UInt64
}

/// The flags that a reload added, changed and removed (each sorted by key).
public struct SnapshotDiff: Sendable, Hashable {
    public var added: [String]
    public var changed: [String]
    public var removed: [String]
    public var isEmpty: Bool { added.isEmpty && changed.isEmpty && removed.isEmpty }

    public init(added: [String], changed: [String], removed: [String]) {
        self.added = added
        self.changed = changed
        self.removed = removed
    }
}

/// An immutable, compiled flag set. Safe to share between threads; evaluation never locks.
public final class Snapshot: Sendable {
    /// Problems that did not reject the document (lenient mode).
    public let warnings: [Diagnostic]
    /// Set-level metadata.
    public let metadata: JSONObject
    /// Every flag, in document order.
    public let flags: [FlagInfo]

    let compiled: [CompiledFlag]
    /// Key → position: `keyIndex` by bytes, then `lookup` (canonical equivalence) for the rest.
    let keyIndex: KeyIndex
    let lookup: [String: Int]
    let clock: @Sendable () -> Int64
    /// What the next compile needs to reuse this snapshot's flags.
    let memo: CompileMemo?
    /// How many flags were compiled rather than taken from a previous snapshot.
    let compiledCount: Int
    /// The features `entitled` was checked against (`CompileOptions.features`): a compile with
    /// others reuses no flag, since what a flag's targeting reports depends on them.
    public let features: Set<String>?

    init(
        flags: [CompiledFlag], infos: [FlagInfo], metadata: JSONObject, warnings: [Diagnostic],
        clock: @escaping @Sendable () -> Int64, memo: CompileMemo?, compiledCount: Int, lookup: [String: Int]? = nil,
        features: Set<String>? = nil
    ) {
        self.features = features
        self.compiled = flags
        self.memo = memo
        self.compiledCount = compiledCount
        self.flags = infos
        self.metadata = metadata
        self.warnings = warnings
        self.clock = clock
        self.keyIndex = KeyIndex(flags.map(\.key))
        if let lookup {
            self.lookup = lookup
        } else {
            var lookup = [String: Int](minimumCapacity: flags.count)
            for (i, info) in infos.enumerated() { lookup[info.key] = i }
            self.lookup = lookup
        }
    }

    /// Parses, validates and compiles a flagd flag-definition document.
    /// Throws a report holding every problem when the document is rejected.
    ///
    /// With `previous` (typically the snapshot being served, when its file changed), a flag whose
    /// definition is byte-for-byte the same as in `previous`'s document is taken from `previous`
    /// instead of being compiled again, provided the `$evaluators` and `metadata` members are
    /// unchanged too. The result is the same as a compile without `previous`.
    public static func compile(
        json bytes: [UInt8], options: CompileOptions = CompileOptions(), reusing previous: Snapshot? = nil
    ) throws(ValidationReport) -> Snapshot {
        try Compiler(options: options).compile(bytes, reusing: previous)
    }

    public var count: Int { compiled.count }

    /// Whether `document` is, byte for byte, the text this snapshot was compiled from.
    public func isCompiled(from document: [UInt8]) -> Bool {
        guard let source = memo?.source, source.count == document.count else { return false }
        return source.withUnsafeBytes { a in document.withUnsafeBytes { b in a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 } }
    }

    /// Where flag `key`'s definition is in `document`, when `document` is the text this snapshot
    /// was compiled from (else `nil`): the compile delimited every definition already, so an
    /// editor of that text need not delimit it again (10,000 flags: 7 ms saved per edit).
    public func definitionRange(of key: String, in document: [UInt8]) -> Range<Int>? {
        guard let memo, let i = position(of: key), compiled[i].key.utf8.elementsEqual(key.utf8), isCompiled(from: document) else {
            return nil
        }
        return memo.definitions[i]
    }

    public func info(_ key: String) -> FlagInfo? {
        position(of: key).map { flags[$0] }
    }

    /// Where the flag `key` is, by its bytes or else as `lookup` finds it.
    @inline(__always)
    func position(of key: String) -> Int? {
        keyIndex.position(of: key) ?? lookup[key]
    }

    /// Evaluates one flag. `now` (Unix seconds) overrides the snapshot's clock.
    ///
    /// `context` is evaluated only when the flag's targeting reads it: never for a flag that is
    /// missing, disabled or without targeting. (A caller holding the context as text, like
    /// guidond holding a request line, can thus leave decoding it to the flags that need it.)
    public func evaluate(
        _ key: String, context: @autoclosure () -> EvaluationContext, type: ValueType? = nil, now: Int64? = nil
    ) -> EvaluationResult {
        guard let i = position(of: key) else { return Self.notFound(key) }
        return withFlag(i) { $0.evaluate(context: context, type: type, now: now ?? clock()) }
    }

    /// Evaluates one flag as `evaluate(_:context:type:now:)` does and lends `body` the result's
    /// reply members, without making an `EvaluationResult` (see `EncodedResult`).
    public func withResult(
        _ key: String, context: @autoclosure () -> EvaluationContext, type: ValueType? = nil, now: Int64? = nil,
        _ body: (EncodedResult) -> Void
    ) {
        withResult(key, reading: context, type: type, now: now, body)
    }

    /// `withResult(_:context:type:now:_:)` taking the context as the closure it is, for a caller
    /// that passes its own on: handing an autoclosure on as `context()` wraps it in one more
    /// closure (34 instructions per request on the query socket, measured with callgrind).
    public func withResult(
        _ key: String, reading context: () -> EvaluationContext, type: ValueType? = nil, now: Int64? = nil,
        _ body: (EncodedResult) -> Void
    ) {
        guard let i = position(of: key) else { return Self.notFound(key).withEncoded(body) }
        return withFlag(i) { $0.withEncoded(context: context, type: type, now: now ?? clock(), position: i, body) }
    }

    /// Evaluates the given flags, in order, against this one snapshot. `context` is evaluated
    /// at most once, when the first flag that reads it is evaluated.
    public func evaluate(
        _ keys: [String], context: @autoclosure () -> EvaluationContext, type: ValueType? = nil, now: Int64? = nil
    ) -> [EvaluationResult] {
        let now = now ?? clock()
        var once = OnceContext()
        return keys.map { evaluate($0, context: once.value(context), type: type, now: now) }
    }

    /// Evaluates the given flags as `evaluate(_:context:type:now:)` does and lends `body` each
    /// result's reply members, in order.
    public func forEachResult(
        _ keys: [String], context: @autoclosure () -> EvaluationContext, type: ValueType? = nil, now: Int64? = nil,
        _ body: (EncodedResult) -> Void
    ) {
        forEachResult(keys, reading: context, type: type, now: now, body)
    }

    /// `forEachResult(_:context:type:now:_:)` taking the context as a closure (see `withResult(_:reading:type:now:_:)`).
    public func forEachResult(
        _ keys: [String], reading context: () -> EvaluationContext, type: ValueType? = nil, now: Int64? = nil,
        _ body: (EncodedResult) -> Void
    ) {
        let now = now ?? clock()
        var once = OnceContext()
        for key in keys { withResult(key, context: once.value(context), type: type, now: now, body) }
    }

    /// Evaluates every flag, in document order. `context` is evaluated at most once, when the
    /// first flag that reads it is evaluated.
    public func evaluateAll(context: @autoclosure () -> EvaluationContext, now: Int64? = nil) -> [EvaluationResult] {
        let now = now ?? clock()
        var once = OnceContext()
        return compiled.map { $0.evaluate(context: { once.value(context) }, type: nil, now: now) }
    }

    /// Evaluates every flag as `evaluateAll(context:now:)` does and lends `body` each result's
    /// reply members, in document order.
    public func forEachResult(context: @autoclosure () -> EvaluationContext, now: Int64? = nil, _ body: (EncodedResult) -> Void) {
        forEachResult(reading: context, now: now, body)
    }

    /// `forEachResult(context:now:_:)` taking the context as a closure (see `withResult(_:reading:type:now:_:)`).
    public func forEachResult(reading context: () -> EvaluationContext, now: Int64? = nil, _ body: (EncodedResult) -> Void) {
        let now = now ?? clock()
        var once = OnceContext()
        for i in compiled.indices {
            withFlag(i) { $0.withEncoded(context: { once.value(context) }, type: nil, now: now, position: i, body) }
        }
    }

    /// Lends `body` the compiled flag at `i`. It is borrowed, not retained: `compiled` holds it
    /// while this snapshot lives, and counting a reference would be an atomic operation on an
    /// object every thread shares.
    @inline(__always)
    private func withFlag<Result>(_ i: Int, _ body: (CompiledFlag) -> Result) -> Result {
        Unmanaged.passUnretained(compiled[i])._withUnsafeGuaranteedRef(body)
    }

    private static func notFound(_ key: String) -> EvaluationResult {
        EvaluationResult(
            flagKey: key, value: nil, variant: nil, reason: .error, errorCode: .flagNotFound,
            errorMessage: "flag '\(key)' is not defined")
    }

    /// What changed between `old` and this snapshot.
    public func diff(from old: Snapshot) -> SnapshotDiff {
        var added: [String] = []
        var changed: [String] = []
        for (i, info) in flags.enumerated() {
            if let j = old.lookup[info.key] {
                // A flag reused from `old` is unchanged; otherwise compare what `list` shows.
                guard compiled[i] !== old.compiled[j] else { continue }
                let before = old.flags[j]
                if before.fingerprint != info.fingerprint || before != info { changed.append(info.key) }
            } else {
                added.append(info.key)
            }
        }
        let removed = old.flags.map(\.key).filter { lookup[$0] == nil }
        return SnapshotDiff(added: added.sorted(), changed: changed.sorted(), removed: removed.sorted())
    }
}

/// A context asked for at most once, for evaluations of several flags.
private struct OnceContext {
    private var context: EvaluationContext?

    mutating func value(_ make: () -> EvaluationContext) -> EvaluationContext {
        if let context { return context }
        let made = make()
        context = made
        return made
    }
}
