import GuidonCalendar
import Testing

@Suite struct CivilDateTests {
    @Test func roundTripsDaysThroughCivilDatesOverAWideRange() {
        // About ±2 800 years around 1970 (1 000 000 days each way), every day: each date is
        // valid, the next day follows it, and it converts back to the same count.
        // Plain comparisons in the loop (an #expect per day makes a debug build slow); the first
        // failure is recorded with the day it happened on.
        var previous = CivilDate.civilFromDays(-1_000_001)
        for days in Int64(-1_000_000)...1_000_000 {
            let date = CivilDate.civilFromDays(days)
            let valid = (1...12).contains(date.month) && date.day >= 1
                && date.day <= CivilDate.daysInMonth(year: date.year, month: date.month)
            let follows = date.day == 1
                ? previous.day == CivilDate.daysInMonth(year: previous.year, month: previous.month)
                : date.day == previous.day + 1 && date.month == previous.month && date.year == previous.year
            let back = CivilDate.daysFromCivil(year: date.year, month: date.month, day: date.day)
            guard valid, follows, back == days else {
                Issue.record("day \(days): \(previous) then \(date), back to \(back)")
                return
            }
            previous = date
        }
    }

    @Test func roundTripsFarFromTheEpoch() {
        for days: Int64 in [-800_000_000, -146_097 * 1000 - 1, 146_097 * 1000, 800_000_000] {
            let date = CivilDate.civilFromDays(days)
            #expect(CivilDate.daysFromCivil(year: date.year, month: date.month, day: date.day) == days)
        }
    }

    @Test func knownDates() {
        #expect(CivilDate.daysFromCivil(year: 1970, month: 1, day: 1) == 0)
        #expect(CivilDate.daysFromCivil(year: 1969, month: 12, day: 31) == -1)
        #expect(CivilDate.daysFromCivil(year: 2000, month: 3, day: 1) == 11_017)
        #expect(CivilDate.daysFromCivil(year: 0, month: 1, day: 1) == -719_528)
        #expect(CivilDate.civilFromDays(-719_529) == (-1, 12, 31))
        #expect(CivilDate.civilFromDays(19_723) == (2024, 1, 1))
    }

    @Test func leapYears() {
        #expect(!CivilDate.isLeapYear(1900))
        #expect(CivilDate.isLeapYear(2000))
        #expect(CivilDate.isLeapYear(2024))
        #expect(!CivilDate.isLeapYear(2023))
        #expect(!CivilDate.isLeapYear(2100))
        #expect(CivilDate.isLeapYear(0))
        #expect(CivilDate.isLeapYear(-4))
        #expect(!CivilDate.isLeapYear(-100))
        // Days in a year agree with the leap rule.
        for year: Int64 in [1900, 2000, 2023, 2024, 2100, -400, -100] {
            let length = CivilDate.daysFromCivil(year: year + 1, month: 1, day: 1) - CivilDate.daysFromCivil(year: year, month: 1, day: 1)
            #expect(length == (CivilDate.isLeapYear(year) ? 366 : 365))
        }
    }

    @Test func daysInFebruaryAndOtherMonths() {
        #expect(CivilDate.daysInMonth(year: 1900, month: 2) == 28)
        #expect(CivilDate.daysInMonth(year: 2000, month: 2) == 29)
        #expect(CivilDate.daysInMonth(year: 2024, month: 2) == 29)
        #expect(CivilDate.daysInMonth(year: 2023, month: 2) == 28)
        #expect([1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map { CivilDate.daysInMonth(year: 2024, month: $0) }
            == [31, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
        // 29 February 2024 is followed by 1 March.
        let leapDay = CivilDate.daysFromCivil(year: 2024, month: 2, day: 29)
        #expect(CivilDate.civilFromDays(leapDay + 1) == (2024, 3, 1))
        #expect(CivilDate.daysFromCivil(year: 1900, month: 3, day: 1) - CivilDate.daysFromCivil(year: 1900, month: 2, day: 28) == 1)
    }

    @Test func weekdaysAndFloorDivision() {
        #expect(CivilDate.weekdayFromSunday(0) == 4)  // 1970-01-01, a Thursday
        #expect(CivilDate.weekdayFromSunday(-4) == 0)  // 1969-12-28, a Sunday
        #expect(CivilDate.weekdayFromSunday(CivilDate.daysFromCivil(year: 2026, month: 12, day: 7)) == 1)  // a Monday
        #expect(CivilDate.floorDiv(-1, 86_400) == -1)
        #expect(CivilDate.floorDiv(-86_400, 86_400) == -1)
        #expect(CivilDate.floorDiv(86_399, 86_400) == 0)
        #expect(CivilDate.floorMod(-1, 7) == 6)
        #expect(CivilDate.floorMod(7, 7) == 0)
    }

    @Test func utcText() {
        #expect(CivilDate.rfc3339UTC(0) == "1970-01-01T00:00:00Z")
        #expect(CivilDate.rfc3339UTC(-1) == "1969-12-31T23:59:59Z")
        #expect(CivilDate.rfc3339UTC(1_795_779_787) == "2026-11-27T11:43:07Z")
        #expect(CivilDate.rfc3339UTC(951_782_400) == "2000-02-29T00:00:00Z")
        #expect(CivilDate.pad(7, 2) == "07")
        #expect(CivilDate.pad(123, 2) == "123")
    }
}
