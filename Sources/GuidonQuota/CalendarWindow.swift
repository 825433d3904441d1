internal import GuidonCalendar

/// A limit's period: calendar windows in the zone's local time.
public enum WindowUnit: String, Sendable, CaseIterable, Hashable {
    case minute, hour, day, week, month
}

/// One calendar window, `[start, end)` in Unix seconds; `end` is the `resetAt` of its counts.
public struct CalendarWindow: Sendable, Hashable, CustomStringConvertible {
    public var unit: WindowUnit
    public var start: Int64
    public var end: Int64

    public init(unit: WindowUnit, start: Int64, end: Int64) {
        self.unit = unit
        self.start = start
        self.end = end
    }

    public var description: String { "\(unit) [\(start), \(end))" }
}

/// The windows last computed for one zone, one per unit: a connection answering `consume` after
/// `consume` asks for the same day's window thousands of times a second, and a window holds for
/// every instant in `[start, end)` (windows tile time), so it is computed again only when the
/// instant leaves it. Pure arithmetic, no I/O; a value each caller keeps, for one zone at a time:
/// `reset` it when the zone changes.
public struct WindowMemo: Sendable {
    // One per unit (stored properties, not an array: no reference counting, no bounds checks).
    // An empty range (`start == end`) holds nothing.
    private var minute = CalendarWindow(unit: .minute, start: 0, end: 0)
    private var hour = CalendarWindow(unit: .hour, start: 0, end: 0)
    private var day = CalendarWindow(unit: .day, start: 0, end: 0)
    private var week = CalendarWindow(unit: .week, start: 0, end: 0)
    private var month = CalendarWindow(unit: .month, start: 0, end: 0)

    public init() {}

    /// Forgets every window (the zone changed).
    public mutating func reset() { self = WindowMemo() }

    /// `zone.window(unit, containing: instant)`, from the memo when it holds. `zone` must be
    /// the one of every call since the last `reset`.
    @inline(__always)
    public mutating func window(_ unit: WindowUnit, containing instant: Int64, in zone: TimeZoneRules) -> CalendarWindow {
        switch unit {
        case .minute: Self.update(&minute, instant, zone)
        case .hour: Self.update(&hour, instant, zone)
        case .day: Self.update(&day, instant, zone)
        case .week: Self.update(&week, instant, zone)
        case .month: Self.update(&month, instant, zone)
        }
    }

    @inline(__always)
    private static func update(_ known: inout CalendarWindow, _ instant: Int64, _ zone: TimeZoneRules) -> CalendarWindow {
        if known.start <= instant && instant < known.end { return known }
        known = zone.window(known.unit, containing: instant)
        return known
    }

    /// The windows of `limits` at `instant`, into `windows` (replacing what it held).
    public mutating func windows(of limits: [QuotaLimit], at instant: Int64, in zone: TimeZoneRules, into windows: inout [CalendarWindow]) {
        if windows.count != limits.count {
            // A feature with another number of limits than the last: storage sized once more.
            windows = Array(repeating: CalendarWindow(unit: .minute, start: 0, end: 0), count: limits.count)
        }
        windows.withUnsafeMutableBufferPointer { out in
            limits.withUnsafeBufferPointer { limits in
                for i in limits.indices { out[i] = window(limits[i].per, containing: instant, in: zone) }
            }
        }
    }
}

extension TimeZoneRules {
    /// The instants windows are computed for: years 1 to 9999 (others are clamped to them).
    public static let supportedInstants: ClosedRange<Int64> = CivilDate.daysFromCivil(year: 1, month: 1, day: 1) * 86_400...CivilDate.daysFromCivil(year: 10_000, month: 1, day: 1) * 86_400 - 1

