internal import GuidonCalendar

/// A time zone's UTC offset over time, parsed from TZif bytes (RFC 8536): the table of
/// transitions (64-bit data of version 2 and later, or the 32-bit data of version 1) and the
/// footer's POSIX TZ rule for instants after the table.
///
/// Pure: the bytes come from `TimeZoneRules.load` (the I/O) or from a test. Only changes of
/// offset are kept (a change of abbreviation or of the DST flag alone moves no window boundary).
public struct TimeZoneRules: Sendable, Hashable {
    /// The zone's name as given (`Europe/Berlin`), for messages.
    public let name: String
    /// Instants (Unix seconds), ascending, at which the offset changes.
    private let times: [Int64]
    /// `offsets[0]` before `times[0]`; `offsets[i + 1]` from `times[i]` on. Seconds east of UTC.
    private let offsets: [Int32]
    /// Applies after the last instant of `times` (or everywhere when `times` is empty).
    private let rule: PosixTZRule?

    /// Coordinated Universal Time: no file needed.
    public static let utc = TimeZoneRules(name: "UTC", times: [], offsets: [0], rule: nil)

    /// The rule's changes are added to the table up to this year, so that windows of the years
    /// that matter are a binary search, not a computation of the rule's dates (10× slower): a
    /// "slim" TZif file ends its table at the zone's last change of rules (1996 for Berlin).
    static let tabulatedUntilYear: Int64 = 2100

    private init(name: String, times: [Int64], offsets: [Int32], rule: PosixTZRule?) {
        var times = times
        var offsets = offsets
        if let rule, rule.daylight != nil {
            let from = times.last.map { CivilDate.civilFromDays(CivilDate.floorDiv($0, 86_400)).year } ?? 1970
            for year in from...Self.tabulatedUntilYear {
                guard let (first, second) = rule.transitions(in: year) else { break }
                for change in [first, second] {
                    if let last = times.last, change.at <= last {
                        guard change.at == last else { continue }
                        // Two changes at one instant: keep the second's offset; drop both if
                        // they cancel out (TZif v3's all-year daylight time).
                        offsets[offsets.count - 1] = change.after
                        if offsets[offsets.count - 1] == offsets[offsets.count - 2] {
                            times.removeLast()
                            offsets.removeLast()
                        }
                    } else if change.after != offsets[offsets.count - 1] {
                        times.append(change.at)
                        offsets.append(change.after)
                    }
                }
            }
        }
        self.name = name
        self.times = times
        self.offsets = offsets
        self.rule = rule
    }

    /// A zone defined by a POSIX TZ string alone (`"CET-1CEST,M3.5.0,M10.5.0/3"`).
    public init(name: String, posixRule: String) throws(TimeZoneError) {
        let rule = try PosixTZRule(parsing: posixRule)
        self.init(name: name, times: [], offsets: [rule.standardOffset], rule: rule)
    }

    /// Parses the contents of a TZif file.
    public init(name: String, tzif bytes: [UInt8]) throws(TimeZoneError) {
        var reader = TZifReader(bytes: bytes, name: name)
        let header = try reader.header()
        var block = try reader.block(header, timeSize: 4)
        var footer: PosixTZRule?
        if header.version >= 2 {
            let header2 = try reader.header()
            block = try reader.block(header2, timeSize: 8)
            let text = try reader.footer()
            if !text.isEmpty {
                do throws(TimeZoneError) { footer = try PosixTZRule(parsing: text) } catch {
                    throw TimeZoneError(error.code, "\(name): footer: \(error.message)")
                }
            }
        }
        // Keep the instants at which the offset really changes.
        var times: [Int64] = []
        var offsets: [Int32] = [block.typeOffsets[0]]
        for (time, type) in zip(block.times, block.typeIndices) {
            let offset = block.typeOffsets[Int(type)]
            if offset != offsets[offsets.count - 1] {
                times.append(time)
                offsets.append(offset)
            }
        }
        self.init(name: name, times: times, offsets: offsets, rule: footer)
    }

    // MARK: - Offsets and transitions

    /// A change of offset: at `at` the clock goes from `at + before` to `at + after`.
    struct Transition: Equatable {
        var at: Int64
        var before: Int32
        var after: Int32
    }

    /// Seconds east of UTC in effect at `t` (Unix seconds).
    public func offset(at t: Int64) -> Int32 {
        if let rule, times.isEmpty || t >= times[times.count - 1] {
            return ruleTransition(atOrBefore: t, rule)?.after ?? offsets[offsets.count - 1]
        }
        return offsets[upperBound(t)]
    }

    /// The latest change of offset at or before `t`.
    func transition(atOrBefore t: Int64) -> Transition? {
        if let rule, times.isEmpty || t >= times[times.count - 1], let fromRule = ruleTransition(atOrBefore: t, rule) {
            return fromRule
        }
        let i = upperBound(t)  // times[i - 1] <= t < times[i]
        guard i > 0 else { return nil }
        return Transition(at: times[i - 1], before: offsets[i - 1], after: offsets[i])
    }

    /// The earliest change of offset after `t`.
    func transition(after t: Int64) -> Transition? {
        let i = upperBound(t)
        if i < times.count { return Transition(at: times[i], before: offsets[i], after: offsets[i + 1]) }
        guard let rule else { return nil }
        return withRuleTransitions(around: t, rule) { changes in changes.first { $0.at > t } }
    }

