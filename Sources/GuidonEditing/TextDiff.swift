/// Unified diffs (as `diff -u` prints them) of two versions of a document, for `--dry-run` and
/// `guidon import env`: what a person reviews before a change is written.
public enum TextDiff {
    /// The differences between `old` and `new` as a unified diff with `context` lines around each
    /// change; empty when they are equal. Lines are compared whole; the longest common
    /// subsequence is found for the changed region between the common head and tail (edits
    /// change one flag, so that region is small; past a million line pairs it is shown whole).
    public static func unified(_ old: [UInt8], _ new: [UInt8], path: String, context: Int = 3) -> String {
        let a = lines(old)
        let b = lines(new)
        var head = 0
        while head < a.count, head < b.count, a[head] == b[head] { head += 1 }
        var tail = 0
        while tail < a.count - head, tail < b.count - head, a[a.count - 1 - tail] == b[b.count - 1 - tail] { tail += 1 }
        if head == a.count && head == b.count { return "" }

        // One operation per line: " " kept, "-" removed, "+" added, with its line in each text.
        var ops: [(kind: Character, old: Int, new: Int)] = []
        for i in 0..<head { ops.append((" ", i, i)) }
        let middleA = Array(a[head..<(a.count - tail)])
        let middleB = Array(b[head..<(b.count - tail)])
        for op in middle(middleA, middleB) { ops.append((op.kind, head + op.old, head + op.new)) }
        for i in 0..<tail { ops.append((" ", a.count - tail + i, b.count - tail + i)) }

        var out = "--- a/\(path)\n+++ b/\(path)\n"
        var i = 0
        while i < ops.count {
            guard ops[i].kind != " " else {
                i += 1
                continue
            }
            // A hunk: from `context` lines before this change to `context` lines after the last
            // change that follows within 2 × context lines.
            let start = max(0, i - context)
            var end = i
            var j = i
            while j < ops.count {
                if ops[j].kind != " " { end = j }
                if j - end > 2 * context { break }
                j += 1
            }
            let stop = min(ops.count, end + context + 1)
            let hunk = ops[start..<stop]
            let oldCount = hunk.filter { $0.kind != "+" }.count
            let newCount = hunk.filter { $0.kind != "-" }.count
            let oldStart = hunk.first { $0.kind != "+" }.map { $0.old + 1 } ?? (hunk.first!.old)
            let newStart = hunk.first { $0.kind != "-" }.map { $0.new + 1 } ?? (hunk.first!.new)
            out += "@@ -\(oldStart),\(oldCount) +\(newStart),\(newCount) @@\n"
            for op in hunk {
                let text = op.kind == "+" ? b[op.new] : a[op.old]
                out += "\(op.kind)\(String(decoding: text, as: UTF8.self))\n"
            }
            i = stop
        }
        return out
    }

    private static func lines(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var result = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        if result.last?.isEmpty == true { result.removeLast() }
        return result.map { $0.last == 0x0D ? $0.dropLast() : $0 }
    }

    /// The edit script of two line lists (their longest common subsequence).
    private static func middle(_ a: [ArraySlice<UInt8>], _ b: [ArraySlice<UInt8>]) -> [(kind: Character, old: Int, new: Int)] {
        guard a.count * b.count <= 1_000_000, !a.isEmpty, !b.isEmpty else {
            return a.indices.map { ("-", $0, 0) } + b.indices.map { ("+", a.count, $0) }
        }
        // lengths[i][j]: the LCS of a[i...] and b[j...].
        var lengths = [[Int32]](repeating: [Int32](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in stride(from: a.count - 1, through: 0, by: -1) {
            for j in stride(from: b.count - 1, through: 0, by: -1) {
                lengths[i][j] = a[i] == b[j] ? lengths[i + 1][j + 1] + 1 : max(lengths[i + 1][j], lengths[i][j + 1])
            }
        }
        var ops: [(kind: Character, old: Int, new: Int)] = []
        var i = 0
        var j = 0
        while i < a.count || j < b.count {
            if i < a.count, j < b.count, a[i] == b[j] {
                ops.append((" ", i, j))
                i += 1
                j += 1
            } else if i < a.count, j == b.count || lengths[i + 1][j] >= lengths[i][j + 1] {
                ops.append(("-", i, j))
                i += 1
            } else {
                ops.append(("+", i, j))
                j += 1
            }
        }
        return ops
    }
}
