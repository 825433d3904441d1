// Proleptic Gregorian calendar arithmetic on days since 1970-01-01, without Foundation
// (the algorithms of Howard Hinnant's "chrono-compatible low-level date algorithms").

@inline(__always)
func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}

@inline(__always)
func floorMod(_ a: Int64, _ b: Int64) -> Int64 { a - floorDiv(a, b) * b }

/// Days since 1970-01-01 of year `y`, month `m` (1…12), day `d` (1…31).
func daysFromCivil(_ y: Int64, _ m: Int64, _ d: Int64) -> Int64 {
    let y = m <= 2 ? y - 1 : y
    let era = floorDiv(y, 400)
    let yoe = y - era * 400
    let mp = (m + 9) % 12
    let doy = (153 * mp + 2) / 5 + d - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a count of days since 1970-01-01.
func civilFromDays(_ days: Int64) -> (year: Int64, month: Int64, day: Int64) {
    let z = days + 719_468
    let era = floorDiv(z, 146_097)
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
}

func isLeapYear(_ y: Int64) -> Bool { y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) }

func daysInMonth(_ y: Int64, _ m: Int64) -> Int64 {
    switch m {
    case 2: isLeapYear(y) ? 29 : 28
    case 4, 6, 9, 11: 30
    default: 31
    }
}

/// 0 = Sunday … 6 = Saturday (1970-01-01 was a Thursday).
func weekdayFromSunday(_ days: Int64) -> Int64 { floorMod(days + 4, 7) }
