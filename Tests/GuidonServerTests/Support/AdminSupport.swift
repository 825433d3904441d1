import Foundation
import GuidonEngine
import GuidonJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension RunningDaemon {
    /// A daemon with an admin socket (`admin.sock`) and an audit log (`audit.jsonl`) in its directory.
    static func withAdmin(flags: String?, extraArguments: [String] = [], dir: ScratchDirectory? = nil) throws -> RunningDaemon {
        let dir = try dir ?? ScratchDirectory()
        return try RunningDaemon(
            flags: flags,
            extraArguments: ["--admin-socket", dir.file("admin.sock"), "--audit-log", dir.file("audit.jsonl")] + extraArguments,
            dir: dir)
    }

    var adminSocketPath: String { dir.file("admin.sock") }
    var auditLogPath: String { dir.file("audit.jsonl") }

    func adminClient() throws -> LineClient { try LineClient(path: adminSocketPath) }

    /// The audit log's records, oldest first.
    func auditRecords() throws -> [JSONObject] {
        guard let text = try? String(contentsOfFile: auditLogPath, encoding: .utf8) else { return [] }
        return try text.split(separator: "\n").map { line in
            guard case .object(let record) = try JSONParser().parse(String(line)) else { throw TestFailure("not an object: \(line)") }
            return record
        }
    }

    /// The flag file's bytes now.
    func fileBytes() throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: configPath)))
    }
}

extension LineClient {
    /// Sends `request` (an object) and reads one reply.
    func ask(_ request: JSONObject) throws -> JSONObject {
        try self.request(JSONWriter.string(.object(request)))
    }

    /// The file's revision as the admin socket reports it.
    func revision() throws -> String {
        let reply = try ask(["op": "flags.get"])
        guard let revision = reply["revision"]?.string else { throw TestFailure("no revision in \(reply)") }
        return revision
    }

    /// A write based on the current revision.
    func write(_ request: JSONObject) throws -> JSONObject {
        var request = request
        request["ifRevision"] = .string(try revision())
        return try ask(request)
    }
}

/// The error code of a reply, if it is an error.
func errorCode(_ reply: JSONObject) -> String? { reply["error"]?.object?["code"]?.string }
func errorMessage(_ reply: JSONObject) -> String { reply["error"]?.object?["message"]?.string ?? "" }

/// The revision of bytes, as the daemon computes it: XXH64 (seed 0) as 16 hex digits, written
/// here from the algorithm's description, independently of `Revision.of`.
func revision(of bytes: [UInt8]) -> String {
    let p1: UInt64 = 11_400_714_785_074_694_791, p2: UInt64 = 14_029_467_366_897_019_727
    let p3: UInt64 = 1_609_587_929_392_839_161, p4: UInt64 = 9_650_029_242_287_828_579
    let p5: UInt64 = 2_870_177_450_012_600_261
    func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }
    func word(_ at: Int, _ size: Int) -> UInt64 {
        (0..<size).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) }
    }
    func round(_ acc: UInt64, _ input: UInt64) -> UInt64 { rotl(acc &+ input &* p2, 31) &* p1 }
    var i = 0
    var h: UInt64
    if bytes.count >= 32 {
        var lanes: [UInt64] = [p1 &+ p2, p2, 0, 0 &- p1]
        while i + 32 <= bytes.count {
            for lane in 0..<4 { lanes[lane] = round(lanes[lane], word(i + 8 * lane, 8)) }
            i += 32
        }
        h = rotl(lanes[0], 1) &+ rotl(lanes[1], 7) &+ rotl(lanes[2], 12) &+ rotl(lanes[3], 18)
        for lane in lanes { h = (h ^ round(0, lane)) &* p1 &+ p4 }
    } else {
        h = p5
    }
    h = h &+ UInt64(bytes.count)
    while i + 8 <= bytes.count {
        h = rotl(h ^ round(0, word(i, 8)), 27) &* p1 &+ p4
        i += 8
    }
    if i + 4 <= bytes.count {
        h = rotl(h ^ (word(i, 4) &* p1), 23) &* p2 &+ p3
        i += 4
    }
    while i < bytes.count {
        h = rotl(h ^ (UInt64(bytes[i]) &* p5), 11) &* p1
        i += 1
    }
    h = (h ^ (h >> 33)) &* p2
    h = (h ^ (h >> 29)) &* p3
    h ^= h >> 32
    let hex = String(h, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
}

/// A value behind a lock, for test threads.
final class Locked<Value>: @unchecked Sendable {  // every access holds `lock`
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLockedValue<T>(_ body: (inout Value) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
