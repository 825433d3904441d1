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

/// The FNV-1a revision of bytes, as the daemon computes it.
func revision(of bytes: [UInt8]) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash &*= 0x0000_0100_0000_01b3
    }
    let hex = String(hash, radix: 16)
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
