/// One problem found in a flag document.
public struct Diagnostic: Sendable, Hashable, CustomStringConvertible {
    public enum Severity: String, Sendable { case error, warning }

    public var severity: Severity
    /// Where, as a JSON path into the document, e.g. `flags.beta.variants`
    /// (`$` for the document itself).
    public var path: String
    /// 1-based line and column of the offending text, when known.
    public var line: Int?
    public var column: Int?
    /// What is wrong and, where it helps, what would be right.
    public var message: String

    public init(severity: Severity, path: String, line: Int? = nil, column: Int? = nil, message: String) {
        self.severity = severity
        self.path = path
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String {
        var text = "\(severity): \(path)"
        if let line, let column { text += " (line \(line), column \(column))" }
        return text + ": " + message
    }
}

/// Every problem that kept a document from compiling.
public struct ValidationReport: Error, Sendable, CustomStringConvertible {
    public var errors: [Diagnostic]
    public var warnings: [Diagnostic]

    public init(errors: [Diagnostic], warnings: [Diagnostic] = []) {
        self.errors = errors
        self.warnings = warnings
    }

    public var description: String {
        (errors + warnings).map(\.description).joined(separator: "\n")
    }
}

/// How a document is compiled.
public struct CompileOptions: Sendable {
    public enum Mode: Sendable {
        /// Any problem rejects the document (the default).
        case strict
        /// flagd-compatible: targeting that does not compile is loaded anyway, answers as the
        /// reference evaluator does at evaluation time, and is reported as a warning.
        case lenient
    }

    public var mode: Mode
    /// The clock `$flagd.timestamp` is read from (Unix seconds) when an evaluation does not pass one.
    public var clock: @Sendable () -> Int64
    /// The features `{"entitled": …}` may name (those of the entitlements file served with the
    /// flags); `nil`: none is served. In strict mode an `entitled` of another feature (or with
    /// none served) is an error; in lenient mode a warning, and it answers `false`.
    public var features: Set<String>?

    public init(mode: Mode = .strict, clock: @escaping @Sendable () -> Int64 = systemClock, features: Set<String>? = nil) {
        self.mode = mode
        self.clock = clock
        self.features = features
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The wall clock, in whole Unix seconds.
@Sendable public func systemClock() -> Int64 { Int64(time(nil)) }