    /// The index of the first table instant after `t`.
    private func upperBound(_ t: Int64) -> Int {
        var low = 0
        var high = times.count
        while low < high {
            let mid = (low + high) / 2
            if times[mid] <= t { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// The rule's latest change at or before `t`, later than the table's last instant.
    private func ruleTransition(atOrBefore t: Int64, _ rule: PosixTZRule) -> Transition? {
        let tableEnd = times.last ?? Int64.min
        return withRuleTransitions(around: t, rule) { changes in changes.last { $0.at <= t && $0.at > tableEnd } }
    }

    /// Calls `body` with the rule's changes in the years around `t`'s (the year before to the
    /// year after), in time order, in a buffer on the stack: this runs per request for every
    /// instant past the zone file's table (all of them with "slim" TZif files). Changes at one
    /// instant are merged and those that leave the offset as it was dropped (TZif v3's all-year
    /// daylight time writes a change at the turn of each year that cancels out).
    private func withRuleTransitions<R>(around t: Int64, _ rule: PosixTZRule, _ body: (UnsafeMutableBufferPointer<Transition>) -> R) -> R {
        let year = CivilDate.civilFromDays(CivilDate.floorDiv(t, 86_400)).year
        return withUnsafeTemporaryAllocation(of: Transition.self, capacity: 6) { buffer in
            var count = 0
            func add(_ change: Transition) {
                if count > 0, buffer[count - 1].at == change.at {
                    buffer[count - 1].after = change.after
                } else {
                    buffer.initializeElement(at: count, to: change)
                    count += 1
                }
            }
            for y in (year - 1)...(year + 1) {
                guard let pair = rule.transitions(in: y) else { continue }
                add(pair.0)
                add(pair.1)
            }
            var kept = 0
            for i in 0..<count where buffer[i].before != buffer[i].after {
                buffer[kept] = buffer[i]
                kept += 1
            }
            // Transition is a trivial type: nothing to deinitialize.
            return body(UnsafeMutableBufferPointer(rebasing: buffer[0..<kept]))
        }
    }
}

/// Reads TZif's big-endian sections (RFC 8536 §3), checking every count against the bytes.
private struct TZifReader {
    let bytes: [UInt8]
    let name: String
    var position = 0

    struct Header {
        var version: Int
        var isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt: Int
    }

    struct Block {
        var times: [Int64]
        var typeIndices: [UInt8]
        var typeOffsets: [Int32]
    }

    func error(_ why: String) -> TimeZoneError {
        TimeZoneError(.malformed, "\(name): not a valid TZif file at byte \(position): \(why)")
    }

    mutating func need(_ count: Int) throws(TimeZoneError) {
        guard count >= 0, bytes.count - position >= count else { throw error("truncated (\(count) more bytes expected)") }
    }

    mutating func u32() throws(TimeZoneError) -> UInt32 {
        try need(4)
        defer { position += 4 }
        return bytes[position..<position + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func i64() throws(TimeZoneError) -> Int64 {
        try need(8)
        defer { position += 8 }
        return Int64(bitPattern: bytes[position..<position + 8].reduce(0) { $0 << 8 | UInt64($1) })
    }

    mutating func header() throws(TimeZoneError) -> Header {
        try need(44)
        guard bytes[position..<position + 4].elementsEqual("TZif".utf8) else { throw error("no TZif magic") }
        let versionByte = bytes[position + 4]
        let version: Int
        switch versionByte {
        case 0: version = 1
        case UInt8(ascii: "2")...UInt8(ascii: "9"): version = Int(versionByte - UInt8(ascii: "0"))
        default: throw error("unknown version byte \(versionByte)")
        }
        position += 20
        var counts: [Int] = []
        for _ in 0..<6 { counts.append(Int(try u32())) }
        let h = Header(version: version, isutcnt: counts[0], isstdcnt: counts[1], leapcnt: counts[2], timecnt: counts[3],
                       typecnt: counts[4], charcnt: counts[5])
        guard h.typecnt >= 1 else { throw error("no local time types") }
        guard h.isutcnt == 0 || h.isutcnt == h.typecnt, h.isstdcnt == 0 || h.isstdcnt == h.typecnt else {
            throw error("indicator counts do not match the type count")
        }
        guard h.leapcnt == 0 else {
            throw TimeZoneError(.unsupported, "\(name): leap-second zones (right/…) are not supported")
        }
        return h
    }

    mutating func block(_ h: Header, timeSize: Int) throws(TimeZoneError) -> Block {
        try need(h.timecnt * timeSize + h.timecnt + h.typecnt * 6 + h.charcnt + h.leapcnt * (timeSize + 4) + h.isstdcnt + h.isutcnt)
        var times: [Int64] = []
        times.reserveCapacity(h.timecnt)
        for _ in 0..<h.timecnt {
            let t = timeSize == 8 ? try i64() : Int64(Int32(bitPattern: try u32()))
            if let last = times.last, t <= last { throw error("transition times are not ascending") }
            times.append(t)
        }
        let indices = Array(bytes[position..<position + h.timecnt])
        position += h.timecnt
        var offsets: [Int32] = []
        for _ in 0..<h.typecnt {
            let offset = Int32(bitPattern: try u32())
            guard offset > -90_000 && offset < 93_600 else { throw error("UT offset \(offset) s out of range") }
            offsets.append(offset)
            position += 2  // isdst, abbreviation index
        }
        guard indices.allSatisfy({ Int($0) < h.typecnt }) else { throw error("transition type index out of range") }
        position += h.charcnt + h.leapcnt * (timeSize + 4) + h.isstdcnt + h.isutcnt
        return Block(times: times, typeIndices: indices, typeOffsets: offsets)
    }

    mutating func footer() throws(TimeZoneError) -> String {
        guard position < bytes.count else { return "" }  // some writers omit it
        guard bytes[position] == 10 else { throw error("footer does not start with a newline") }
        guard let end = bytes[(position + 1)...].firstIndex(of: 10) else { throw error("unterminated footer") }
        defer { position = end + 1 }
        return String(decoding: bytes[(position + 1)..<end], as: UTF8.self)
    }
}
