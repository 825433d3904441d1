import Foundation
@testable import GuidonQuota
import Testing

/// Unix seconds of an ISO 8601 instant with its offset (`2026-03-29T01:00:00Z`).
func instant(_ text: String) -> Int64 {
    let formatter = ISO8601DateFormatter()
    guard let date = formatter.date(from: text) else { fatalError("bad test instant \(text)") }
    return Int64(date.timeIntervalSince1970)
}

func zone(_ name: String) throws -> TimeZoneRules { try TimeZoneRules.load(name) }

/// Checks the window of `unit` holding `at`, and that windows tile time around it.
func expectWindow(
    _ rules: TimeZoneRules, _ unit: WindowUnit, at: String, start: String, end: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let t = instant(at)
    let window = rules.window(unit, containing: t)
    #expect(window == CalendarWindow(unit: unit, start: instant(start), end: instant(end)),
            "\(rules.name) \(unit) at \(at)", sourceLocation: sourceLocation)
    // Every instant of the window maps to the same window; the instants either side do not.
    #expect(rules.window(unit, containing: window.start) == window, sourceLocation: sourceLocation)
    #expect(rules.window(unit, containing: window.end - 1) == window, sourceLocation: sourceLocation)
    #expect(rules.window(unit, containing: window.end).start == window.end, sourceLocation: sourceLocation)
    #expect(rules.window(unit, containing: window.start - 1).end == window.start, sourceLocation: sourceLocation)
}

@Suite("Calendar windows")
struct CalendarWindowTests {
    @Test("UTC: every unit, in a leap February")
    func utc() {
        let z = TimeZoneRules.utc
        let at = "2024-02-29T13:45:10Z"
        expectWindow(z, .minute, at: at, start: "2024-02-29T13:45:00Z", end: "2024-02-29T13:46:00Z")
        expectWindow(z, .hour, at: at, start: "2024-02-29T13:00:00Z", end: "2024-02-29T14:00:00Z")
        expectWindow(z, .day, at: at, start: "2024-02-29T00:00:00Z", end: "2024-03-01T00:00:00Z")
        expectWindow(z, .week, at: at, start: "2024-02-26T00:00:00Z", end: "2024-03-04T00:00:00Z")  // Monday to Monday
        expectWindow(z, .month, at: at, start: "2024-02-01T00:00:00Z", end: "2024-03-01T00:00:00Z")
        expectWindow(z, .month, at: "2023-02-15T00:00:00Z", start: "2023-02-01T00:00:00Z", end: "2023-03-01T00:00:00Z")
        expectWindow(z, .month, at: "2023-12-31T23:59:59Z", start: "2023-12-01T00:00:00Z", end: "2024-01-01T00:00:00Z")
        // A Monday midnight starts its week; the Sunday before ends the last one.
        expectWindow(z, .week, at: "2024-03-04T00:00:00Z", start: "2024-03-04T00:00:00Z", end: "2024-03-11T00:00:00Z")
        expectWindow(z, .week, at: "2024-03-03T23:59:59Z", start: "2024-02-26T00:00:00Z", end: "2024-03-04T00:00:00Z")
        // Before 1970 too.
        expectWindow(z, .week, at: "1969-12-31T12:00:00Z", start: "1969-12-29T00:00:00Z", end: "1970-01-05T00:00:00Z")
    }

    @Test("Europe/Berlin, spring forward: a 23-hour day; the hour 02:00 does not exist")
    func berlinSpring() throws {
        let z = try zone("Europe/Berlin")
        expectWindow(z, .day, at: "2026-03-29T12:00:00+02:00", start: "2026-03-29T00:00:00+01:00", end: "2026-03-30T00:00:00+02:00")
        expectWindow(z, .hour, at: "2026-03-29T01:30:00+01:00", start: "2026-03-29T01:00:00+01:00", end: "2026-03-29T03:00:00+02:00")
        expectWindow(z, .hour, at: "2026-03-29T03:10:00+02:00", start: "2026-03-29T03:00:00+02:00", end: "2026-03-29T04:00:00+02:00")
        // The week holding the change is an hour short; the month too.
        expectWindow(z, .week, at: "2026-03-29T12:00:00+02:00", start: "2026-03-23T00:00:00+01:00", end: "2026-03-30T00:00:00+02:00")
        expectWindow(z, .month, at: "2026-03-31T23:30:00+02:00", start: "2026-03-01T00:00:00+01:00", end: "2026-04-01T00:00:00+02:00")
    }

