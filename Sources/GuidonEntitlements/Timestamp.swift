internal import GuidonCalendar

/// RFC 3339 timestamps, read into whole Unix seconds and written back in UTC.
///
/// Entitlements compare instants with the evaluation's `now`, which is whole seconds (the
/// engine's `$flagd.timestamp` is too), so a fraction of a second is accepted and dropped.
enum Timestamp {
    /// The Unix time (seconds, fraction dropped) of an RFC 3339 `date-time`
    /// (`2027-06-30T00:00:00Z`, `2027-06-30t02:00:00.5+02:00`), or `nil` when `text` is not one.
    /// `T` and `Z` may be lower case, as RFC 3339 allows; a leap second (`:60`) counts as the
    /// first second of the next minute.
    static func parse(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { parse(bytes: $0) }
    }

    static func parse(bytes b: UnsafeBufferPointer<UInt8>) -> Int64? {
        var i = 0
        func digits(_ n: Int) -> Int64? {
            guard i + n <= b.count else { return nil }
            var value: Int64 = 0
            for _ in 0..<n {
                let d = b[i] &- UInt8(ascii: "0")
                guard d < 10 else { return nil }
                value = value * 10 + Int64(d)
                i += 1
            }
            return value
        }
        func expect(_ c: UInt8, or other: UInt8? = nil) -> Bool {
            guard i < b.count, b[i] == c || b[i] == other else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), expect(UInt8(ascii: "-")), let month = digits(2), expect(UInt8(ascii: "-")),
            let day = digits(2), expect(UInt8(ascii: "T"), or: UInt8(ascii: "t")),
            let hour = digits(2), expect(UInt8(ascii: ":")), let minute = digits(2), expect(UInt8(ascii: ":")),
            let second = digits(2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= CivilDate.daysInMonth(year: year, month: month), hour <= 23, minute <= 59,
            second <= 60
        else { return nil }
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            let start = i
            while i < b.count, b[i] &- UInt8(ascii: "0") < 10 { i += 1 }
            guard i > start else { return nil }
        }
        guard i < b.count else { return nil }
        var offset: Int64 = 0
        switch b[i] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            i += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            let sign: Int64 = b[i] == UInt8(ascii: "-") ? -1 : 1
            i += 1
            guard let hours = digits(2), expect(UInt8(ascii: ":")), let minutes = digits(2), hours <= 23, minutes <= 59
            else { return nil }
            offset = sign * (hours * 3600 + minutes * 60)
        default:
            return nil
        }
        guard i == b.count else { return nil }
        return CivilDate.daysFromCivil(year: year, month: month, day: day) * 86_400 + hour * 3600 + minute * 60 + second - offset
    }

    /// `seconds` as `YYYY-MM-DDTHH:MM:SSZ` (years 0–9999; others are clamped, which no parsed
    /// timestamp produces).
    static func write(_ seconds: Int64, into out: inout [UInt8]) {
        let clamped = min(max(seconds, -62_167_219_200), 253_402_300_799)  // 0000-01-01 … 9999-12-31T23:59:59
        let (days, secondOfDay) = CivilDate.split(unixSeconds: clamped)
        let (year, month, day) = CivilDate.civilFromDays(days)
        func two(_ v: Int64) {
            out.append(UInt8(ascii: "0") + UInt8(v / 10))
            out.append(UInt8(ascii: "0") + UInt8(v % 10))
        }
        two(year / 100)
        two(year % 100)
        out.append(UInt8(ascii: "-"))
        two(month)
        out.append(UInt8(ascii: "-"))
        two(day)
        out.append(UInt8(ascii: "T"))
        two(secondOfDay / 3600)
        out.append(UInt8(ascii: ":"))
        two(secondOfDay / 60 % 60)
        out.append(UInt8(ascii: ":"))
        two(secondOfDay % 60)
        out.append(UInt8(ascii: "Z"))
    }

    static func string(_ seconds: Int64) -> String {
        var out: [UInt8] = []
        write(seconds, into: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
