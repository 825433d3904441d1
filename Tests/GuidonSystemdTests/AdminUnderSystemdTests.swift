import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The admin socket under a real systemd: guidon-admin.socket's permissions, the query socket's
/// refusal, and a write that is served, written through the sandbox, and audited.
@Suite(
    "guidond's admin socket under a namespaced systemd",
    .serialized,
    .enabled(if: TestEnvironment.canBootSystemd, "needs root and unshare(1) to boot systemd in private namespaces")
)
struct AdminUnderSystemdTests {
    /// Runs the staged `guidon` inside the namespace as `user`, with exactly `groups`.
    func guidon(_ systemd: NamespacedSystemd, as user: String, groups: [String], _ arguments: [String]) throws -> CommandResult {
        let identity = ["--reuid=\(user)", "--regid=nogroup"] + (groups.isEmpty ? ["--clear-groups"] : ["--groups=\(groups.joined(separator: ","))"])
        let command = [systemd.root.path + "/usr/local/bin/guidon"] + arguments + ["--admin-socket", "/run/guidon/admin.sock"]
        return try Command.run(
            TestEnvironment.namespaceScript, ["exec", systemd.root.path, "setpriv"] + identity + ["--"] + command, scratch: systemd.root)
    }

    @Test("only guidon-admin may connect to the admin socket; the query socket refuses writes; a write is served and audited")
    func adminSocket() async throws {
        try await NamespacedSystemd.with("admin", .staged(config: FlagFiles.greeting("hello"))) { systemd in
            #expect(try systemd.property("ActiveState", of: "guidon-admin.socket") == "active")
            var info = stat()
            try #require(stat(systemd.hostPath("/run/guidon/admin.sock"), &info) == 0)
            #expect(info.st_mode & 0o777 == 0o660)
            let adminGroup = try systemd.inside("getent", ["group", "guidon-admin"]).trimmedOutput
            #expect(adminGroup.split(separator: ":", omittingEmptySubsequences: false).dropFirst(2).first == "\(info.st_gid)")
            // A person who changes flags: a real user (not nobody), so that the audit can name them.
            try systemd.inside("useradd", ["--uid", "4242", "--no-create-home", "--shell", "/usr/sbin/nologin", "ops"])

            // A member of guidon (who may query) but not of guidon-admin is refused at connect(2)…
            let reader = try guidon(systemd, as: "ops", groups: ["guidon"], ["flags", "get", "greeting"])
            #expect(!reader.succeeded, "a query-only member reached the admin socket: \(reader.output)")
            #expect(reader.error.contains("ermission denied"), "refused for another reason: \(reader.error)")
            // …and the query socket, which it may use, refuses writes and names the admin socket.
            let refused = try LineClient.request(#"{"op":"flags.disable","flag":"greeting","force":true}"#, path: systemd.socketPath)
            let error = try #require(refused["error"] as? [String: Any])
            #expect(error["code"] as? String == "FORBIDDEN")
            #expect((error["message"] as? String)?.contains("/run/guidon/admin.sock") == true)

            // A member of guidon-admin changes the flag; it is served, on disk, and audited.
            let writer = try guidon(systemd, as: "ops", groups: ["guidon-admin"], ["flags", "default", "greeting", "bye", "--by", "ops", "--reason", "test"])
            #expect(writer.succeeded, "\(writer.output) \(writer.error)")
            #expect(writer.output.hasPrefix("greeting: default variant hello → bye (revision "), "\(writer.output)")
            let reply = try LineClient.request(FlagFiles.evalGreeting, path: systemd.socketPath)
            #expect(reply["value"] as? String == "bye")
            let file = try String(contentsOfFile: systemd.hostPath(NamespacedSystemd.configPath), encoding: .utf8)
            #expect(file.contains(#""defaultVariant": "bye""#))
            #expect(file.contains(#""updatedBy": "ops""#))
            let audit = try String(contentsOfFile: systemd.hostPath("/var/lib/guidon/audit.jsonl"), encoding: .utf8)
            let records = try audit.split(separator: "\n").compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            let applied = try #require(records.first { $0["result"] as? String == "applied" })
            let actor = try #require(applied["actor"] as? [String: Any])
            #expect(actor["uid"] as? Int == 4242, "SO_PEERCRED names the real caller: \(actor)")
            #expect(actor["user"] as? String == "ops")
            #expect(applied["reason"] as? String == "test")
            #expect(records.contains { $0["result"] as? String == "forbidden" && $0["socket"] as? String == "query" })
            // The journal has the same record, with its fields.
            let entries = try await eventually("the audit entry in the journal") {
                try systemd.journal().first { $0["GUIDON_AUDIT_ID"] as? String == applied["id"] as? String }
            }
            #expect(entries["GUIDON_FLAG"] as? String == "greeting")
            #expect(entries["GUIDON_ACTOR_UID"] as? String == "4242")
            #expect(try systemd.property("ActiveState") == "active")
        }
    }
}
