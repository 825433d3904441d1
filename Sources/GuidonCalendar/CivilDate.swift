// Proleptic Gregorian calendar arithmetic on days since 1970-01-01, without Foundation
// (the algorithms of Howard Hinnant's "chrono-compatible low-level date algorithms").
// Pure: no I/O, no allocation except in `pad` and `rfc3339UTC`, which build strings.

/// Civil (proleptic Gregorian) dates as days since 1970-01-01, and UTC date-times as text.
/// Each module keeps its own RFC 3339 parsing; only the arithmetic lives here.
public enum CivilDate {
    /// `a / b` rounded towards negative infinity (`b` must not be 0).
    @inlinable @inline(__always)
    public static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    /// `a - floorDiv(a, b) * b`: the remainder with the sign of `b`.
    @inlinable @inline(__always)
    public static func floorMod(_ a: Int64, _ b: Int64) -> Int64 { a - floorDiv(a, b) * b }

    /// Days since 1970-01-01 of year `year`, month `month` (1…12), day `day` (1…31); the day is
    /// not checked against the month (callers check it with `daysInMonth`).
    @inlinable
    public static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = floorDiv(y, 400)
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * ((month + 9) % 12) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The (year, month 1…12, day 1…31) of a count of days since 1970-01-01; the inverse of
    /// `daysFromCivil`.
    @inlinable
    public static func civilFromDays(_ days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = floorDiv(z, 146_097)
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    @inlinable
    public static func isLeapYear(_ year: Int64) -> Bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    /// 28…31 for `month` 1…12 of `year`.
    @inlinable
    public static func daysInMonth(year: Int64, month: Int64) -> Int64 {
        switch month {
        case 2: isLeapYear(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// 0 = Sunday … 6 = Saturday (1970-01-01 was a Thursday).
    @inlinable
    public static func weekdayFromSunday(_ days: Int64) -> Int64 { floorMod(days + 4, 7) }

    /// Unix seconds split into whole days since 1970-01-01 and the second of that day (0…86 399).
    @inlinable
    public static func split(unixSeconds: Int64) -> (days: Int64, secondOfDay: Int64) {
        let days = floorDiv(unixSeconds, 86_400)
        return (days, unixSeconds - days * 86_400)
    }

    /// `n` in decimal, left-padded with zeros to `width` characters.
    public static func pad(_ n: Int64, _ width: Int) -> String {
        let s = String(n)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    /// `2026-11-27T09:30:00Z`: Unix seconds as an RFC 3339 date-time in UTC.
    public static func rfc3339UTC(_ unixSeconds: Int64) -> String {
        let (days, secondOfDay) = split(unixSeconds: unixSeconds)
        let (y, m, d) = civilFromDays(days)
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2))Z"
    }
}
