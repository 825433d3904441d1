internal import GuidonCalendar

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
        guard (1...12).contains(month), day >= 1, day <= CivilDate.daysInMonth(year: year, month: month) else { return nil }
        let days = CivilDate.daysFromCivil(year: year, month: month, day: day)
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
        CivilDate.rfc3339UTC(unixSeconds)
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
