internal import GuidonCalendar

/// A POSIX TZ string as found in a TZif footer (e.g. `CET-1CEST,M3.5.0,M10.5.0/3`): the offsets
/// and the yearly daylight-saving rule that apply after the file's last transition.
struct PosixTZRule: Sendable, Hashable {
    /// Seconds east of UTC (POSIX writes them west: `CET-1` is +3600 here).
    var standardOffset: Int32
    /// The daylight-saving part, when the zone has one.
    var daylight: Daylight?

    struct Daylight: Sendable, Hashable {
        var offset: Int32
        var start: DateRule
        /// Seconds after local midnight (standard time) at which daylight time starts (may be
        /// negative or past 24 h: TZif v3 allows −167…167 hours).
        var startTime: Int64
        var end: DateRule
        /// Seconds after local midnight (daylight time) at which standard time returns.
        var endTime: Int64
    }

    enum DateRule: Sendable, Hashable {
        /// `Jn`: day 1…365, February 29 never counted.
        case julianNoLeap(Int64)
        /// `n`: day 0…365, February 29 counted.
        case zeroBased(Int64)
        /// `Mm.w.d`: weekday `d` (0 = Sunday) of week `w` (1…5, 5 = the last) of month `m`.
        case monthWeekDay(month: Int64, week: Int64, weekday: Int64)

        /// Days since 1970-01-01 of this rule's date in `year`.
        func day(in year: Int64) -> Int64 {
            switch self {
            case .julianNoLeap(let n):
                return CivilDate.daysFromCivil(year: year, month: 1, day: 1) + n - 1 + (CivilDate.isLeapYear(year) && n >= 60 ? 1 : 0)
            case .zeroBased(let n):
                return CivilDate.daysFromCivil(year: year, month: 1, day: 1) + n
            case .monthWeekDay(let month, let week, let weekday):
                let first = CivilDate.daysFromCivil(year: year, month: month, day: 1)
                var day = CivilDate.floorMod(weekday - CivilDate.weekdayFromSunday(first), 7) + (week - 1) * 7
                if day >= CivilDate.daysInMonth(year: year, month: month) { day -= 7 }
                return first + day
            }
        }
    }

    /// The two offset changes the rule makes in `year`, in time order (none without daylight time).
    func transitions(in year: Int64) -> (TimeZoneRules.Transition, TimeZoneRules.Transition)? {
        guard let dst = daylight else { return nil }
        let start = dst.start.day(in: year) * 86_400 + dst.startTime - Int64(standardOffset)
        let end = dst.end.day(in: year) * 86_400 + dst.endTime - Int64(dst.offset)
        let on = TimeZoneRules.Transition(at: start, before: standardOffset, after: dst.offset)
        let off = TimeZoneRules.Transition(at: end, before: dst.offset, after: standardOffset)
        return start <= end ? (on, off) : (off, on)
    }

    // MARK: - Parsing

    init(parsing text: String) throws(TimeZoneError) {
        var p = Scanner(bytes: Array(text.utf8), text: text)
        try p.name()
        standardOffset = -(try p.offset(maxHours: 24))
        if p.atEnd {
            daylight = nil
            return
        }
        try p.name()
        var dstOffset = standardOffset + 3600
        if !p.atEnd, p.peek != UInt8(ascii: ",") { dstOffset = -(try p.offset(maxHours: 24)) }
        guard p.take(UInt8(ascii: ",")) else {
            throw TimeZoneError(.unsupported, "the TZ rule '\(text)' has daylight time but no rule for when it applies")
        }
        let start = try p.dateRule()
        let startTime = p.take(UInt8(ascii: "/")) ? Int64(try p.offset(maxHours: 167)) : 7200
        guard p.take(UInt8(ascii: ",")) else { throw p.error("expected ',' and the end rule") }
        let end = try p.dateRule()
        let endTime = p.take(UInt8(ascii: "/")) ? Int64(try p.offset(maxHours: 167)) : 7200
        guard p.atEnd else { throw p.error("unexpected text") }
        daylight = Daylight(offset: dstOffset, start: start, startTime: startTime, end: end, endTime: endTime)
    }

    private struct Scanner {
        let bytes: [UInt8]
        let text: String
        var i = 0

        var atEnd: Bool { i >= bytes.count }
        var peek: UInt8? { atEnd ? nil : bytes[i] }

        func error(_ why: String) -> TimeZoneError {
            TimeZoneError(.malformed, "invalid TZ rule '\(text)' at character \(i + 1): \(why)")
        }

        mutating func take(_ byte: UInt8) -> Bool {
            guard peek == byte else { return false }
            i += 1
            return true
        }

        /// `<…>` or three or more letters.
        mutating func name() throws(TimeZoneError) {
            if take(UInt8(ascii: "<")) {
                while let b = peek, b != UInt8(ascii: ">") { i += 1 }
                guard take(UInt8(ascii: ">")) else { throw error("unterminated '<' name") }
                return
            }
            let start = i
            while let b = peek, (b | 0x20) >= UInt8(ascii: "a") && (b | 0x20) <= UInt8(ascii: "z") { i += 1 }
            guard i - start >= 3 else { throw error("expected a zone abbreviation of three or more letters") }
        }

        mutating func number(max: Int64) throws(TimeZoneError) -> Int64 {
            let start = i
            var n: Int64 = 0
            while let b = peek, b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") {
                n = n * 10 + Int64(b - UInt8(ascii: "0"))
                guard n <= max else { throw error("number larger than \(max)") }
                i += 1
            }
            guard i > start else { throw error("expected a number") }
            return n
        }

        /// `[+-]hh[:mm[:ss]]` in seconds, as written (POSIX offsets are west-positive).
        mutating func offset(maxHours: Int64) throws(TimeZoneError) -> Int32 {
            var sign: Int64 = 1
            if take(UInt8(ascii: "-")) { sign = -1 } else { _ = take(UInt8(ascii: "+")) }
            var seconds = try number(max: maxHours) * 3600
            if take(UInt8(ascii: ":")) {
                seconds += try number(max: 59) * 60
                if take(UInt8(ascii: ":")) { seconds += try number(max: 59) }
            }
            return Int32(sign * seconds)
        }

        mutating func dateRule() throws(TimeZoneError) -> DateRule {
            if take(UInt8(ascii: "J")) {
                let n = try number(max: 365)
                guard n >= 1 else { throw error("Jn counts days from 1") }
                return .julianNoLeap(n)
            }
            if take(UInt8(ascii: "M")) {
                let month = try number(max: 12)
                guard month >= 1, take(UInt8(ascii: ".")) else { throw error("expected Mm.w.d") }
                let week = try number(max: 5)
                guard week >= 1, take(UInt8(ascii: ".")) else { throw error("expected Mm.w.d") }
                return .monthWeekDay(month: month, week: week, weekday: try number(max: 6))
            }
            return .zeroBased(try number(max: 365))
        }
    }
}
