import GuidonEngine
import GuidonJSON

/// One problem found in an entitlements document, before it is located and classified.
struct Problem: Sendable {
    enum Kind: Sendable {
        /// Always rejects the document.
        case error
        /// Rejects it in strict mode; a warning in lenient mode (a reference to a feature or plan
        /// that does not exist, a configuration that does not match its default).
        case strict
        /// Never rejects it.
        case warning
    }

    var kind: Kind
    var path: [PathSegment]
    var message: String
}

/// Collects problems as a compile finds them.
struct Problems {
    var list: [Problem] = []

    mutating func error(_ path: [PathSegment], _ message: String) {
        list.append(Problem(kind: .error, path: path, message: message))
    }

    mutating func strict(_ path: [PathSegment], _ message: String) {
        list.append(Problem(kind: .strict, path: path, message: message))
    }

    mutating func warning(_ path: [PathSegment], _ message: String) {
        list.append(Problem(kind: .warning, path: path, message: message))
    }

    var count: Int { list.count }
    /// Problems that reject the document in either mode (a `.strict` problem is a reference
    /// that lenient mode drops, so what it was found in can still be compiled).
    var errorCount: Int { list.count { $0.kind == .error } }
}

/// Turns problems into diagnostics with line and column.
///
/// A problem inside a tenant is looked for from where that tenant's text starts, and lines are
/// counted in one pass over the document for all problems together: a document of 100,000
/// tenants each with a problem is reported in time linear in its size (the engine's
/// `SourceLocator.lineColumn` rescans from the start for each one).
struct DiagnosticLocator {
    let bytes: [UInt8]

    /// `problems`, each with the offset of the value whose text the search starts from (`0`:
    /// the document) and how many leading path segments lead to that value.
    func diagnostics(
        _ problems: [(problem: Problem, anchor: Int, depth: Int)], mode: CompileOptions.Mode
    ) -> (errors: [Diagnostic], warnings: [Diagnostic]) {
        let locator = SourceLocator(bytes: bytes)
        let offsets = problems.map { item in
            locator.offset(of: Array(item.problem.path.dropFirst(item.depth)), from: item.anchor)
        }
        // Line and column for every offset, in one sweep over the text in offset order.
        var positions = [(line: Int, column: Int)?](repeating: nil, count: problems.count)
        let order = offsets.indices.filter { offsets[$0] != nil }.sorted { offsets[$0]! < offsets[$1]! }
        var line = 1
        var lineStart = 0
        var i = 0
        bytes.withUnsafeBufferPointer { text in
            for index in order {
                let offset = min(offsets[index]!, text.count)
                while i < offset {
                    if text[i] == UInt8(ascii: "\n") {
                        line += 1
                        lineStart = i + 1
                    }
                    i += 1
                }
                positions[index] = (line, offset - lineStart + 1)
            }
        }
        var errors: [Diagnostic] = []
        var warnings: [Diagnostic] = []
        for (index, item) in problems.enumerated() {
            let severity: Diagnostic.Severity
            switch item.problem.kind {
            case .error: severity = .error
            case .strict: severity = mode == .strict ? .error : .warning
            case .warning: severity = .warning
            }
            let diagnostic = Diagnostic(
                severity: severity, path: renderPath(item.problem.path), line: positions[index]?.line,
                column: positions[index]?.column, message: item.problem.message)
            if severity == .error { errors.append(diagnostic) } else { warnings.append(diagnostic) }
        }
        return (errors, warnings)
    }
}

// MARK: Message helpers

func article(_ typeName: String) -> String {
    switch typeName.first {
    case "a", "e", "i", "o", "u": "an \(typeName)"
    default: "a \(typeName)"
    }
}

func quoted(_ s: String) -> String { JSONWriter.string(.string(s)) }

func quotedList(_ names: some Sequence<String>) -> String {
    names.map(quoted).joined(separator: ", ")
}

/// `; did you mean "x"?` when one of `candidates` is within two edits of `name`.
func suggestion(for name: String, among candidates: some Sequence<String>) -> String {
    var best: (String, Int)?
    for candidate in candidates {
        let distance = editDistance(candidate, name)
        if distance <= 2, best.map({ distance < $0.1 }) ?? true { best = (candidate, distance) }
    }
    return best.map { "; did you mean \(quoted($0.0))?" } ?? ""
}

/// Levenshtein distance over Unicode scalars (names are short).
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.unicodeScalars)
    let b = Array(b.unicodeScalars)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            current[j] = Swift.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}
