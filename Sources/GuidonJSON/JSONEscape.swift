/// The escape sequences of JSON strings (RFC 8259 §7), decoded once for every parser in the
/// project: the configuration parser here and the request scanner of the wire protocol.
public enum JSONEscape {
    /// Why an escape sequence is not valid, and the offset it starts at.
    public struct Problem: Error, Sendable, Hashable {
        public let reason: String
        public let offset: Int
    }

    /// Decodes the escape sequence whose backslash is at `bytes[backslash]`, appends its UTF-8
    /// encoding to `out`, and returns the offset just past it. A `\u` high surrogate must be
    /// followed by an escaped low surrogate; lone surrogates are refused.
    public static func decode(
        _ bytes: UnsafeRawBufferPointer, backslash: Int, into out: inout [UInt8]
    ) throws(Problem) -> Int {
        var position = backslash + 1
        guard position < bytes.count else { throw Problem(reason: "unterminated string", offset: backslash) }
        let e = bytes[position]
        position += 1
        switch e {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
            let first = try hex4(bytes, at: &position)
            var scalar = first
            if (0xD800...0xDBFF).contains(first) {
                guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"),
                    bytes[position + 1] == UInt8(ascii: "u")
                else {
                    throw Problem(reason: "lone high surrogate \\u\(hex(first)) in string", offset: backslash)
                }
                position += 2
                let second = try hex4(bytes, at: &position)
                guard (0xDC00...0xDFFF).contains(second) else {
                    throw Problem(reason: "high surrogate not followed by a low surrogate in string", offset: backslash)
                }
                scalar = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(first) {
                throw Problem(reason: "lone low surrogate \\u\(hex(first)) in string", offset: backslash)
            }
            appendUTF8(scalar, to: &out)
        default:
            let shown = e >= 0x21 && e < 0x7F ? String(Character(Unicode.Scalar(e))) : "0x" + String(e, radix: 16)
            throw Problem(reason: "invalid escape '\\\(shown)' in string", offset: backslash)
        }
        return position
    }

    /// Appends the UTF-8 encoding of a Unicode scalar value (not a surrogate).
    @inline(__always)
    static func appendUTF8(_ v: UInt32, to out: inout [UInt8]) {
        switch v {
        case 0..<0x80:
            out.append(UInt8(v))
        case 0x80..<0x800:
            out.append(0xC0 | UInt8(v >> 6))
            out.append(0x80 | UInt8(v & 0x3F))
        case 0x800..<0x10000:
            out.append(0xE0 | UInt8(v >> 12))
            out.append(0x80 | UInt8((v >> 6) & 0x3F))
            out.append(0x80 | UInt8(v & 0x3F))
        default:
            out.append(0xF0 | UInt8(v >> 18))
            out.append(0x80 | UInt8((v >> 12) & 0x3F))
            out.append(0x80 | UInt8((v >> 6) & 0x3F))
            out.append(0x80 | UInt8(v & 0x3F))
        }
    }

    static func hex4(_ bytes: UnsafeRawBufferPointer, at position: inout Int) throws(Problem) -> UInt32 {
        guard bytes.count - position >= 4 else {
            throw Problem(reason: "incomplete \\u escape in string", offset: position)
        }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[position]
            let digit: UInt32
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(b - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(b - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(b - UInt8(ascii: "A") + 10)
            default: throw Problem(reason: "invalid hex digit in \\u escape", offset: position)
            }
            value = value << 4 | digit
            position += 1
        }
        return value
    }

    static func hex(_ v: UInt32) -> String {
        let digits = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
