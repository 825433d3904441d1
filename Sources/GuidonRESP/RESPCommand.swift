/// Encodes commands as Redis expects them: an array of bulk strings.
///
/// Appends to a caller's buffer so that a pipeline of commands is one buffer and one `send`.
public enum RESPCommand {
    /// Appends `*N\r\n` then each argument as a bulk string.
    public static func append(_ arguments: [String], to out: inout [UInt8]) {
        appendHeader(count: arguments.count, to: &out)
        for argument in arguments { appendArgument(argument, to: &out) }
    }

    /// The command as a new buffer.
    public static func encode(_ arguments: [String]) -> [UInt8] {
        var out: [UInt8] = []
        append(arguments, to: &out)
        return out
    }

    /// Appends the array header of a command of `count` arguments; follow it with exactly
    /// `count` calls of `appendArgument` (for building a command without an array of strings).
    public static func appendHeader(count: Int, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "*"))
        appendDecimal(Int64(count), to: &out)
        out.append(contentsOf: crlf)
    }

    /// Appends one argument as a bulk string.
    public static func appendArgument(_ argument: String, to out: inout [UInt8]) {
        var argument = argument
        argument.withUTF8 { appendArgument(bytes: UnsafeRawBufferPointer($0), to: &out) }
    }

    /// Appends an integer argument in decimal (no `String` in between).
    public static func appendArgument(_ argument: Int64, to out: inout [UInt8]) {
        // 32 bytes of scratch on the stack: the digits are counted before the header is written.
        var scratch: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &scratch) { raw in
            var i = raw.count
            var v = argument.magnitude
            repeat {
                i -= 1
                raw[i] = UInt8(ascii: "0") &+ UInt8(v % 10)
                v /= 10
            } while v > 0
            if argument < 0 {
                i -= 1
                raw[i] = UInt8(ascii: "-")
            }
            appendArgument(bytes: UnsafeRawBufferPointer(rebasing: raw[i...]), to: &out)
        }
    }

    /// Appends `n` in decimal (for building a key as bytes).
    public static func appendDecimal(_ n: Int64, to out: inout [UInt8]) {
        GuidonRESP.appendDecimal(n, to: &out)
    }

    /// Appends one binary argument as a bulk string.
    public static func appendArgument(bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "$"))
        appendDecimal(Int64(bytes.count), to: &out)
        out.append(contentsOf: crlf)
        out.append(contentsOf: bytes)
        out.append(contentsOf: crlf)
    }
}
