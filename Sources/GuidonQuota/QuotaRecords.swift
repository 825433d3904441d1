// The embedded store's durable records: what the event loops append to their stripe's journal,
// what the flusher writes to the log (in CRC-checked frames) and the snapshot, and what
// recovery reads back. Little-endian, length-prefixed strings; absolute counts, so replaying a
// record twice is harmless.

/// The key of one count.
///
/// Hashes a digest of its strings taken once per request (`SubjectHash`) instead of the strings
/// themselves: a request looks up one to ten counts of one subject, and hashing the strings for
/// each was a quarter of a `consume` (measured, guidon-bench quota).
struct CounterKey: Hashable, Sendable {
    var feature: String
    var tenant: String
    /// The targeting key for a `user`-scoped count; empty for a tenant's.
    var user: String
    var unit: WindowUnit
    var windowStart: Int64
    /// `SubjectHash.of(feature, tenant, user)`.
    var digest: Int

    init(feature: String, tenant: String, user: String, unit: WindowUnit, windowStart: Int64, digest: Int? = nil) {
        self.feature = feature
        self.tenant = tenant
        self.user = user
        self.unit = unit
        self.windowStart = windowStart
        self.digest = digest ?? SubjectHash.of(feature: feature, tenant: tenant, user: user)
    }

    func hash(into hasher: inout Hasher) {
        // As its `CounterID` (one word: the strings are in `digest` already).
        CounterID(self).hash(into: &hasher)
    }

    static func == (a: CounterKey, b: CounterKey) -> Bool {
        a.digest == b.digest && a.windowStart == b.windowStart && a.unit == b.unit
            && a.feature == b.feature && a.tenant == b.tenant && a.user == b.user
    }
}

enum SubjectHash {
    /// Of (feature, tenant): also picks the stripe.
    static func of(feature: String, tenant: String) -> Int {
        var hasher = Hasher()
        hasher.combine(feature)
        hasher.combine(tenant)
        return hasher.finalize()
    }

    /// Of a count's strings, from `of(feature:tenant:)`; the tenant's own count (no user) keeps it.
    static func of(featureTenant: Int, user: String) -> Int {
        guard !user.isEmpty else { return featureTenant }
        var hasher = Hasher()
        hasher.combine(featureTenant)
        hasher.combine(user)
        return hasher.finalize()
    }

    static func of(feature: String, tenant: String, user: String) -> Int {
        of(featureTenant: of(feature: feature, tenant: tenant), user: user)
    }
}

struct Counter: Sendable {
    var used: Int64
    /// The window's end: the count is dropped some time after it.
    var resetAt: Int64
    /// Where this count's record is in its stripe's journal, valid while `journalGeneration` is
    /// the stripe's: a count changed again before the next flush has its record rewritten in
    /// place instead of a new one appended, so the log grows with the counts that changed, not
    /// with the requests (a hot tenant's thousand requests a second are one record a flush).
    var journalOffset: Int32 = 0
    var journalGeneration: UInt32 = 0

    init(used: Int64, resetAt: Int64) {
        self.used = used
        self.resetAt = resetAt
    }
}

/// The key of a remembered answer.
struct ReceiptKey: Hashable, Sendable {
    var feature: String
    var tenant: String
    var user: String
    var idempotencyKey: String
}

struct Receipt: Sendable {
    var answer: QuotaAnswer
    var expiresAt: Int64
}

enum QuotaRecord {
    case counter(CounterKey, Counter)
    case receipt(ReceiptKey, Receipt)
    /// Forget every count of (feature, tenant), only `user`'s when it is set.
    case reset(feature: String, tenant: String, user: String?)
}

extension WindowUnit {
    var code: UInt8 {
        switch self {
        case .minute: 0
        case .hour: 1
        case .day: 2
        case .week: 3
        case .month: 4
        }
    }

    init?(code: UInt8) {
        switch code {
        case 0: self = .minute
        case 1: self = .hour
        case 2: self = .day
        case 3: self = .week
        case 4: self = .month
        default: return nil
        }
    }
}

// MARK: - Writing

extension Array where Element == UInt8 {
    @inline(__always)
    mutating func appendLE(_ value: Int64) {
        var v = value.littleEndian
        Swift.withUnsafeBytes(of: &v) { append(contentsOf: $0) }
    }

    @inline(__always)
    mutating func appendLE(_ value: UInt32) {
        var v = value.littleEndian
        Swift.withUnsafeBytes(of: &v) { append(contentsOf: $0) }
    }

    /// A string of at most 65,535 bytes (keys are at most `QuotaRequest.maximumKeyLength`).
    @inline(__always)
    mutating func appendString(_ s: String) {
        let count = s.utf8.count
        append(UInt8(truncatingIfNeeded: count))
        append(UInt8(truncatingIfNeeded: count >> 8))
        append(contentsOf: s.utf8)
    }
}

enum RecordKind: UInt8 {
    case counter = 1, receipt = 2, reset = 3
}

extension QuotaRecord {
    /// The offset of `used` in a counter record (kind, unit, window start, reset at, used).
    static let counterUsedOffset = 18

    static func appendCounter(_ key: CounterKey, _ counter: Counter, to out: inout [UInt8]) {
        out.append(RecordKind.counter.rawValue)
        out.append(key.unit.code)
        out.appendLE(key.windowStart)
        out.appendLE(counter.resetAt)
        out.appendLE(counter.used)
        out.appendString(key.feature)
        out.appendString(key.tenant)
        out.appendString(key.user)
    }