    @Test("Europe/Berlin, fall back: a 25-hour day; the repeated hour is a window of its own")
    func berlinFall() throws {
        let z = try zone("Europe/Berlin")
        expectWindow(z, .day, at: "2026-10-25T12:00:00+01:00", start: "2026-10-25T00:00:00+02:00", end: "2026-10-26T00:00:00+01:00")
        expectWindow(z, .hour, at: "2026-10-25T02:30:00+02:00", start: "2026-10-25T02:00:00+02:00", end: "2026-10-25T02:00:00+01:00")
        expectWindow(z, .hour, at: "2026-10-25T02:30:00+01:00", start: "2026-10-25T02:00:00+01:00", end: "2026-10-25T03:00:00+01:00")
        expectWindow(z, .minute, at: "2026-10-25T02:59:30+02:00", start: "2026-10-25T02:59:00+02:00", end: "2026-10-25T02:00:00+01:00")
    }

    @Test("Europe/Berlin after the zone file's table ends (the footer's rule, tabulated and beyond), and a leap February")
    func berlinFooter() throws {
        let z = try zone("Europe/Berlin")
        expectWindow(z, .day, at: "2040-03-25T12:00:00+02:00", start: "2040-03-25T00:00:00+01:00", end: "2040-03-26T00:00:00+02:00")
        expectWindow(z, .day, at: "2040-10-28T12:00:00+01:00", start: "2040-10-28T00:00:00+02:00", end: "2040-10-29T00:00:00+01:00")
        expectWindow(z, .hour, at: "2040-10-28T02:10:00+01:00", start: "2040-10-28T02:00:00+01:00", end: "2040-10-28T03:00:00+01:00")
        expectWindow(z, .month, at: "2028-02-29T23:59:59+01:00", start: "2028-02-01T00:00:00+01:00", end: "2028-03-01T00:00:00+01:00")
        // Past the years tabulated from the rule (2100): the rule itself.
        expectWindow(z, .day, at: "2150-03-29T12:00:00+02:00", start: "2150-03-29T00:00:00+01:00", end: "2150-03-30T00:00:00+02:00")
        expectWindow(z, .hour, at: "2150-10-25T02:10:00+01:00", start: "2150-10-25T02:00:00+01:00", end: "2150-10-25T03:00:00+01:00")
        expectWindow(z, .hour, at: "2150-10-25T02:10:00+02:00", start: "2150-10-25T02:00:00+02:00", end: "2150-10-25T02:00:00+01:00")
        #expect(z.offset(at: instant("2040-07-01T00:00:00Z")) == 7200)
        #expect(z.offset(at: instant("2040-12-01T00:00:00Z")) == 3600)
    }

    @Test("America/New_York: both changes, at 02:00 local")
    func newYork() throws {
        let z = try zone("America/New_York")
        expectWindow(z, .day, at: "2026-03-08T12:00:00-04:00", start: "2026-03-08T00:00:00-05:00", end: "2026-03-09T00:00:00-04:00")
        expectWindow(z, .day, at: "2026-11-01T12:00:00-05:00", start: "2026-11-01T00:00:00-04:00", end: "2026-11-02T00:00:00-05:00")
        expectWindow(z, .hour, at: "2026-11-01T01:30:00-04:00", start: "2026-11-01T01:00:00-04:00", end: "2026-11-01T01:00:00-05:00")
        expectWindow(z, .hour, at: "2026-11-01T01:30:00-05:00", start: "2026-11-01T01:00:00-05:00", end: "2026-11-01T02:00:00-05:00")
    }

