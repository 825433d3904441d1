import GuidonJSON

/// One step into a JSON document.
public enum PathSegment: Sendable, Hashable {
    case key(String)
    case index(Int)
}

/// Renders a path the way diagnostics show it: `flags.beta.targeting.if[0].in[1]`,
/// with keys that are not plain words quoted (`flags["with space"]`); `$` for the root.
public func renderPath(_ path: [PathSegment]) -> String {
    if path.isEmpty { return "$" }
    var out = ""
    for segment in path {
        switch segment {
        case .index(let i):
            out += "[\(i)]"
        case .key(let k):
            if isPlainKey(k) {
                if !out.isEmpty { out += "." }
                out += k
            } else {
                out += "[" + JSONWriter.string(.string(k)) + "]"
            }
        }
    }
    return out
}

private func isPlainKey(_ key: String) -> Bool {
    guard !key.isEmpty else { return false }
    return key.utf8.allSatisfy { b in
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
            || JS.isDigit(b) || b == UInt8(ascii: "_") || b == UInt8(ascii: "-") || b == UInt8(ascii: "$")
            || b == UInt8(ascii: "!") || b == UInt8(ascii: "=") || b == UInt8(ascii: "<") || b == UInt8(ascii: ">")
            || b == UInt8(ascii: "+") || b == UInt8(ascii: "*") || b == UInt8(ascii: "/") || b == UInt8(ascii: "%")
            || b == UInt8(ascii: "?") || b == UInt8(ascii: ":")
    }
}

/// Finds where a path's value starts in JSON text that is known to parse. Used only when
/// reporting a problem, so it rescans instead of keeping positions for every value.
public struct SourceLocator {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// 1-based line and column of the value at `path`, or of the deepest part of it that exists.
    public func lineColumn(of path: [PathSegment]) -> (line: Int, column: Int)? {
        guard let offset = offset(of: path) else { return nil }
        return bytes.withUnsafeBytes { jsonLineColumn(of: offset, in: $0) }
    }

    /// The byte offset of the value at `path`, or of the deepest part of it that exists, walking
    /// from the value that starts at `start` (the document's, by default): a caller that knows
    /// where a member's text is need not rescan what comes before it.
    public func offset(of path: [PathSegment], from start: Int = 0) -> Int? {
        var i = start
        skipSpace(&i)
        for segment in path {
            guard i < bytes.count else { return nil }
            switch segment {
            case .key(let wanted):
                guard bytes[i] == UInt8(ascii: "{") else { return i }
                i += 1
                while true {
                    skipSpace(&i)
                    guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { return nil }
                    let keyStart = i
                    skipString(&i)
                    let key = try? JSONParser().parse(Array(bytes[keyStart..<i]))
                    skipSpace(&i)
                    i += 1  // ':'
                    skipSpace(&i)
                    if key == .string(wanted) { break }
                    skipValue(&i)
                    skipSpace(&i)
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ",") else { return nil }
                    i += 1
                }
            case .index(let wanted):
                guard bytes[i] == UInt8(ascii: "[") else { return i }
                i += 1
                for _ in 0..<wanted {
                    skipSpace(&i)
                    skipValue(&i)
                    skipSpace(&i)
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ",") else { return nil }
                    i += 1
                }
                skipSpace(&i)
            }
        }
        return i
    }

    private func skipSpace(_ i: inout Int) {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    private func skipString(_ i: inout Int) {
        i += 1
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\") {
                i += 2
                continue
            }
            if bytes[i] == UInt8(ascii: "\"") {
                i += 1
                return
            }
            i += 1
        }
    }

    private func skipValue(_ i: inout Int) {
        guard i < bytes.count else { return }
        switch bytes[i] {
        case UInt8(ascii: "\""):
            skipString(&i)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            while i < bytes.count {
                switch bytes[i] {
                case UInt8(ascii: "\""):
                    skipString(&i)
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 {
                        i += 1
                        return
                    }
                default:
                    break
                }
                i += 1
            }
        default:
            while i < bytes.count {
                switch bytes[i] {
                case UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x0A, 0x0D, 0x09: return
                default: i += 1
                }
            }
        }
    }
}
