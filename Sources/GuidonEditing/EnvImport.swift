/// Reads the feature switches teams keep in `.env` files today (`NEW_CHECKOUT_ENABLED=true`), for
/// `guidon import env`: each becomes a boolean flag whose default is the switch's value.
public enum EnvImport {
    /// One switch found.
    public struct Switch: Sendable, Hashable {
        /// The variable, as written (`NEW_CHECKOUT_ENABLED`).
        public var variable: String
        /// The flag key: the part of the name the pattern's `*` stands for, lower-cased (`new_checkout`).
        public var flag: String
        public var enabled: Bool
        /// 1-based line number.
        public var line: Int
    }

    /// A line that names a matching variable but could not be read as a switch.
    public struct Skipped: Sendable, Hashable {
        public var line: Int
        public var reason: String
    }

    /// The switches in `text` whose variable matches `pattern`: literal text around one `*`
    /// (default `*_ENABLED`; `FEATURE_*` takes every `FEATURE_…` variable). Values `true`/`false`
    /// (also `1`/`0`, `yes`/`no`, `on`/`off`, any case, optionally quoted) are read; comments,
    /// blank lines, `export ` prefixes and other variables are ignored; a matching variable
    /// with another value is reported as skipped.
    public static func scan(_ text: String, pattern: String = "*_ENABLED") -> (switches: [Switch], skipped: [Skipped]) {
        let parts = pattern.split(separator: "*", maxSplits: 1, omittingEmptySubsequences: false)
        let prefix = String(parts[0])
        let suffix = parts.count > 1 ? String(parts[1]) : ""
        var switches: [Switch] = []
        var skipped: [Skipped] = []
        var seen: [String: Int] = [:]
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            var line = Substring(String(raw).trimmingSpaces())
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = line.dropFirst(7).drop { $0 == " " } }
            guard let equals = line.firstIndex(of: "=") else { continue }
            let name = String(line[..<equals]).trimmingSpaces()
            guard name.count >= prefix.count + suffix.count, name.hasPrefix(prefix), name.hasSuffix(suffix) else { continue }
            let core = name.dropFirst(prefix.count).dropLast(suffix.count)
            guard !core.isEmpty else { continue }
            var value = String(line[line.index(after: equals)...]).trimmingSpaces()
            if let quote = value.first, quote == "\"" || quote == "'" {
                guard value.count >= 2, value.last == quote else {
                    skipped.append(Skipped(line: number, reason: "\(name): unterminated quoted value"))
                    continue
                }
                value = String(value.dropFirst().dropLast())
            } else if let hash = value.firstIndex(of: "#"), hash > value.startIndex,
                value[value.index(before: hash)] == " " || value[value.index(before: hash)] == "\t"
            {
                value = String(value[..<hash]).trimmingSpaces()
            }
            let enabled: Bool
            switch value.lowercased() {
            case "true", "1", "yes", "on": enabled = true
            case "false", "0", "no", "off": enabled = false
            default:
                skipped.append(Skipped(line: number, reason: "\(name)=\(value) is not true or false"))
                continue
            }
            let flag = core.lowercased()
            if let earlier = seen[flag] {
                // As a shell would: the last assignment wins.
                switches[earlier] = Switch(variable: name, flag: flag, enabled: enabled, line: number)
            } else {
                seen[flag] = switches.count
                switches.append(Switch(variable: name, flag: flag, enabled: enabled, line: number))
            }
        }
        return (switches, skipped)
    }
}
