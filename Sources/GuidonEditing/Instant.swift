/// Instants as flag files hold them (`$flagd.timestamp`: whole Unix seconds) and as people write
/// them (ISO 8601), without Foundation.
public enum Instant {
    /// Unix seconds for an ISO 8601 / RFC 3339 date-time: `2026-11-27T00:00:00Z`,
    /// `2026-11-27T09:30+01:00`, `2026-11-27 09:30:15.250Z` (fractions are dropped) or a date alone,
    /// `2026-11-27` (midnight UTC). A time without an offset is refused rather than guessed.
    /// `nil` when the text is none of these or names no real instant (`2026-02-30`).
    public static func parse(_ text: String) -> Int64? {
        var s = Substring(text.trimmingSpaces())
        func number(_ digits: Int) -> Int64? {
            guard s.count >= digits else { return nil }
            let part = s.prefix(digits)
            guard part.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int64(part) else { return nil }
            s = s.dropFirst(digits)
            return value
        }
        func take(_ c: Character) -> Bool {
            guard s.first == c else { return false }
            s = s.dropFirst()
            return true
        }
        guard let year = number(4), take("-"), let month = number(2), take("-"), let day = number(2) else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year) else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        if s.isEmpty { return days * 86_400 }
        guard take("T") || take("t") || take(" ") else { return nil }
        guard let hour = number(2), take(":"), let minute = number(2) else { return nil }
        var second: Int64 = 0
        if take(":") {
            guard let value = number(2) else { return nil }
            second = value
            if take(".") || take(",") {
                guard s.first?.isNumber == true else { return nil }
                while let c = s.first, c.isASCII, c.isNumber { s = s.dropFirst() }
            }
        }
        guard hour <= 23, minute <= 59, second <= 60 else { return nil }
        var offset: Int64
        if take("Z") || take("z") {
            offset = 0
        } else if let sign = s.first, sign == "+" || sign == "-" {
            s = s.dropFirst()
            guard let hours = number(2) else { return nil }
            _ = take(":")
            guard let minutes = number(2), hours <= 23, minutes <= 59 else { return nil }
            offset = (hours * 3600 + minutes * 60) * (sign == "-" ? -1 : 1)
        } else {
            return nil
        }
        guard s.isEmpty else { return nil }
        return days * 86_400 + hour * 3600 + minute * 60 + min(second, 59) - offset
    }

    /// `2026-11-27T00:00:00Z`.
    public static func format(_ unixSeconds: Int64) -> String {
        let days = unixSeconds >= 0 ? unixSeconds / 86_400 : (unixSeconds - 86_399) / 86_400
        let secondsOfDay = unixSeconds - days * 86_400
        let (y, m, d) = civilFromDays(days)
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secondsOfDay / 3600, 2)):\(pad(secondsOfDay / 60 % 60, 2)):\(pad(secondsOfDay % 60, 2))Z"
    }

    static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Howard Hinnant's days-from-civil (proleptic Gregorian calendar).
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civilFromDays(_ days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    private static func pad(_ n: Int64, _ width: Int) -> String {
        let s = String(n)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" || c == "\n" || c == "\r" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\n" || c == "\r" { s = s.dropLast() }
        return String(s)
    }
}
