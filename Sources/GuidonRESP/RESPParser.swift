/// Parses RESP2 replies in place, from a buffer that may hold part of a reply, one reply, or
/// several.
///
/// `parse` returns `nil` while the reply starting at `offset` is incomplete (nothing is
/// consumed: call again once more bytes have arrived) and throws `malformedReply` only when the
/// bytes can never become a valid reply. Bounds on lengths and depth keep a hostile or broken
/// server from making the client allocate without limit or recurse deeply.
public struct RESPParser: Sendable {
    /// The deepest nesting of arrays accepted (Lua replies of this project are one level deep).
    public var maxDepth: Int
    /// The longest bulk string accepted, in bytes (Redis's own limit is 512 MiB).
    public var maxBulkLength: Int
    /// The most elements an array may declare.
    public var maxArrayLength: Int
    /// The longest line (simple string, error, integer or length) accepted before its CRLF.
    public var maxLineLength: Int

    public init(maxDepth: Int = 32, maxBulkLength: Int = 512 << 20, maxArrayLength: Int = 1 << 24, maxLineLength: Int = 64 << 10) {
        self.maxDepth = maxDepth
        self.maxBulkLength = maxBulkLength
        self.maxArrayLength = maxArrayLength
        self.maxLineLength = maxLineLength
    }

    /// Parses the reply starting at `offset`: the reply and the offset just past it, or `nil`
    /// when the bytes from `offset` are only the beginning of a reply.
    public func parse(_ bytes: UnsafeRawBufferPointer, from offset: Int = 0) throws(RESPError) -> (value: RESPValue, end: Int)? {
        precondition(offset >= 0 && offset <= bytes.count, "offset outside the buffer")
        var cursor = Cursor(bytes: bytes, position: offset)
        guard let value = try value(&cursor, depth: 0) else { return nil }
        return (value, cursor.position)
    }

    /// `parse` over an array's bytes.
    public func parse(_ bytes: [UInt8], from offset: Int = 0) throws(RESPError) -> (value: RESPValue, end: Int)? {
        let result: Result<(value: RESPValue, end: Int)?, RESPError> = bytes.withUnsafeBytes { raw in
            Result { () throws(RESPError) in try parse(raw, from: offset) }
        }
        return try result.get()
    }

    private struct Cursor {
        let bytes: UnsafeRawBufferPointer
        var position: Int
    }

    private func value(_ c: inout Cursor, depth: Int) throws(RESPError) -> RESPValue? {
        guard c.position < c.bytes.count else { return nil }
        let start = c.position
        let type = c.bytes[start]
        c.position += 1
        switch type {
        case UInt8(ascii: "+"):
            guard let line = try line(&c) else { return nil }
            return .simpleString(String(decoding: UnsafeRawBufferPointer(rebasing: c.bytes[line]), as: UTF8.self))
        case UInt8(ascii: "-"):
            guard let line = try line(&c) else { return nil }
            return .error(String(decoding: UnsafeRawBufferPointer(rebasing: c.bytes[line]), as: UTF8.self))
        case UInt8(ascii: ":"):
            guard let n = try integer(&c, what: "integer reply") else { return nil }
            return .integer(n)
        case UInt8(ascii: "$"):
            let lengthAt = c.position
            guard let length = try integer(&c, what: "bulk string length") else { return nil }
            if length == -1 { return .null }
            guard length >= 0, length <= maxBulkLength else {
                throw malformed("bulk string length \(length) outside 0…\(maxBulkLength) (or -1 for null)", at: lengthAt)
            }
            let end = c.position + Int(length)
            guard end + 2 <= c.bytes.count else {
                // Whatever has arrived of the terminator must already be right.
                if end < c.bytes.count, c.bytes[end] != 13 { throw malformed("bulk string not followed by CRLF", at: end) }
                return nil
            }
            guard c.bytes[end] == 13, c.bytes[end + 1] == 10 else {
                throw malformed("bulk string of \(length) bytes not followed by CRLF", at: end)
            }
            let value = RESPValue.bulkString(Array(UnsafeRawBufferPointer(rebasing: c.bytes[c.position..<end])))
            c.position = end + 2
            return value
        case UInt8(ascii: "*"):
            let countAt = c.position
            guard let count = try integer(&c, what: "array length") else { return nil }
            if count == -1 { return .null }
            guard count >= 0, count <= maxArrayLength else {
                throw malformed("array length \(count) outside 0…\(maxArrayLength) (or -1 for null)", at: countAt)
            }
            guard depth < maxDepth else { throw malformed("arrays nested deeper than \(maxDepth)", at: start) }
            var items: [RESPValue] = []
            // Each element takes at least 3 bytes ("+\r\n"): never reserve more than could arrive.
            items.reserveCapacity(min(Int(count), (c.bytes.count - c.position) / 3))
            for _ in 0..<count {
                guard let item = try value(&c, depth: depth + 1) else { return nil }
                items.append(item)
            }
            return .array(items)
        default:
            throw malformed("unknown reply type byte 0x\(String(type, radix: 16)) (expected + - : $ *)", at: start)
        }
    }

    /// The bytes up to the next CRLF (the cursor moves past it), `nil` when no CRLF yet.
    private func line(_ c: inout Cursor) throws(RESPError) -> Range<Int>? {
        let start = c.position
        var i = start
        let limit = min(c.bytes.count, start + maxLineLength + 1)
        while i < limit {
            let byte = c.bytes[i]
            if byte == 13 {
                guard i + 1 < c.bytes.count else { return nil }
                guard c.bytes[i + 1] == 10 else { throw malformed("CR not followed by LF", at: i + 1) }
                c.position = i + 2
                return start..<i
            }
            if byte == 10 { throw malformed("LF without CR in a line", at: i) }
            i += 1
        }
        if i > start + maxLineLength { throw malformed("line longer than \(maxLineLength) bytes", at: start) }
        return nil
    }

    /// A signed decimal line (`-` then at least one digit), within Int64.
    private func integer(_ c: inout Cursor, what: String) throws(RESPError) -> Int64? {
        let start = c.position
        guard let range = try line(&c) else { return nil }
        var i = range.lowerBound
        let negative = i < range.upperBound && c.bytes[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        guard i < range.upperBound else { throw malformed("empty \(what)", at: start) }
        var magnitude: UInt64 = 0
        while i < range.upperBound {
            let digit = c.bytes[i] &- UInt8(ascii: "0")
            guard digit < 10 else { throw malformed("\(what) is not a decimal integer", at: i) }
            let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(digit))
            guard !o1, !o2, sum <= UInt64(Int64.max) + (negative ? 1 : 0) else {
                throw malformed("\(what) does not fit 64 bits", at: start)
            }
            magnitude = sum
            i += 1
        }
        return negative ? Int64(truncatingIfNeeded: 0 &- magnitude) : Int64(magnitude)
    }

    private func malformed(_ what: String, at offset: Int) -> RESPError {
        RESPError(.malformedReply, "malformed RESP reply at byte \(offset): \(what)", offset: offset)
    }
}
