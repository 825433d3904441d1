/// One RESP2 reply.
///
/// The two null replies of RESP2 (`$-1` and `*-1`) are one case, `.null`: Redis uses them
/// interchangeably for "no value", and no command of this client tells them apart.
public enum RESPValue: Sendable, Hashable {
    /// `+OK`
    case simpleString(String)
    /// `-ERR message`: the server refused the command (the connection stays usable).
    case error(String)
    /// `:42`
    case integer(Int64)
    /// `$3\r\nabc`: binary-safe.
    case bulkString([UInt8])
    /// `*2\r\n…`: possibly nested.
    case array([RESPValue])
    /// `$-1` or `*-1`.
    case null

    /// The text of a simple or bulk string (bulk strings decoded as UTF-8, lossily).
    public var string: String? {
        switch self {
        case .simpleString(let s): s
        case .bulkString(let bytes): String(decoding: bytes, as: UTF8.self)
        default: nil
        }
    }

    /// An integer reply, or a string reply holding a decimal integer (Lua numbers come back as
    /// integers, `GET` of a counter as a bulk string).
    public var integer: Int64? {
        switch self {
        case .integer(let n): n
        case .bulkString, .simpleString: string.flatMap { Int64($0) }
        default: nil
        }
    }

    /// Appends this value's RESP2 encoding to `out` (tests and the fuzz target round-trip
    /// through it; a client only ever sends arrays of bulk strings, see `RESPCommand`).
    public func encode(into out: inout [UInt8]) {
        switch self {
        case .simpleString(let s):
            out.append(UInt8(ascii: "+")); out.append(contentsOf: s.utf8); out.append(contentsOf: crlf)
        case .error(let s):
            out.append(UInt8(ascii: "-")); out.append(contentsOf: s.utf8); out.append(contentsOf: crlf)
        case .integer(let n):
            out.append(UInt8(ascii: ":")); appendDecimal(n, to: &out); out.append(contentsOf: crlf)
        case .bulkString(let bytes):
            out.append(UInt8(ascii: "$")); appendDecimal(Int64(bytes.count), to: &out); out.append(contentsOf: crlf)
            out.append(contentsOf: bytes); out.append(contentsOf: crlf)
        case .array(let items):
            out.append(UInt8(ascii: "*")); appendDecimal(Int64(items.count), to: &out); out.append(contentsOf: crlf)
            for item in items { item.encode(into: &out) }
        case .null:
            out.append(contentsOf: "$-1\r\n".utf8)
        }
    }
}

let crlf: [UInt8] = [13, 10]

/// Appends `n` in decimal without going through `String` (the encoder runs per command).
@inline(__always)
func appendDecimal(_ n: Int64, to out: inout [UInt8]) {
    if n < 0 {
        out.append(UInt8(ascii: "-"))
        // Int64.min's magnitude does not fit an Int64: go through UInt64.
        appendDecimal(UInt64(bitPattern: 0 &- n), to: &out)
    } else {
        appendDecimal(UInt64(n), to: &out)
    }
}

@inline(__always)
func appendDecimal(_ n: UInt64, to out: inout [UInt8]) {
    if n < 10 {
        out.append(UInt8(ascii: "0") &+ UInt8(n))
        return
    }
    var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // 32 bytes of scratch, on the stack
    withUnsafeMutableBytes(of: &digits) { raw in
        var i = raw.count
        var v = n
        while v > 0 {
            i -= 1
            raw[i] = UInt8(ascii: "0") &+ UInt8(v % 10)
            v /= 10
        }
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[i...]))
    }
}