    /// The `unit` window holding instant `t` (Unix seconds), in this zone's local time.
    ///
    /// A window begins where the local clock reaches a boundary (a whole minute, hour, local
    /// midnight, Monday's midnight, the first of a month) and ends at the next such place; so:
    /// - a day is 23 or 25 hours long on the days the clock changes, and a month one hour
    ///   shorter or longer;
    /// - a boundary that the clock skips (02:00 on a spring-forward night) is placed at the
    ///   first instant that exists after it, the moment of the change (so the hour 02:00–03:00
    ///   has no window, and the 01:00 window ends when the clock jumps to 03:00);
    /// - when the clock goes back onto a boundary (03:00 → 02:00) that is a new boundary: the
    ///   repeated hour is a window of its own; when it goes back to a time between boundaries
    ///   (Lord Howe: 02:00 → 01:30) the window simply goes on (its hour window lasts 90 minutes).
    /// Windows therefore tile time: each one's `end` is the next one's `start`.
    public func window(_ unit: WindowUnit, containing instant: Int64) -> CalendarWindow {
        let t = min(max(instant, Self.supportedInstants.lowerBound), Self.supportedInstants.upperBound)
        // The common case: no change of offset between the window's boundaries and `t`.
        let offset = Int64(self.offset(at: t))
        let boundary = unit.floor(t + offset)
        let start = boundary - offset
        let end = unit.next(boundary) - offset
        if transition(atOrBefore: t).map({ start >= $0.at }) ?? true, transition(after: t).map({ end < $0.at }) ?? true {
            return CalendarWindow(unit: unit, start: start, end: end)
        }
        return CalendarWindow(unit: unit, start: windowStart(unit, t), end: windowEnd(unit, t))
    }

    /// The latest boundary at or before `t`.
    private func windowStart(_ unit: WindowUnit, _ t: Int64) -> Int64 {
        var u = t
        // Each round steps back over one change of offset that is not itself a boundary; a
        // month holds a few at most.
        for _ in 0..<64 {
            let offset = Int64(self.offset(at: u))
            let boundary = unit.floor(u + offset)
            let continuous = boundary - offset
            guard let change = transition(atOrBefore: u), continuous < change.at else { return continuous }
            if unit.isBoundary(change) { return change.at }
            u = change.at - 1
        }
        return u
    }

    /// The earliest boundary after `t`.
    private func windowEnd(_ unit: WindowUnit, _ t: Int64) -> Int64 {
        var u = t
        var offset = Int64(self.offset(at: t))
        var target = unit.next(unit.floor(t + offset))
        for _ in 0..<64 {
            let continuous = target - offset
            guard let change = transition(after: u), continuous >= change.at else { return continuous }
            if unit.isBoundary(change) { return change.at }
            u = change.at
            offset = Int64(change.after)
            target = unit.next(unit.floor(u + offset))
        }
        return target - offset
    }
}

extension WindowUnit {
    /// The boundary at or before local time `local` (seconds since 1970-01-01T00:00 local).
    func floor(_ local: Int64) -> Int64 {
        switch self {
        case .minute: return CivilDate.floorDiv(local, 60) * 60
        case .hour: return CivilDate.floorDiv(local, 3600) * 3600
        case .day: return CivilDate.floorDiv(local, 86_400) * 86_400
        case .week:
            let days = CivilDate.floorDiv(local, 86_400)
            return (days - CivilDate.floorMod(days + 3, 7)) * 86_400  // 1970-01-01 was a Thursday: Monday-based index 3
        case .month:
            let date = CivilDate.civilFromDays(CivilDate.floorDiv(local, 86_400))
            return CivilDate.daysFromCivil(year: date.year, month: date.month, day: 1) * 86_400
        }
    }

    /// The boundary after boundary `local`.
    func next(_ local: Int64) -> Int64 {
        switch self {
        case .minute: return local + 60
        case .hour: return local + 3600
        case .day: return local + 86_400
        case .week: return local + 7 * 86_400
        case .month:
            let date = CivilDate.civilFromDays(CivilDate.floorDiv(local, 86_400))
            return (date.month == 12 ? CivilDate.daysFromCivil(year: date.year + 1, month: 1, day: 1) : CivilDate.daysFromCivil(year: date.year, month: date.month + 1, day: 1)) * 86_400
        }
    }

    /// Whether the clock reaches a boundary at a change of offset: jumping forward over or onto
    /// one, or back exactly onto one.
    func isBoundary(_ change: TimeZoneRules.Transition) -> Bool {
        let landing = change.at + Int64(change.after)
        if change.after > change.before {
            return floor(landing) >= change.at + Int64(change.before)
        }
        return floor(landing) == landing
    }
}