    @Test("Asia/Tehran: +03:30, and (2021) daylight time that began and ended at midnight")
    func tehran() throws {
        let z = try zone("Asia/Tehran")
        expectWindow(z, .hour, at: "2026-06-15T10:00:00Z", start: "2026-06-15T13:00:00+03:30", end: "2026-06-15T14:00:00+03:30")
        expectWindow(z, .day, at: "2026-06-15T10:00:00Z", start: "2026-06-15T00:00:00+03:30", end: "2026-06-16T00:00:00+03:30")
        expectWindow(z, .month, at: "2026-06-15T10:00:00Z", start: "2026-06-01T00:00:00+03:30", end: "2026-07-01T00:00:00+03:30")
        // Midnight of 2021-03-22 was skipped (00:00 → 01:00): the day starts at the change.
        expectWindow(z, .day, at: "2021-03-22T12:00:00+04:30", start: "2021-03-22T01:00:00+04:30", end: "2021-03-23T00:00:00+04:30")
        // On 2021-09-22 the clock went from 24:00 back to 23:00: 2021-09-21 lasted 25 hours.
        expectWindow(z, .day, at: "2021-09-21T23:30:00+03:30", start: "2021-09-21T00:00:00+04:30", end: "2021-09-22T00:00:00+03:30")
    }

    @Test("Australia/Lord_Howe: a 30-minute change makes a 90-minute and a 30-minute hour")
    func lordHowe() throws {
        let z = try zone("Australia/Lord_Howe")
        // 2026-04-05 02:00 +11 → 01:30 +10:30: the clock goes back between boundaries.
        expectWindow(z, .hour, at: "2026-04-05T01:40:00+10:30", start: "2026-04-05T01:00:00+11:00", end: "2026-04-05T02:00:00+10:30")
        // 2026-10-04 02:00 +10:30 → 02:30 +11: the hour 02:00 lasts from the change to 03:00.
        expectWindow(z, .hour, at: "2026-10-04T01:30:00+10:30", start: "2026-10-04T01:00:00+10:30", end: "2026-10-04T02:30:00+11:00")
        expectWindow(z, .hour, at: "2026-10-04T02:40:00+11:00", start: "2026-10-04T02:30:00+11:00", end: "2026-10-04T03:00:00+11:00")
        expectWindow(z, .day, at: "2026-10-04T12:00:00+11:00", start: "2026-10-04T00:00:00+10:30", end: "2026-10-05T00:00:00+11:00")
    }

    @Test("day, week and month windows equal Foundation's calendar over random instants in several zones")
    func againstFoundation() throws {
        var generator = SystemRandomNumberGenerator()
        for name in ["Europe/Berlin", "America/New_York", "Asia/Tehran", "Australia/Lord_Howe", "America/Sao_Paulo", "Pacific/Chatham", "Asia/Kolkata"] {
            let rules = try zone(name)
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = try #require(TimeZone(identifier: name))
            calendar.firstWeekday = 2
            for _ in 0..<300 {
                let t = Int64.random(in: instant("1995-01-01T00:00:00Z")...instant("2060-01-01T00:00:00Z"), using: &generator)
                let date = Date(timeIntervalSince1970: TimeInterval(t))
                for (unit, component) in [(WindowUnit.day, Calendar.Component.day), (.week, .weekOfYear), (.month, .month)] {
                    let interval = try #require(calendar.dateInterval(of: component, for: date))
                    let expected = CalendarWindow(unit: unit, start: Int64(interval.start.timeIntervalSince1970), end: Int64(interval.end.timeIntervalSince1970))
                    #expect(rules.window(unit, containing: t) == expected, "\(name) \(unit) at \(t)")
                }
            }
        }
    }

