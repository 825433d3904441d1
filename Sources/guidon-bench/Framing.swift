import CLinux

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// How replies are delimited on the wire and which ones count as failures.
enum ReplyFraming: Sendable {
    /// One reply per line (guidond's NDJSON and the echo floor). A reply that contains any
    /// of the markers is a failure (an error reply).
    case lines(failureMarkers: [[UInt8]])
    /// Redis RESP2 replies to `GET`: a bulk string (`$5\r\nhello\r\n`) is a success; a nil
    /// bulk (`$-1`) or an error (`-ERR …`) is a failure.
    case resp
    /// HTTP/1.1 responses on a keep-alive connection (OFREP): a head, then a `Content-Length`
    /// body. A status other than 200, or a body holding any of the markers, is a failure.
    case http(failureMarkers: [[UInt8]])
}

/// An incremental reply parser for one connection. It consumes complete lines from a
/// buffer and reports replies and failures; the caller keeps the unconsumed tail.
struct ReplyScanner {
    private let framing: ReplyFraming
    private var awaitingBulkBody = false

    init(_ framing: ReplyFraming) { self.framing = framing }

    /// Scans `bytes` and calls `reply(failed)` once per complete reply. Returns how many
    /// bytes were consumed (everything up to and including the last complete line).
    @inline(__always)
    mutating func scan(_ bytes: UnsafeRawBufferPointer, reply: (Bool) -> Void) -> Int {
        guard let base = bytes.baseAddress else { return 0 }
        if case .http(let markers) = framing { return Self.scanHTTP(bytes, markers, reply: reply) }
        var start = 0
        while start < bytes.count {
            guard let newline = memchr(base + start, 0x0A, bytes.count - start) else { break }
            let end = UnsafeRawPointer(newline) - base + 1
            let line = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
            switch framing {
            case .lines(let markers):
                reply(Self.contains(line, anyOf: markers))
            case .http:
                break
            case .resp:
                if awaitingBulkBody {
                    awaitingBulkBody = false
                    reply(false)
                } else if line[0] == UInt8(ascii: "$") {
                    if line.count > 1 && line[1] == UInt8(ascii: "-") {
                        reply(true)
                    } else {
                        awaitingBulkBody = true
                    }
                } else {
                    reply(line[0] == UInt8(ascii: "-"))
                }
            }
            start = end
        }
        return start
    }

    private static let headEnd = Array("\r\n\r\n".utf8)

    /// Whole HTTP responses in `bytes`: consumed up to the end of the last whole one.
    private static func scanHTTP(_ bytes: UnsafeRawBufferPointer, _ markers: [[UInt8]], reply: (Bool) -> Void) -> Int {
        guard let base = bytes.baseAddress else { return 0 }
        var start = 0
        while start < bytes.count {
            guard let end = headEnd.withUnsafeBytes({ memmem(base + start, bytes.count - start, $0.baseAddress!, $0.count) }) else { break }
            let bodyStart = UnsafeRawPointer(end) - base + headEnd.count
            let head = UnsafeRawBufferPointer(rebasing: bytes[start..<bodyStart])
            let status = head.count > 12 ? Int(String(decoding: head[9..<12], as: UTF8.self)) ?? 0 : 0
            let length = Self.contentLength(head) ?? 0
            guard bodyStart + length <= bytes.count else { break }
            let body = UnsafeRawBufferPointer(rebasing: bytes[bodyStart..<(bodyStart + length)])
            reply(status != 200 || contains(body, anyOf: markers))
            start = bodyStart + length
        }
        return start
    }

    private static let lengthField = Array("\ncontent-length:".utf8)

    /// The `Content-Length` of a response head (the name in any case).
    private static func contentLength(_ head: UnsafeRawBufferPointer) -> Int? {
        let field = lengthField
        var i = 0
        while i + field.count <= head.count {
            var matches = true
            for j in 0..<field.count {
                var byte = head[i + j]
                if byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") { byte += 32 }
                if byte != field[j] {
                    matches = false
                    break
                }
            }
            if matches {
                var k = i + field.count
                while k < head.count && head[k] == UInt8(ascii: " ") { k += 1 }
                var value = 0
                var digits = 0
                while k < head.count, head[k] >= UInt8(ascii: "0"), head[k] <= UInt8(ascii: "9") {
                    value = value * 10 + Int(head[k] - UInt8(ascii: "0"))
                    digits += 1
                    k += 1
                }
                return digits > 0 ? value : nil
            }
            i += 1
        }
        return nil
    }

    @inline(__always)
    private static func contains(_ line: UnsafeRawBufferPointer, anyOf markers: [[UInt8]]) -> Bool {
        for marker in markers {
            if marker.withUnsafeBytes({ find($0, in: line) }) { return true }
        }
        return false
    }
}

/// Whether `needle` occurs in `haystack` (glibc's `memmem`: a few dozen nanoseconds for a reply,
/// where looking at every quote in it took ten times that and made the client the bottleneck).
@inline(__always)
private func find(_ needle: UnsafeRawBufferPointer, in haystack: UnsafeRawBufferPointer) -> Bool {
    guard !needle.isEmpty else { return true }
    guard let base = haystack.baseAddress, needle.count <= haystack.count else { return false }
    return memmem(base, haystack.count, needle.baseAddress!, needle.count) != nil
}

/// One kind of request sent over and over: its bytes and how its replies are framed.
struct RequestSpec: Sendable {
    var name: String
    /// The lines sent in turn, all of one length: the same request on behalf of different
    /// users, so that nothing on the server side can get away with remembering the last one.
    var lines: [[UInt8]]
    var framing: ReplyFraming
    /// Flag evaluations one reply stands for (16 for a 16-flag batch).
    var evaluationsPerReply: Int = 1

    init(name: String, lines: [[UInt8]], framing: ReplyFraming, evaluationsPerReply: Int = 1) {
        precondition(!lines.isEmpty && lines.allSatisfy { $0.count == lines[0].count }, "request lines of one length")
        self.name = name
        self.lines = lines
        self.framing = framing
        self.evaluationsPerReply = evaluationsPerReply
    }

    init(name: String, line: [UInt8], framing: ReplyFraming, evaluationsPerReply: Int = 1) {
        self.init(name: name, lines: [line], framing: framing, evaluationsPerReply: evaluationsPerReply)
    }

    var line: [UInt8] { lines[0] }
    var lineLength: Int { lines[0].count }

    /// Every line once, then the first `extra` again: any run of up to `extra` lines that
    /// starts at a line boundary before the end of the first pass is contiguous here.
    func ring(extra: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity((lines.count + extra) * lineLength)
        for i in 0..<(lines.count + extra) { bytes += lines[i % lines.count] }
        return bytes
    }
}
