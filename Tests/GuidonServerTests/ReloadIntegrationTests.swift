import Foundation
import GuidonJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A flag file whose `button` flag serves `label`, plus any extra flags.
func buttonFlags(_ label: String, extra: [String: String] = [:]) -> String {
    var members = [#""button": {"state": "ENABLED", "variants": {"only": "\#(label)"}, "defaultVariant": "only", "metadata": {"updatedBy": "\#(label)-author"}}"#]
    for (key, value) in extra.sorted(by: { $0.key < $1.key }) {
        members.append(#""\#(key)": {"state": "ENABLED", "variants": {"v": "\#(value)"}, "defaultVariant": "v"}"#)
    }
    return #"{"flags": {\#(members.joined(separator: ",\n"))}}"#
}

extension RunningDaemon {
    func button(_ client: LineClient) throws -> JSONValue? {
        try client.request(#"{"op":"eval","flag":"button"}"#)["value"]
    }

    /// Waits until `button` serves `label`.
    func waitForButton(_ label: String, _ client: LineClient) throws {
        try waitFor("button = \(label)") { try button(client) == .string(label) }
    }

    func lastReload(_ client: LineClient) throws -> JSONObject? {
        try client.request(#"{"op":"status"}"#)["lastReload"]?.object
    }
}

/// Replaces a file the way editors and deploy tools do: write a temporary file, rename it over.
func renameOver(_ path: String, _ text: String) throws {
    try text.write(toFile: path + ".tmp", atomically: false, encoding: .utf8)
    guard rename(path + ".tmp", path) == 0 else { throw TestFailure("rename: \(String(cString: strerror(errno)))") }
}

/// Rewrites a file in place (truncate and write, same inode).
func writeInPlace(_ path: String, _ text: String) throws {
    let fd = open(path, O_WRONLY | O_TRUNC | O_CREAT, 0o644)
    guard fd >= 0 else { throw TestFailure("open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    guard write(fd, bytes, bytes.count) == bytes.count else { throw TestFailure("short write") }
}

@Suite("guidond: reloads", .serialized)
struct ReloadIntegrationTests {
    @Test func inPlaceWrite() throws {
        let daemon = try RunningDaemon(flags: buttonFlags("one"))
        defer { try? daemon.finish() }
        let c = try daemon.client()
        #expect(try daemon.button(c) == "one")
        try writeInPlace(daemon.configPath, buttonFlags("two"))
        try daemon.waitForButton("two", c)
        #expect(try daemon.lastReload(c)?["trigger"] == "inotify")
        // The audit trail, with the flag's metadata (logged right after the new version is published).
        try daemon.waitFor("the audit log entry") {
            daemon.process.log.contains("flag button changed") && daemon.process.log.contains("updatedBy=two-author")
        }
    }

    @Test func renameOverTheFile() throws {
        let daemon = try RunningDaemon(flags: buttonFlags("one"))
        defer { try? daemon.finish() }
        let c = try daemon.client()
        try renameOver(daemon.configPath, buttonFlags("two"))
        try daemon.waitForButton("two", c)
        try renameOver(daemon.configPath, buttonFlags("three"))
        try daemon.waitForButton("three", c)
    }

    @Test func kubernetesStyleSymlinkSwap() throws {
        // flags.json -> ..data/flags.json, ..data -> ..v1 (how a ConfigMap volume is laid out).
        let dir = try ScratchDirectory()
        try FileManager.default.createDirectory(atPath: dir.file("..v1"), withIntermediateDirectories: false)
        try dir.write("..v1/flags.json", buttonFlags("one"))
        try FileManager.default.createSymbolicLink(atPath: dir.file("..data"), withDestinationPath: "..v1")
        try FileManager.default.createSymbolicLink(atPath: dir.file("flags.json"), withDestinationPath: "..data/flags.json")
        let daemon = try RunningDaemon(flags: nil, dir: dir)
        defer { try? daemon.finish() }
        let c = try daemon.client()
        #expect(try daemon.button(c) == "one")

        for (n, label) in ["two", "three"].enumerated() {
            let version = "..v\(n + 2)"
            try FileManager.default.createDirectory(atPath: dir.file(version), withIntermediateDirectories: false)
            try dir.write("\(version)/flags.json", buttonFlags(label))
            try FileManager.default.createSymbolicLink(atPath: dir.file("..data_tmp"), withDestinationPath: version)
            guard rename(dir.file("..data_tmp"), dir.file("..data")) == 0 else { throw TestFailure("rename ..data") }
            try FileManager.default.removeItem(atPath: dir.file("..v\(n + 1)"))
            try daemon.waitForButton(label, c)
        }
    }

    /// Every kind of change, to the file, through a symlink and through a symlink to a symlink,
    /// twice in a row: each is served, and `status` shows the new version and a good reload.
    @Test(arguments: FlagFileLayout.allCases, FlagFileChange.allCases)
    func everyChangeIsServedThroughEveryLayout(layout: FlagFileLayout, change: FlagFileChange) throws {
        let dir = try ScratchDirectory()
        let final = try layout.prepare(dir, buttonFlags("one"), dataDirectory: change.needsDataDirectory)
        let daemon = try RunningDaemon(flags: nil, dir: dir)
        defer { try? daemon.finish() }
        let c = try daemon.client()
        #expect(try daemon.button(c) == "one")
        for (generation, label) in [(2, "two"), (3, "three")] {
            try change.apply(to: final, buttonFlags(label), generation: generation, scratch: dir)
            try daemon.waitForButton(label, c)
            try daemon.waitFor("status to show the reload of \(label)") {
                let reload = try daemon.lastReload(c)
                let served = try c.request(#"{"op":"ping"}"#)["configVersion"]
                return reload?["ok"] == true && reload?["configVersion"] == served
            }
        }
    }

    /// SIGHUP reloads whatever the path leads to now, through every layout.
    @Test(arguments: FlagFileLayout.allCases)
    func sighupReloadsThroughEveryLayout(layout: FlagFileLayout) throws {
        let dir = try ScratchDirectory()
        let final = try layout.prepare(dir, buttonFlags("one"))
        let daemon = try RunningDaemon(flags: nil, extraArguments: ["--no-watch"], dir: dir)
        defer { try? daemon.finish() }
        let c = try daemon.client()
        try FlagFileChange.deleteThenRecreate.apply(to: final, buttonFlags("two"), generation: 2, scratch: dir)
        usleep(200_000)
        #expect(try daemon.button(c) == "one", "--no-watch reloads only on SIGHUP")
        daemon.process.signal(SIGHUP)
        try daemon.waitForButton("two", c)
        #expect(try daemon.lastReload(c)?["trigger"] == "sighup")
        #expect(try daemon.lastReload(c)?["ok"] == true)
    }

    /// Issue 11: `guidond --config LINK` with `LINK → DIR/real.json`; the target is deleted, and
    /// half a second later written anew (open, write, close). The failed reload in between is
    /// shown, and the new file is picked up within seconds.
    @Test func aDeletedSymlinkTargetWrittenAnewIsPickedUp() throws {
        let dir = try ScratchDirectory()
        let target = try FlagFileLayout.symlink.prepare(dir, buttonFlags("before"))
        let daemon = try RunningDaemon(flags: nil, dir: dir)
        defer { try? daemon.finish() }
        let c = try daemon.client()
        guard unlink(target) == 0 else { throw TestFailure("unlink") }
        try daemon.waitFor("the failed reload in status") { try daemon.lastReload(c)?["ok"] == false }
        #expect(try daemon.lastReload(c)?["error"]?.string?.contains("No such file") == true)
        #expect(try daemon.button(c) == "before")
        usleep(500_000)
        try writeInPlace(target, buttonFlags("after"))
        try daemon.waitFor("the new file", timeout: .seconds(5)) { try daemon.button(c) == "after" }
        let reload = try #require(try daemon.lastReload(c))
        #expect(reload["ok"] == true)
        #expect(reload["configVersion"] == (try c.request(#"{"op":"status"}"#)["configVersion"]))
    }

    @Test func anInvalidEditKeepsTheLastGoodFlagsUntilFixed() throws {
        let daemon = try RunningDaemon(flags: buttonFlags("good"))
        defer { try? daemon.finish() }
        let c = try daemon.client()
        let goodVersion = try c.request(#"{"op":"ping"}"#)["configVersion"]
        try renameOver(daemon.configPath, #"{"flags": {"button": {"state": "ENABLED", "variants": {}, "defaultVariant": "x"},"#)
        try daemon.waitFor("the failed reload in status") { try daemon.lastReload(c)?["ok"] == false }
        let failed = try #require(try daemon.lastReload(c))
        #expect(failed["error"]?.string?.contains(daemon.configPath) == true)
        #expect(failed["configVersion"] == goodVersion)
        #expect(try daemon.button(c) == "good")
        #expect(try c.request(#"{"op":"ping"}"#)["configVersion"] == goodVersion)
        try daemon.waitFor("the failure in the log") { daemon.process.log.contains("reload failed") }

        try renameOver(daemon.configPath, buttonFlags("fixed"))
        try daemon.waitForButton("fixed", c)
        #expect(try daemon.lastReload(c)?["ok"] == true)
    }

    @Test func deleteThenRecreate() throws {
        let daemon = try RunningDaemon(flags: buttonFlags("before"))
        defer { try? daemon.finish() }
        let c = try daemon.client()
        try FileManager.default.removeItem(atPath: daemon.configPath)
        try daemon.waitFor("the failed reload in status") { try daemon.lastReload(c)?["ok"] == false }
        #expect(try daemon.lastReload(c)?["error"]?.string?.contains("No such file") == true)
        #expect(try daemon.button(c) == "before")
        try writeInPlace(daemon.configPath, buttonFlags("after"))
        try daemon.waitForButton("after", c)
    }

    @Test func rewritingIdenticalContentChangesNothing() throws {
        let daemon = try RunningDaemon(flags: buttonFlags("same"))
        defer { try? daemon.finish() }
        let c = try daemon.client()
        let version = try c.request(#"{"op":"ping"}"#)["configVersion"]
        #expect(try daemon.lastReload(c) == nil)
        try renameOver(daemon.configPath, buttonFlags("same"))
        try daemon.waitFor("the reload attempt in status") { try daemon.lastReload(c) != nil }
        let attempt = try #require(try daemon.lastReload(c))
        #expect(attempt["ok"] == true)
        #expect(attempt["configVersion"] == version)
        #expect(!daemon.process.log.contains("configuration reloaded"))
    }

    @Test func aBusyDirectoryNeitherHidesReloadsNorBlocksShutdown() throws {
        let daemon = try RunningDaemon(flags: buttonFlags("one"))
        defer { daemon.dir.remove() }
        let c = try daemon.client()
        // Other programs write into the flag file's directory as fast as they can, each
        // alternating between two files so that inotify cannot merge the events.
        let writers = 4
        let stopWriting = ManagedFlag()
        let writersDone = DispatchGroup()
        for writer in 0..<writers {
            startNoiseWriter(in: daemon.dir, named: "\(writer)", until: stopWriting, group: writersDone)
        }
        defer {
            stopWriting.set()
            writersDone.wait()
        }

        try renameOver(daemon.configPath, buttonFlags("two"))
        try daemon.waitForButton("two", c)
        daemon.process.signal(SIGTERM)
        let code: Int32
        do {
            code = try daemon.process.waitForExit(timeout: .seconds(10))
        } catch {
            daemon.process.signal(SIGKILL)
            _ = try? daemon.process.waitForExit()
            throw error
        }
        #expect(code == 0, "guidond exited with \(code):\n\(daemon.process.log)")
    }

    @Test func reloadsRunOnALowPriorityThreadOfTheirOwn() throws {
        let daemon = try RunningDaemon(flags: buttonFlags("one"))
        defer { try? daemon.finish() }
        let c = try daemon.client()
        try renameOver(daemon.configPath, buttonFlags("two"))
        try daemon.waitForButton("two", c)

        // Every thread's name and nice value, from /proc/PID/task/TID/{comm,stat}.
        let tasks = "/proc/\(daemon.process.pid)/task"
        var niceByThread: [(name: String, nice: Int)] = []
        var mainNice: Int?
        for tid in try FileManager.default.contentsOfDirectory(atPath: tasks) {
            guard let comm = try? String(contentsOfFile: "\(tasks)/\(tid)/comm", encoding: .utf8),
                let stat = try? String(contentsOfFile: "\(tasks)/\(tid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }  // the thread has just ended
            // Fields after the name: state (3), ppid (4), …, nice (19).
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            let nice = Int(fields[16]) ?? -100
            if tid == "\(daemon.process.pid)" { mainNice = nice }
            niceByThread.append((comm.trimmingCharacters(in: .whitespacesAndNewlines), nice))
        }
        let base = try #require(mainNice)
        let reloadThreads = niceByThread.filter { $0.name.hasPrefix("TP-") }
        #expect(reloadThreads.count == 1 && reloadThreads.allSatisfy { $0.nice == min(base + 10, 19) }, "\(niceByThread)")
        // The event loops keep the process's priority (dispatch sets its own threads' by QoS).
        let eventLoops = niceByThread.filter { $0.name.hasPrefix("guidon-loop-") }
        #expect(!eventLoops.isEmpty && eventLoops.allSatisfy { $0.nice == base }, "\(niceByThread)")
    }

    @Test func sighupReloads() throws {
        let daemon = try RunningDaemon(flags: buttonFlags("one"), extraArguments: ["--no-watch"])
        defer { try? daemon.finish() }
        let c = try daemon.client()
        try writeInPlace(daemon.configPath, buttonFlags("two"))
        daemon.process.signal(SIGHUP)
        try daemon.waitForButton("two", c)
        #expect(try daemon.lastReload(c)?["trigger"] == "sighup")
        // A SIGHUP with nothing changed is a successful no-op.
        daemon.process.signal(SIGHUP)
        try daemon.waitFor("the second SIGHUP") { daemon.process.log.components(separatedBy: "SIGHUP: reloading").count == 3 }
        #expect(try daemon.button(c) == "two")
        #expect(try daemon.lastReload(c)?["ok"] == true)
    }

    @Test func watchReportsAddedChangedAndRemovedFlags() throws {
        let daemon = try RunningDaemon(flags: buttonFlags("one", extra: ["keep": "k", "old": "o"]))
        defer { try? daemon.finish() }
        let watcher = try daemon.client()
        let ack = try watcher.request(#"{"op":"watch","id":"w"}"#)
        #expect(ack["watching"] == true)

        try renameOver(daemon.configPath, buttonFlags("two", extra: ["keep": "k", "new": "n"]))
        let event = try watcher.readReply()
        #expect(event["event"] == "configurationChanged")
        #expect(event["added"] == ["new"])
        #expect(event["changed"] == ["button"])
        #expect(event["removed"] == ["old"])
        let served = try daemon.client().request(#"{"op":"ping"}"#)["configVersion"]
        #expect(event["configVersion"] == served)

        // Rewriting identical content changes nothing and sends nothing: the next event is the next real change.
        try renameOver(daemon.configPath, buttonFlags("two", extra: ["keep": "k", "new": "n"]))
        try writeInPlace(daemon.configPath, buttonFlags("two", extra: ["keep": "k", "new": "n"]))
        usleep(300_000)
        try renameOver(daemon.configPath, buttonFlags("two", extra: ["keep": "changed", "new": "n"]))
        let next = try watcher.readReply()
        #expect(next["changed"] == ["keep"])
        #expect(next["added"] == [] && next["removed"] == [])

        // Unchanged flags are carried over from the previous snapshot; every flag answers from the new file.
        let client = try daemon.client()
        #expect(try client.request(#"{"op":"eval","flag":"keep"}"#)["value"] == "changed")
        #expect(try client.request(#"{"op":"eval","flag":"new"}"#)["value"] == "n")
        #expect(try daemon.button(client) == "two")
        #expect(try client.request(#"{"op":"eval","flag":"old"}"#)["errorCode"] == "FLAG_NOT_FOUND")
    }

    /// A subscriber that never reads must not make the daemon hold every event for it.
    @Test func watchSubscriberThatDoesNotReadIsDisconnected() throws {
        // Every reload changes all 3,000 flags: each event names them all (~170 KB).
        func flags(_ generation: Int) -> String {
            var extra: [String: String] = [:]
            for i in 0..<3000 { extra["a-flag-with-a-rather-long-key-for-a-large-event-\(i)"] = "g\(generation)" }
            return buttonFlags("one", extra: extra)
        }
        let daemon = try RunningDaemon(flags: flags(0))
        defer { try? daemon.finish() }
        let stuck = try daemon.client()
        #expect(try stuck.request(#"{"op":"watch"}"#)["watching"] == true)
        let reader = try daemon.client()
        #expect(try reader.request(#"{"op":"watch"}"#)["watching"] == true)

        var generation = 0
        let warning = "disconnecting a watch subscriber that is not reading its events"
        while !daemon.process.log.contains(warning) && generation < 40 {
            generation += 1
            try renameOver(daemon.configPath, flags(generation))
            let event = try reader.readReply()  // the reading subscriber gets every event
            #expect((event["changed"]?.array?.count ?? 0) >= 3000)
        }
        #expect(daemon.process.log.contains(warning), "after \(generation) reloads")
        // The stuck subscriber finds some events, then the end of the connection.
        var received = 0
        while let _ = try stuck.readLine() { received += 1 }
        #expect(received > 0 && received < generation, "\(received) of \(generation) events")
        // The daemon and the other subscriber carry on.
        try renameOver(daemon.configPath, flags(generation + 1))
        #expect(try reader.readReply()["event"] == "configurationChanged")
        #expect(try daemon.client().request(#"{"op":"status"}"#)["connections"] == 2)  // the reader and this one
    }
}

@Suite("guidond: stress", .serialized)
struct StressIntegrationTests {
    /// Version `n` of the stress file: `gen` and `gen-mirror` both serve `n`, with padding so
    /// that in-place writes are not atomic.
    static func generation(_ n: Int) -> String {
        var members = [
            #""gen": {"state": "ENABLED", "variants": {"v": \#(n)}, "defaultVariant": "v"}"#,
            #""gen-mirror": {"state": "ENABLED", "variants": {"v": \#(n)}, "defaultVariant": "v"}"#,
        ]
        for i in 0..<200 {
            members.append(#""pad-\#(i)": {"state": "ENABLED", "variants": {"a": "\#(String(repeating: "p", count: 40))", "b": "\#(n)"}, "defaultVariant": "a"}"#)
        }
        return #"{"flags": {\#(members.joined(separator: ",\n"))}}"#
    }

    @Test func eightClientsFlatOutWhileTheFileIsRewrittenAHundredTimes() throws {
        let daemon = try RunningDaemon(flags: Self.generation(0))
        defer { try? daemon.finish() }
        let stop = ManagedFlag()
        let results = ResultsBox()
        let group = DispatchGroup()
        let socketPath = daemon.socketPath
        for clientIndex in 0..<8 {
            DispatchQueue.global().async(group: group) {
                var requests = 0
                var failures: [String] = []
                var lastSeen = -1
                do {
                    let c = try LineClient(path: socketPath)
                    while !stop.isSet || requests < 50 {
                        let reply = try c.request(#"{"op":"eval","id":\#(requests),"flags":["gen","gen-mirror"],"context":{"targetingKey":"c\#(clientIndex)"}}"#)
                        requests += 1
                        guard reply["id"] == .int(Int64(requests - 1)), case .array(let pair)? = reply["results"], pair.count == 2,
                            case .int(let a)? = pair[0].object?["value"], case .int(let b)? = pair[1].object?["value"]
                        else {
                            failures.append("bad reply: \(JSONValue.object(reply))")
                            continue
                        }
                        if a != b { failures.append("mixed versions in one reply: \(a) vs \(b)") }
                        if a < lastSeen { failures.append("went back from version \(lastSeen) to \(a)") }
                        lastSeen = Int(a)
                    }
                } catch {
                    failures.append("client \(clientIndex): \(error)")
                }
                results.add(requests: requests, failures: failures)
            }
        }
        for n in 1...100 {
            if n % 2 == 0 {
                try writeInPlace(daemon.configPath, Self.generation(n))
            } else {
                try renameOver(daemon.configPath, Self.generation(n))
            }
            usleep(15_000)
        }
        let c = try daemon.client()
        try daemon.waitFor("the last generation") {
            try c.request(#"{"op":"eval","flag":"gen"}"#)["value"] == 100
        }
        stop.set()
        group.wait()
        let (requests, failures) = results.snapshot()
        #expect(failures.isEmpty, "\(failures.prefix(10))")
        #expect(requests >= 8 * 50)
        print("stress: \(requests) requests from 8 clients during 100 rewrites, \(failures.count) failures")
    }
}

final class ResultsBox: @unchecked Sendable {
    private let lock = NSLock()
    private var requests = 0
    private var failures: [String] = []
    func add(requests: Int, failures: [String]) {
        lock.withLock {
            self.requests += requests
            self.failures += failures
        }
    }
    func snapshot() -> (Int, [String]) { lock.withLock { (requests, failures) } }
}