    @Test("hour and day windows tile time across four years of changes (hours 30 to 120 minutes, days 23 to 25 hours)")
    func tiling() throws {
        for name in ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Tehran"] {
            let rules = try zone(name)
            for unit in [WindowUnit.hour, .day] {
                var t = instant("2019-01-01T00:00:00Z")
                let stop = instant("2023-01-01T00:00:00Z")
                while t < stop {
                    let w = rules.window(unit, containing: t)
                    #expect(w.start <= t && t < w.end, "\(name) \(unit) at \(t): \(w)")
                    let length = w.end - w.start
                    let range: ClosedRange<Int64> = unit == .hour ? 1800...7200 : 82_800...90_000
                    #expect(range.contains(length), "\(name) \(unit) at \(t): \(length) s")
                    #expect(rules.window(unit, containing: w.end).start == w.end)
                    t = w.end
                }
            }
        }
    }

    @Test("POSIX rules alone: southern hemisphere and all-year daylight time")
    func posixRules() throws {
        // São Paulo style: daylight time across the turn of the year.
        let south = try TimeZoneRules(name: "south", posixRule: "<-03>3<-02>,M10.3.0/0,M2.3.0/0")
        #expect(south.offset(at: instant("2030-01-10T12:00:00Z")) == -7200)
        #expect(south.offset(at: instant("2030-06-10T12:00:00Z")) == -10800)
        // TZif v3's permanent daylight time: the changes at each new year cancel out.
        let always = try TimeZoneRules(name: "always", posixRule: "EST5EDT,0/0,J365/25")
        #expect(always.offset(at: instant("2030-01-01T04:30:00Z")) == -14400)
        #expect(always.offset(at: instant("2030-07-01T00:00:00Z")) == -14400)
        expectWindow(always, .day, at: "2030-01-01T12:00:00-04:00", start: "2030-01-01T00:00:00-04:00", end: "2030-01-02T00:00:00-04:00")
        // Jn never counts February 29; n does.
        let julian = try TimeZoneRules(name: "j", posixRule: "AAA0BBB,J60/0,J61/0")
        #expect(julian.offset(at: instant("2028-03-01T12:00:00Z")) == 3600)  // J60 is March 1 even in a leap year
        #expect(julian.offset(at: instant("2028-02-29T12:00:00Z")) == 0)
    }

    @Test("bad zone names and bad bytes are refused with a coded error")
    func refused() throws {
        for name in ["", "../etc/passwd", "/etc/localtime", "Europe//Berlin", "Europe/./Berlin", "Europe/Berlin ", "Europe/Bérlin"] {
            #expect { try TimeZoneRules.load(name) } throws: { ($0 as? TimeZoneError)?.code == .invalidName }
        }
        #expect { try TimeZoneRules.load("Mars/Olympus_Mons") } throws: { ($0 as? TimeZoneError)?.code == .notFound }
        let berlin = try #require(FileManager.default.contents(atPath: "/usr/share/zoneinfo/Europe/Berlin")).map { $0 }
        for cut in [0, 10, 44, 100, berlin.count - 3] {
            #expect(throws: TimeZoneError.self, "cut at \(cut)") { try TimeZoneRules(name: "x", tzif: Array(berlin.prefix(cut))) }
        }
        var corrupt = berlin
        corrupt[4] = UInt8(ascii: "x")
        #expect { try TimeZoneRules(name: "x", tzif: corrupt) } throws: { ($0 as? TimeZoneError)?.code == .malformed }
        for rule in ["", "CE", "CET", "CET-1CEST", "CET-1CEST,M13.1.0,M10.5.0", "CET-1CEST,M3.5.0", "CET-1CEST,M3.5.0,M10.5.0/200", "<CET-1"] {
            #expect(throws: TimeZoneError.self, "\(rule)") { try TimeZoneRules(name: "x", posixRule: rule) }
        }
        if FileManager.default.fileExists(atPath: "/usr/share/zoneinfo/right/UTC") {
            #expect { try TimeZoneRules.load("right/UTC") } throws: { ($0 as? TimeZoneError)?.code == .unsupported }
        }
        #expect(try TimeZoneRules.load("UTC") == .utc)
        #expect(try TimeZoneRules.load("Etc/UTC", directory: "/nonexistent") == .utc)
    }
}