    static func appendReceipt(_ key: ReceiptKey, _ receipt: Receipt, to out: inout [UInt8]) {
        let a = receipt.answer
        let s = a.status
        out.append(RecordKind.receipt.rawValue)
        out.appendLE(receipt.expiresAt)
        out.append((a.allowed ? 1 : 0) | (a.shadowOver ? 2 : 0) | (a.degraded ? 4 : 0) | (s.over ? 8 : 0) | (s.used != nil ? 16 : 0))
        out.append(UInt8(truncatingIfNeeded: s.index))
        out.append(s.limit.per.code)
        out.append(s.limit.scope == .user ? 1 : 0)
        out.append(s.limit.mode == .hard ? 0 : s.limit.mode == .soft ? 1 : 2)
        out.append(s.limit.failMode == .open ? 0 : 1)
        out.appendLE(s.limit.max)
        out.appendLE(s.used ?? 0)
        out.appendLE(s.window.start)
        out.appendLE(s.window.end)
        out.appendString(key.feature)
        out.appendString(key.tenant)
        out.appendString(key.user)
        out.appendString(key.idempotencyKey)
    }

    static func appendReset(feature: String, tenant: String, user: String?, to out: inout [UInt8]) {
        out.append(RecordKind.reset.rawValue)
        out.append(user == nil ? 0 : 1)
        out.appendString(feature)
        out.appendString(tenant)
        out.appendString(user ?? "")
    }

    func append(to out: inout [UInt8]) {
        switch self {
        case .counter(let key, let counter): Self.appendCounter(key, counter, to: &out)
        case .receipt(let key, let receipt): Self.appendReceipt(key, receipt, to: &out)
        case .reset(let feature, let tenant, let user): Self.appendReset(feature: feature, tenant: tenant, user: user, to: &out)
        }
    }
}

// MARK: - Reading

/// Reads records back; `nil` from `next()` at the end, a thrown message on bad bytes.
struct QuotaRecordReader {
    let bytes: UnsafeRawBufferPointer
    var position = 0

    struct Malformed: Error {
        var message: String
    }

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private mutating func need(_ n: Int) throws(Malformed) {
        guard bytes.count - position >= n else { throw Malformed(message: "record truncated at byte \(position)") }
    }

    private mutating func u8() throws(Malformed) -> UInt8 {
        try need(1)
        defer { position += 1 }
        return bytes[position]
    }

    private mutating func i64() throws(Malformed) -> Int64 {
        try need(8)
        defer { position += 8 }
        return Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: Int64.self))
    }

    private mutating func string() throws(Malformed) -> String {
        let count = Int(try u8()) | Int(try u8()) << 8
        try need(count)
        defer { position += count }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[position..<position + count]), as: UTF8.self)
    }

    private mutating func unit() throws(Malformed) -> WindowUnit {
        let code = try u8()
        guard let unit = WindowUnit(code: code) else { throw Malformed(message: "unknown window unit \(code) at byte \(position - 1)") }
        return unit
    }

    mutating func next() throws(Malformed) -> QuotaRecord? {
        guard position < bytes.count else { return nil }
        let kindAt = position
        switch RecordKind(rawValue: try u8()) {
        case .counter:
            let unit = try unit()
            let windowStart = try i64()
            let resetAt = try i64()
            let used = try i64()
            let key = CounterKey(feature: try string(), tenant: try string(), user: try string(), unit: unit, windowStart: windowStart)
            return .counter(key, Counter(used: used, resetAt: resetAt))
        case .receipt:
            let expiresAt = try i64()
            let flags = try u8()
            let index = Int(try u8())
            let per = try unit()
            let scope: QuotaLimit.Scope = try u8() == 1 ? .user : .tenant
            let modeCode = try u8()
            let mode: QuotaLimit.Mode = modeCode == 0 ? .hard : modeCode == 1 ? .soft : .shadow
            let failMode: QuotaLimit.FailMode = try u8() == 0 ? .open : .closed
            let max = try i64()
            let used = try i64()
            let window = CalendarWindow(unit: per, start: try i64(), end: try i64())
            let key = ReceiptKey(feature: try string(), tenant: try string(), user: try string(), idempotencyKey: try string())
            let status = QuotaLimitStatus(
                index: index, limit: QuotaLimit(per: per, max: max, scope: scope, mode: mode, failMode: failMode),
                used: flags & 16 != 0 ? used : nil, window: window, over: flags & 8 != 0)
            let answer = QuotaAnswer(allowed: flags & 1 != 0, status: status, shadowOver: flags & 2 != 0, degraded: flags & 4 != 0)
            return .receipt(key, Receipt(answer: answer, expiresAt: expiresAt))
        case .reset:
            let hasUser = try u8() != 0
            let feature = try string()
            let tenant = try string()
            let user = try string()
            return .reset(feature: feature, tenant: tenant, user: hasUser ? user : nil)
        case nil:
            throw Malformed(message: "unknown record kind at byte \(kindAt)")
        }
    }
}

// MARK: - CRC-32 (IEEE), for the log's frames and the snapshot

enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { t in
            for b in bytes { crc = t[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        }
        return crc ^ 0xFFFF_FFFF
    }
}
