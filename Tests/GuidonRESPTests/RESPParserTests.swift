import GuidonRESP
import Testing

/// Feeds `bytes` to the parser three ways (whole, byte by byte, and in chunks holding several
/// replies) the way a connection receives them, and checks the three agree.
private func parseAll(_ bytes: [UInt8], parser: RESPParser = RESPParser()) throws -> [RESPValue] {
    func feed(chunkSize: Int) throws -> [RESPValue] {
        var buffer: [UInt8] = []
        var values: [RESPValue] = []
        var offset = 0
        var i = 0
        while i < bytes.count {
            buffer += bytes[i..<min(bytes.count, i + chunkSize)]
            i += chunkSize
            while let (value, end) = try parser.parse(buffer, from: offset) {
                values.append(value)
                offset = end
            }
        }
        #expect(offset == buffer.count, "bytes left over after the last reply")
        return values
    }
    let whole = try feed(chunkSize: max(1, bytes.count))
    let byteByByte = try feed(chunkSize: 1)
    let chunked = try feed(chunkSize: 7)
    #expect(whole == byteByByte)
    #expect(whole == chunked)
    return whole
}

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite("RESP reply parser")
struct RESPParserTests {
    @Test("every RESP2 type, whole, byte by byte and several replies per chunk")
    func everyType() throws {
        let stream = "+OK\r\n-ERR wrong type\r\n:42\r\n:-7\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n"
            + "*3\r\n:1\r\n$4\r\na\r\nb\r\n*2\r\n+x\r\n*1\r\n:-9223372036854775808\r\n"
        let values = try parseAll(bytes(stream))
        #expect(values == [
            .simpleString("OK"), .error("ERR wrong type"), .integer(42), .integer(-7),
            .bulkString(bytes("hello")), .bulkString([]), .null, .null, .array([]),
            .array([.integer(1), .bulkString(bytes("a\r\nb")), .array([.simpleString("x"), .array([.integer(Int64.min)])])]),
        ])
    }

    @Test("binary bulk strings round-trip through the encoder")
    func binaryRoundTrip() throws {
        let value = RESPValue.array([.bulkString([0, 13, 10, 255, 36]), .integer(Int64.max), .null, .error("E"), .simpleString("")])
        var out: [UInt8] = []
        value.encode(into: &out)
        value.encode(into: &out)
        #expect(try parseAll(out) == [value, value])
    }

    @Test("an incomplete reply is nil and consumes nothing", arguments: [
        "+OK", "+OK\r", ":12", "$5\r\nhel", "$5\r\nhello", "$5\r\nhello\r", "*2\r\n:1\r\n", "*2\r\n:1\r\n$1\r\n", "$", "*", "",
    ])
    func incomplete(_ text: String) throws {
        #expect(try RESPParser().parse(bytes(text)) == nil)
    }

    @Test("malformed replies are refused with the offending byte's offset", arguments: [
        ("?x\r\n", 0), ("+OK\rX", 4), ("+O\nK\r\n", 2), (":12a\r\n", 3), (":\r\n", 1), (":-\r\n", 1),
        (":9223372036854775808\r\n", 1), ("$-2\r\n", 1), ("$3\r\nabcX\r\n", 7), ("$3\r\nabc\rX", 7), ("*-5\r\n", 1),
        ("*1\r\n!\r\n", 4), ("$1x\r\n", 2),
    ])
    func malformed(_ text: String, _ offset: Int) {
        #expect {
            _ = try RESPParser().parse(bytes(text))
        } throws: { error in
            guard let error = error as? RESPError else { return false }
            return error.code == .malformedReply && error.offset == offset && error.message.contains("byte \(offset)")
        }
    }

    @Test("a malformed byte is refused as soon as it arrives, not only once the reply is whole")
    func malformedEarly() {
        // The bulk string's terminator is wrong already in its first byte: no need to wait for more.
        #expect(throws: RESPError.self) { try RESPParser().parse(bytes("$3\r\nabcX")) }
    }

    @Test("limits: nesting depth, bulk length, array length, line length")
    func limits() throws {
        let parser = RESPParser(maxDepth: 2, maxBulkLength: 4, maxArrayLength: 3, maxLineLength: 8)
        #expect(try parser.parse(bytes("*1\r\n*1\r\n:1\r\n"))?.value == .array([.array([.integer(1)])]))
        for text in ["*1\r\n*1\r\n*1\r\n:1\r\n", "$5\r\nhello\r\n", "*4\r\n", "+123456789", "+123456789\r\n"] {
            #expect(throws: RESPError.self, "\(text.debugDescription)") { try parser.parse(bytes(text)) }
        }
        // A line that may still end within the limit is only incomplete.
        #expect(try parser.parse(bytes("+12345678")) == nil)
    }

    @Test("a huge declared array does not reserve more than the bytes could hold")
    func hugeArrayDeclared() throws {
        #expect(try RESPParser().parse(bytes("*16000000\r\n:1\r\n")) == nil)
    }

    @Test("parsing from an offset, as a connection does with several replies in its buffer")
    func offsets() throws {
        let buffer = bytes(":1\r\n+two\r\n")
        let first = try #require(try RESPParser().parse(buffer))
        #expect(first.value == .integer(1) && first.end == 4)
        let second = try #require(try RESPParser().parse(buffer, from: first.end))
        #expect(second.value == .simpleString("two") && second.end == buffer.count)
        #expect(try RESPParser().parse(buffer, from: buffer.count) == nil)
    }

    @Test("accessors: string and integer")
    func accessors() {
        #expect(RESPValue.bulkString(bytes("12")).integer == 12)
        #expect(RESPValue.simpleString("OK").string == "OK")
        #expect(RESPValue.integer(3).string == nil)
        #expect(RESPValue.null.integer == nil)
    }
}

