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
        var start = 0
        while start < bytes.count {
            guard let newline = memchr(base + start, 0x0A, bytes.count - start) else { break }
            let end = UnsafeRawPointer(newline) - base + 1
            let line = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
            switch framing {
            case .lines(let markers):
                reply(Self.contains(line, anyOf: markers))
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
