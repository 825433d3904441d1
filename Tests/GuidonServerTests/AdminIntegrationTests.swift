import Foundation
import GuidonJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The admin socket against a real guidond: writes served and audited, revisions, refusals.
@Suite("guidond: the admin socket", .serialized)
struct AdminIntegrationTests {
    @Test func aWriteIsServedBeforeItIsAnsweredAndAudited() throws {
        let daemon = try RunningDaemon.withAdmin(flags: bundledExampleFlags)
        defer { try? daemon.finish() }
        let admin = try daemon.adminClient()
        let query = try daemon.client()
        let before = try #require(try query.request(#"{"op":"ping"}"#)["revision"]?.string)
        #expect(try admin.revision() == before)

        let reply = try admin.ask([
            "op": "flags.disable", "id": 7, "flag": "new-checkout", "ifRevision": .string(before), "by": "oncall", "reason": "INC-1",
        ])
        #expect(reply["id"] == 7)
        #expect(reply["ok"] == true)
        #expect(reply["summary"] == "new-checkout: state ENABLED → DISABLED")
        #expect(reply["previousRevision"] == .string(before))
        let after = try #require(reply["revision"]?.string)
        #expect(after == revision(of: try daemon.fileBytes()), "the reply names the revision of the file as written")
        // Read your writes: the very next query, on another socket, is answered from the new version.
        #expect(try query.request(#"{"op":"eval","flag":"new-checkout","default":"caller"}"#)["reason"] == "DISABLED")
        #expect(try query.request(#"{"op":"ping"}"#)["revision"] == .string(after))
        let status = try query.request(#"{"op":"status"}"#)
        #expect(status["revision"] == .string(after))
        // The last reload is the write's (trigger admin), or the watcher's that found its bytes.
        #expect(status["lastReload"]?.object?["configVersion"] == .string(after))
        #expect(["admin", "inotify"].contains(status["lastReload"]?.object?["trigger"]?.string ?? ""))
        // The flag's metadata says who and why, as the example file does by hand.
        let definition = try admin.ask(["op": "flags.get", "flag": "new-checkout"])
        #expect(definition["definition"]?.object?["metadata"]?.object?["updatedBy"] == "oncall")
        #expect(definition["definition"]?.object?["metadata"]?.object?["notes"] == "INC-1")
        #expect(definition["revision"] == .string(after))

        let record = try #require(try daemon.auditRecords().last)
        #expect(record["id"] == reply["auditId"])
        #expect(record["result"] == "applied")
        #expect(record["action"] == "flags.disable")
        #expect(record["flag"] == "new-checkout")
        #expect(record["by"] == "oncall" && record["reason"] == "INC-1")
        #expect(record["revisionBefore"] == .string(before) && record["revisionAfter"] == .string(after))
        #expect(record["force"] == false)
        #expect(record["before"]?.object?["state"] == "ENABLED" && record["after"]?.object?["state"] == "DISABLED")
        let actor = try #require(record["actor"]?.object)
        #expect(actor["uid"] == .int(Int64(getuid())))
        #expect(actor["pid"] == .int(Int64(getpid())))
        // …and the journal (here stderr) has it with its fields.
        try daemon.waitFor("the audit entry in the log") {
            daemon.process.log.contains("admin write applied: new-checkout: state ENABLED → DISABLED") && daemon.process.log.contains("auditId=\(record["id"]!.string!)")
        }
    }

    @Test func theQuerySocketRefusesWritesAndSaysWhereToSendThem() throws {
        let daemon = try RunningDaemon.withAdmin(flags: bundledExampleFlags)
        defer { try? daemon.finish() }
        let query = try daemon.client()
        let bytes = try daemon.fileBytes()
        let reply = try query.request(#"{"id":"w","op":"flags.rollout","flag":"search-v2","percentage":50,"force":true,"by":"mallory"}"#)
        #expect(errorCode(reply) == "FORBIDDEN")
        #expect(reply["id"] == "w")
        #expect(errorMessage(reply).contains(daemon.adminSocketPath))
        #expect(try query.request(#"{"op":"ping"}"#)["ok"] == true, "the connection stays usable")
        #expect(try daemon.fileBytes() == bytes)
        try daemon.waitFor("the refusal to be audited") {
            try daemon.auditRecords().contains { $0["result"] == "forbidden" && $0["socket"] == "query" && $0["by"] == "mallory" }
        }

        let plain = try RunningDaemon(flags: bundledExampleFlags)
        defer { try? plain.finish() }
        let refused = try plain.client().request(#"{"op":"flags.delete","flag":"theme"}"#)
        #expect(errorCode(refused) == "FORBIDDEN")
        #expect(errorMessage(refused).contains("no admin socket"))
    }

    @Test func aStaleRevisionIsAConflictAndForceIsRecorded() throws {
        let daemon = try RunningDaemon.withAdmin(flags: bundledExampleFlags)
        defer { try? daemon.finish() }
        let admin = try daemon.adminClient()
        let stale = try admin.revision()
        // Someone edits the file by hand meanwhile.
        var text = String(decoding: try daemon.fileBytes(), as: UTF8.self)
        text = text.replacingOccurrences(of: "\"Site theme served as an object.\"", with: "\"Edited by hand.\"")
        try renameOver(daemon.configPath, text)
        let current = revision(of: Array(text.utf8))
        let conflict = try admin.ask(["op": "flags.enable", "flag": "recommendations", "ifRevision": .string(stale)])
        #expect(errorCode(conflict) == "CONFLICT")
        #expect(conflict["error"]?.object?["revision"] == .string(current))
        #expect(try daemon.fileBytes() == Array(text.utf8), "nothing written")

        let missing = try admin.ask(["op": "flags.enable", "flag": "recommendations"])
        #expect(errorCode(missing) == "INVALID_REQUEST")
        #expect(errorMessage(missing).contains("ifRevision"))

        let forced = try admin.ask(["op": "flags.enable", "flag": "recommendations", "ifRevision": .string(stale), "force": true])
        #expect(forced["ok"] == true)
        #expect(forced["previousRevision"] == .string(current), "forced onto the file as it is, hand edit included")
        let served = try daemon.client().request(#"{"op":"list"}"#)
        let theme = served["flags"]?.array?.first { $0.object?["key"] == "theme" }
        #expect(theme?.object?["metadata"]?.object?["notes"] == "Edited by hand.")
        let records = try daemon.auditRecords()
        #expect(records.map { $0["result"]?.string } == ["conflict", "invalid", "applied"])
        #expect(records.last?["force"] == true)
    }

    /// The bytes written are recognised by the file watcher: no second reload, one event per write.
    @Test func theWatcherDoesNotReloadWhatTheWriterWrote() throws {
        let daemon = try RunningDaemon.withAdmin(flags: bundledExampleFlags, extraArguments: ["--log-level", "debug"])
        defer { try? daemon.finish() }
        let watcher = try daemon.client()
        #expect(try watcher.request(#"{"op":"watch"}"#)["watching"] == true)
        let admin = try daemon.adminClient()
        for percentage in [20, 30] {
            let reply = try admin.write(["op": "flags.rollout", "flag": "search-v2", "percentage": .int(Int64(percentage))])
            #expect(reply["ok"] == true, "\(reply)")
            let event = try watcher.readReply()
            #expect(event["event"] == "configurationChanged")
            #expect(event["changed"] == ["search-v2"])
            #expect(event["configVersion"] == reply["revision"])
        }
        // The watcher saw both renames and found the bytes it serves.
        try daemon.waitFor("the watcher to see the written file") {
            daemon.process.log.components(separatedBy: "flag file unchanged").count - 1 >= 1
        }
        usleep(300_000)
        #expect(daemon.process.log.components(separatedBy: "configuration reloaded").count - 1 == 2, "one publication per write, none from the watcher")
        // No further event arrives.
        var tv = timeval(tv_sec: 0, tv_usec: 300_000)
        setsockopt(watcher.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        #expect(throws: (any Error).self) { try watcher.readLine() }
    }

    @Test func aSymlinkIsWrittenAtItsRealPathAndModesAreKept() throws {
        let dir = try ScratchDirectory()
        try FileManager.default.createDirectory(atPath: dir.file("data"), withIntermediateDirectories: true)
        try dir.write("data/flags.json", bundledExampleFlags)
        chmod(dir.file("data/flags.json"), 0o640)
        try FileManager.default.createSymbolicLink(atPath: dir.file("flags.json"), withDestinationPath: "data/flags.json")
        let daemon = try RunningDaemon.withAdmin(flags: nil, dir: dir)
        defer { try? daemon.finish() }
        let reply = try daemon.adminClient().write(["op": "flags.setDefault", "flag": "theme", "variant": "fresh"])
        #expect(reply["ok"] == true, "\(reply)")
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: dir.file("flags.json"))) == "data/flags.json")
        var info = stat()
        #expect(stat(dir.file("data/flags.json"), &info) == 0 && info.st_mode & 0o7777 == 0o640)
        #expect(try String(contentsOfFile: dir.file("data/flags.json"), encoding: .utf8).contains(#""defaultVariant": "fresh""#))
        #expect(try daemon.client().request(#"{"op":"eval","flag":"theme"}"#)["variant"] == "fresh")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.file("data")).filter { $0.contains("guidon-") }
        #expect(leftovers.isEmpty)
    }

    @Test func aReadOnlyFileIsRefusedWithWhereToChangeIt() throws {
        let daemon = try RunningDaemon.withAdmin(flags: bundledExampleFlags)
        defer { try? daemon.finish() }
        chmod(daemon.configPath, 0o444)
        let bytes = try daemon.fileBytes()
        let reply = try daemon.adminClient().write(["op": "flags.disable", "flag": "theme"])
        #expect(errorCode(reply) == "READ_ONLY")
        #expect(errorMessage(reply).contains("change it at its source"))
        #expect(try daemon.fileBytes() == bytes)
        #expect(try daemon.auditRecords().last?["result"] == "failed")
    }

    /// A flag file on a read-only file system (a ConfigMap volume): refused, saying where to change it.
    @Test(.enabled(if: getuid() == 0 && access("/usr/bin/unshare", X_OK) == 0, "needs root and unshare(1) for a read-only mount"))
    func aReadOnlyFileSystemIsRefused() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try FileManager.default.createDirectory(atPath: dir.file("volume"), withIntermediateDirectories: true)
        try dir.write("volume/flags.json", bundledExampleFlags)
        // guidond in a mount namespace of its own, where its flag file's directory is mounted read-only.
        let process = try DaemonProcess(
            arguments: ["--config", dir.file("volume/flags.json"), "--socket", dir.file("guidon.sock"), "--admin-socket", dir.file("admin.sock")],
            logPath: dir.file("guidond.log"),
            wrapper: ["/usr/bin/unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                      #"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@""#, "sh", dir.file("volume")])
        defer {
            process.signal(SIGTERM)
            _ = try? process.waitForExit()
        }
        let deadline = ContinuousClock.now + .seconds(30)
        var admin: LineClient?
        while admin == nil && ContinuousClock.now < deadline {
            if let client = try? LineClient(path: dir.file("admin.sock")), (try? client.ask(["op": "ping"]))?["ok"] == true { admin = client }
            if let code = try? process.waitForExit(timeout: .zero) { throw TestFailure("guidond exited with \(code): \(process.log)") }
            usleep(20_000)
        }
        let client = try #require(admin, "guidond did not answer: \(process.log)")
        let reply = try client.write(["op": "flags.disable", "flag": "theme"])
        #expect(errorCode(reply) == "READ_ONLY")
        #expect(errorMessage(reply).contains("read-only file system"))
        #expect(errorMessage(reply).contains("at its source"))
        #expect(try String(contentsOfFile: dir.file("volume/flags.json"), encoding: .utf8) == bundledExampleFlags)
    }

    @Test func aDryRunShowsTheDiffAndWritesNothing() throws {
        let daemon = try RunningDaemon.withAdmin(flags: bundledExampleFlags)
        defer { try? daemon.finish() }
        let bytes = try daemon.fileBytes()
        let reply = try daemon.adminClient().ask(["op": "flags.rollout", "flag": "search-v2", "percentage": 50, "dryRun": true])
        #expect(reply["dryRun"] == true)
        let diff = try #require(reply["diff"]?.string)
        #expect(diff.contains("-        \"fractional\": [{\"var\": \"targetingKey\"}, [\"on\", 10], [\"off\", 90]]"))
        #expect(diff.contains("+        \"fractional\": [{\"var\": \"targetingKey\"}, [\"on\", 50], [\"off\", 50]]"))
        #expect(try daemon.fileBytes() == bytes)
        #expect(try daemon.auditRecords().isEmpty, "a dry run is not a write attempt")
    }

    /// Every malformed or impossible request: a clear error, nothing changed, the connection still usable.
    @Test func badInputOnEveryOperation() throws {
        let daemon = try RunningDaemon.withAdmin(flags: bundledExampleFlags)
        defer { try? daemon.finish() }
        let admin = try daemon.adminClient()
        let rev = JSONValue.string(try admin.revision())
        let bytes = try daemon.fileBytes()
        let cases: [(JSONObject, String, String)] = [
            (["op": "flags.enable", "flag": "nope", "ifRevision": rev], "NOT_FOUND", "no flag \"nope\""),
            (["op": "flags.delete", "flag": "nope", "ifRevision": rev], "NOT_FOUND", "no flag"),
            (["op": "flags.disable", "flag": 5, "ifRevision": rev], "INVALID_REQUEST", "\"flag\" must be a string"),
            (["op": "flags.create", "flag": "theme", "definition": ["state": "ENABLED", "variants": ["a": 1]], "ifRevision": rev], "ALREADY_EXISTS", "already exists"),
            (["op": "flags.create", "flag": "n", "definition": ["state": "ENABLED", "variants": ["a": 1, "b": "x"]], "ifRevision": rev], "INVALID_DOCUMENT", "does not validate"),
            (["op": "flags.create", "flag": "n", "ifRevision": rev], "INVALID_REQUEST", "needs \"definition\""),
            (["op": "flags.setDefault", "flag": "theme", "variant": "frsh", "ifRevision": rev], "INVALID_ARGUMENT", "did you mean \"fresh\""),
            (["op": "flags.rollout", "flag": "search-v2", "percentage": 101, "ifRevision": rev], "INVALID_ARGUMENT", "between 0 and 100"),
            (["op": "flags.rollout", "flag": "search-v2", "percentage": -5, "ifRevision": rev], "INVALID_ARGUMENT", "between 0 and 100"),
            (["op": "flags.rollout", "flag": "search-v2", "percentage": "fifty", "ifRevision": rev], "INVALID_REQUEST", "must be a number"),
            (["op": "flags.rollout", "flag": "search-v2", "ifRevision": rev], "INVALID_REQUEST", "needs \"percentage\""),
            (["op": "flags.target", "flag": "beta-dashboard", "users": ["u"], "variant": "maybe", "ifRevision": rev], "INVALID_ARGUMENT", "no variant \"maybe\""),
            (["op": "flags.target", "flag": "beta-dashboard", "users": ["u"], "domains": ["d"], "ifRevision": rev], "INVALID_REQUEST", "exactly one"),
            (["op": "flags.untarget", "flag": "beta-dashboard", "users": ["ghost"], "ifRevision": rev], "INVALID_ARGUMENT", "does not target"),
            (["op": "flags.split", "flag": "checkout-button-copy", "weights": ["control": 0, "urgent": 0, "friendly": 0], "ifRevision": rev], "INVALID_ARGUMENT", "all zero"),
            (["op": "flags.split", "flag": "checkout-button-copy", "weights": ["control": -1, "urgent": 5], "ifRevision": rev], "INVALID_ARGUMENT", "negative"),
            (["op": "flags.split", "flag": "checkout-button-copy", "weights": ["control": 1.5, "urgent": 5], "ifRevision": rev], "INVALID_REQUEST", "must be an integer"),
            (["op": "flags.schedule", "flag": "theme", "variant": "fresh", "start": "2026-12-02T00:00:00Z", "end": "2026-12-01T00:00:00Z", "ifRevision": rev], "INVALID_ARGUMENT", "is not after the start"),
            (["op": "flags.schedule", "flag": "theme", "variant": "fresh", "start": "next tuesday", "ifRevision": rev], "INVALID_REQUEST", "is not a date-time"),
            (["op": "flags.replace", "flag": "theme", "definition": ["state": "ENABLED", "variants": ["a": true, "b": 2]], "ifRevision": rev], "INVALID_DOCUMENT", "does not validate"),
            (["op": "flags.setMetadata", "flag": "theme", "name": "x", "value": [1], "ifRevision": rev], "INVALID_ARGUMENT", "strings, numbers or booleans"),
            (["op": "flags.removeMetadata", "flag": "theme", "name": "nope", "ifRevision": rev], "INVALID_ARGUMENT", "no metadata"),
            (["op": "flags.enable", "flag": "theme", "ifRevision": "HEAD"], "INVALID_REQUEST", "16 hexadecimal digits"),
            (["op": "flags.enable", "flag": "theme"], "INVALID_REQUEST", "needs \"ifRevision\""),
            (["op": "flags.frobnicate", "flag": "theme", "ifRevision": rev], "UNKNOWN_OP", "flags.rollout"),
            (["op": "tenants.grant", "ifRevision": rev], "UNKNOWN_OP", "flags."),
            (["op": "flags.history", "since": "yesterday"], "INVALID_REQUEST", "is not a date-time"),
        ]
        for (request, code, words) in cases {
            let reply = try admin.ask(request)
            #expect(errorCode(reply) == code, "\(request): \(reply)")
            #expect(errorMessage(reply).contains(words), "\(request): \(errorMessage(reply)) lacks \(words)")
        }
        // The validation report comes whole, with paths and lines.
        let invalid = try admin.ask(cases[4].0)
        let report = try #require(invalid["error"]?.object?["report"]?.object)
        #expect(report["errors"]?.array?.first?.object?["path"] == "flags.n.variants.b")
        #expect(report["errors"]?.array?.first?.object?["line"] != nil)

        // Not JSON, not an object; a line over the limit: refused, and the connection goes on.
        try admin.send("{nope\n[1]\n")
        #expect(errorCode(try admin.readReply()) == "INVALID_REQUEST")
        #expect(errorCode(try admin.readReply()) == "INVALID_REQUEST")
        try admin.send(#"{"op":"flags.enable","flag":"theme","padding":""# + String(repeating: "x", count: 70_000) + "\"}\n")
        #expect(errorCode(try admin.readReply()) == "TOO_LARGE")
        #expect(try admin.ask(["op": "ping"])["ok"] == true)
        #expect(try daemon.fileBytes() == bytes, "nothing was written")
        #expect(try admin.revision() == rev.string)
    }

    @Test func historyFiltersByFlagAndTime() throws {
        let daemon = try RunningDaemon.withAdmin(flags: bundledExampleFlags)
        defer { try? daemon.finish() }
        let admin = try daemon.adminClient()
        _ = try admin.write(["op": "flags.disable", "flag": "theme"])
        _ = try admin.write(["op": "flags.enable", "flag": "theme"])
        _ = try admin.write(["op": "flags.setMetadata", "flag": "search-v2", "name": "ticket", "value": "SRCH-312"])
        let theme = try admin.ask(["op": "flags.history", "flag": "theme"])["records"]?.array ?? []
        #expect(theme.compactMap { $0.object?["action"]?.string } == ["flags.disable", "flags.enable"])
        #expect(try admin.ask(["op": "flags.history", "limit": 1])["records"]?.array?.first?.object?["flag"] == "search-v2")
        #expect(try admin.ask(["op": "flags.history", "since": "2999-01-01T00:00:00Z"])["records"] == [])
    }

    @Test func adminConnectionsAreLimited() throws {
        let daemon = try RunningDaemon.withAdmin(flags: bundledExampleFlags, extraArguments: ["--max-admin-connections", "2"])
        defer { try? daemon.finish() }
        let first = try daemon.adminClient()
        let second = try daemon.adminClient()
        #expect(try first.ask(["op": "ping"])["ok"] == true)
        #expect(try second.ask(["op": "ping"])["ok"] == true)
        let third = try daemon.adminClient()
        #expect(errorCode(try third.readReply()) == "OVERLOADED")
        second.disconnect()
        try daemon.waitFor("a slot to free up") {
            (try? daemon.adminClient().ask(["op": "ping"]))?["ok"] == true
        }
    }
}