@Suite("RESP command encoder")
struct RESPCommandTests {
    @Test("arrays of bulk strings, byte for byte")
    func encode() {
        #expect(RESPCommand.encode(["SET", "k", "välue"]) == bytes("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\nvälue\r\n"))
        #expect(RESPCommand.encode([]) == bytes("*0\r\n"))
        var out: [UInt8] = []
        RESPCommand.appendHeader(count: 3, to: &out)
        RESPCommand.appendArgument("INCRBY", to: &out)
        RESPCommand.appendArgument("k", to: &out)
        RESPCommand.appendArgument(Int64(-1234567890123), to: &out)
        #expect(out == bytes("*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$14\r\n-1234567890123\r\n"))
        RESPCommand.append(["PING"], to: &out)
        #expect(out.suffix(14) == ArraySlice(bytes("*1\r\n$4\r\nPING\r\n")))
    }
}

@Suite("Redis addresses")
struct RedisAddressTests {
    @Test("accepted forms")
    func accepted() throws {
        #expect(try RedisAddress(parsing: "redis://127.0.0.1:6380") == .tcp(host: "127.0.0.1", port: 6380))
        #expect(try RedisAddress(parsing: "redis://cache.internal") == .tcp(host: "cache.internal", port: 6379))
        #expect(try RedisAddress(parsing: "redis://[::1]:7000/") == .tcp(host: "::1", port: 7000))
        #expect(try RedisAddress(parsing: "redis+unix:///run/redis/redis.sock") == .unix(path: "/run/redis/redis.sock"))
        #expect(try RedisAddress(parsing: "redis://[::1]:7000").description == "redis://[::1]:7000")
    }

    @Test("refused forms say why", arguments: [
        "http://x:1", "redis://", "redis://h:0", "redis://h:99999", "redis://h:x", "redis://u:p@h:1", "redis://h:1/2",
        "redis+unix://relative.sock", "redis://[::1", "",
    ])
    func refused(_ text: String) {
        #expect {
            _ = try RedisAddress(parsing: text)
        } throws: { error in
            (error as? RESPError)?.code == .invalidAddress && "\(error)".contains(text)
        }
    }
}
