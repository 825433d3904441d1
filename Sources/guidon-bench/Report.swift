import GuidonJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A goal a figure is checked against.
enum Goal {
    /// guidond ÷ floor ≤ x (latencies).
    case floorRatioAtMost(Double)
    /// guidond ÷ floor ≥ x (rates).
    case floorRatioAtLeast(Double)
    /// guidond ÷ Redis ≥ x (rates).
    case redisRatioAtLeast(Double)
    /// guidond ÷ the figure's reference (e.g. steady state) ≤ x.
    case referenceRatioAtMost(Double, reference: String)
    /// guidond ÷ the figure's reference ≥ x (rates).
    case referenceRatioAtLeast(Double, reference: String)
    case atMost(Double)
    case atLeast(Double)

    func text(unit: Unit) -> String {
        switch self {
        case .floorRatioAtMost(let x): "≤ \(formatRatio(x)) floor"
        case .floorRatioAtLeast(let x): "≥ \(formatRatio(x)) floor"
        case .redisRatioAtLeast(let x): "≥ \(formatRatio(x)) redis"
        case .referenceRatioAtMost(let x, let reference): "≤ \(formatRatio(x)) \(reference)"
        case .referenceRatioAtLeast(let x, let reference): "≥ \(formatRatio(x)) \(reference)"
        case .atMost(let x): "≤ \(unit.format(x))"
        case .atLeast(let x): "≥ \(unit.format(x))"
        }
    }
}

enum Unit: String {
    case microseconds = "µs"
    case milliseconds = "ms"
    case perSecond = "/s"
    case mebibytes = "MiB"
    case count = ""
    case ratio = "×"

    func format(_ value: Double) -> String {
        switch self {
        case .microseconds, .milliseconds:
            value >= 100 ? formatFixed(value, 0) : value >= 10 ? formatFixed(value, 1) : formatFixed(value, 2)
        case .perSecond: formatGrouped(value)
        case .mebibytes: formatFixed(value, 1)
        case .count: formatGrouped(value)
        case .ratio: formatFixed(value, 3) + "×"
        }
    }
}

/// One line of the report.
struct Figure {
    var section: String
    var name: String
    var unit: Unit
    var guidond: Double?
    var floor: Double? = nil
    var redis: Double? = nil
    /// The figure a `.referenceRatioAtMost` / `.referenceRatioAtLeast` goal compares with.
    var reference: Double? = nil
    var goal: Goal? = nil

    var floorRatio: Double? { ratio(guidond, floor) }
    var redisRatio: Double? { ratio(guidond, redis) }

    /// `true` pass, `false` miss, `nil` no goal or nothing measured.
    var passed: Bool? {
        guard let goal, let value = guidond else { return nil }
        switch goal {
        case .floorRatioAtMost(let x): return floorRatio.map { $0 <= x }
        case .floorRatioAtLeast(let x): return floorRatio.map { $0 >= x }
        case .redisRatioAtLeast(let x): return redisRatio.map { $0 >= x }
        case .referenceRatioAtMost(let x, _): return ratio(value, reference).map { $0 <= x }
        case .referenceRatioAtLeast(let x, _): return ratio(value, reference).map { $0 >= x }
        case .atMost(let x): return value <= x
        case .atLeast(let x): return value >= x
        }
    }

    private func ratio(_ a: Double?, _ b: Double?) -> Double? {
        guard let a, let b, b > 0 else { return nil }
        return a / b
    }
}

struct Report {
    var figures: [Figure] = []
    var notes: [String] = []
    var command: String = ""

    mutating func add(_ figure: Figure) { figures.append(figure) }

    func table() -> String {
        let header = ["figure", "guidond", "floor", "×floor", "redis", "×redis", "target", ""]
        var rows: [[String]] = []
        var sections: [Int: String] = [:]
        var lastSection = ""
        for figure in figures {
            if figure.section != lastSection {
                sections[rows.count] = figure.section
                lastSection = figure.section
            }
            let name = figure.unit == .count || figure.unit == .ratio ? figure.name : "\(figure.name) (\(figure.unit.rawValue))"
            rows.append([
                name,
                figure.guidond.map(figure.unit.format) ?? "—",
                figure.floor.map(figure.unit.format) ?? "",
                figure.floorRatio.map(formatRatio) ?? "",
                figure.redis.map(figure.unit.format) ?? "",
                figure.redisRatio.map(formatRatio) ?? "",
                figure.goal.map { $0.text(unit: figure.unit) } ?? "",
                figure.passed.map { $0 ? "pass" : "MISS" } ?? "",
            ])
        }
        var widths = header.map { $0.count }
        for row in rows {
            for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                let pad = String(repeating: " ", count: widths[i] - cell.count)
                return i == 0 || i == 6 || i == 7 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }
        var out = [line(header), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")]
        for (i, row) in rows.enumerated() {
            if let section = sections[i] { out.append("[\(section)]") }
            out.append(line(row))
        }
        for note in notes { out.append("note: \(note)") }
        return out.joined(separator: "\n")
    }

    func json(machine: Machine) -> JSONValue {
        func number(_ x: Double?) -> JSONValue { x.map { .double($0) } ?? .null }
        let figures: [JSONValue] = figures.map { f in
            var o: JSONObject = [
                "section": .string(f.section), "name": .string(f.name), "unit": .string(f.unit.rawValue),
                "guidond": number(f.guidond), "floor": number(f.floor), "redis": number(f.redis),
                "floorRatio": number(f.floorRatio), "redisRatio": number(f.redisRatio),
            ]
            if let goal = f.goal { o["target"] = .string(goal.text(unit: f.unit)) }
            if let passed = f.passed { o["status"] = .string(passed ? "pass" : "miss") }
            return .object(o)
        }
        return [
            "command": .string(command),
            "machine": ["nproc": .int(Int64(machine.processors)), "cpu": .string(machine.cpuModel)],
            "figures": .array(figures),
            "notes": .array(notes.map { .string($0) }),
        ]
    }
}

struct Machine {
    var processors: Int
    var cpuModel: String

    static func current() -> Machine {
        let cpuinfo = readTextFile("/proc/cpuinfo") ?? ""
        var model = "unknown"
        for line in cpuinfo.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                model = line[line.index(after: colon)...].trimmingPrefix(" ").description
            }
            break
        }
        return Machine(processors: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), cpuModel: model)
    }

    /// The 1-minute load average: how busy the machine was around the run.
    static func loadAverage() -> String {
        readTextFile("/proc/loadavg")?.split(separator: " ").first.map(String.init) ?? "?"
    }
}

func formatFixed(_ value: Double, _ decimals: Int) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    var text = String(rounded)
    if let dot = text.firstIndex(of: ".") {
        let fraction = text[text.index(after: dot)...]
        if decimals == 0 {
            text = String(text[..<dot])
        } else if fraction.count < decimals {
            text += String(repeating: "0", count: decimals - fraction.count)
        }
    }
    return text
}

/// Whole numbers with thousands separators (`1,234,567`).
func formatGrouped(_ value: Double) -> String {
    let digits = String(Int64(value.rounded()).magnitude)
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return value < 0 ? "-" + out : out
}

func formatRatio(_ x: Double) -> String { formatFixed(x, 2) + "×" }
