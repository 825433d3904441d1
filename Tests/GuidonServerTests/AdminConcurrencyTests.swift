import Foundation
import GuidonEditing
import GuidonEngine
import GuidonJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Writers racing through the admin socket while readers evaluate, and a daemon killed mid-write.
@Suite("guidond: concurrent and interrupted writes", .serialized)
struct AdminConcurrencyTests {
    /// Four flags; writers 0–3 all edit `shared`, writers 4–7 each edit a flag of their own.
    static let flags = """
        {
          "flags": {
            "shared": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"},
            "own-4": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"},
            "own-5": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"},
            "own-6": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"},
            "own-7": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}
          }
        }

        """

    /// The state a reader sees: every `wN` metadata member of every flag.
    typealias State = [String: Int64]

    static func state(ofEvalAll reply: JSONObject) -> State? {
        guard case .object(let results)? = reply["results"] else { return nil }
        var state = State()
        for (flag, result) in results {
            for (name, value) in result.object?["metadata"]?.object ?? [:] where name.hasPrefix("w") {
                guard case .int(let n) = value else { return nil }
                state["\(flag)/\(name)"] = n
            }
        }
        return state
    }

    /// 8 writers × 50 edits while 8 readers evaluate: every write is applied or refused with
    /// CONFLICT; none is lost or applied twice (each writer's last applied value survives, and the
    /// applied writes form one chain of revisions); the file validates whenever it is read; every
    /// read shows the state after some prefix of the applied writes: one whole version.
    @Test func writersRaceWhileReadersEvaluate() throws {
        let daemon = try RunningDaemon.withAdmin(flags: Self.flags)
        defer { try? daemon.finish() }
        let writers = 8
        let editsPerWriter = 50
        let outcomes = Locked<[(writer: Int, n: Int64, result: String)]>([])
        let readStates = Locked<[State]>([])
        let problems = Locked<[String]>([])
        let stop = Locked(false)
        let group = DispatchGroup()

        func spawn(_ body: @escaping @Sendable () -> Void) {
            group.enter()
            let thread = Thread {
                body()
                group.leave()
            }
            thread.stackSize = 1 << 20
            thread.start()
        }

        let adminPath = daemon.adminSocketPath
        let queryPath = daemon.socketPath
        let configPath = daemon.configPath
        let writersDone = DispatchGroup()
        for writer in 0..<writers {
            writersDone.enter()
            spawn {
                defer { writersDone.leave() }
                do {
                    let client = try LineClient(path: adminPath)
                    let flag = writer < 4 ? "shared" : "own-\(writer)"
                    for n in 1...Int64(editsPerWriter) {
                        let reply = try client.write(["op": "flags.setMetadata", "flag": .string(flag), "name": .string("w\(writer)"), "value": .int(n)])
                        let result = reply["ok"] == true ? "applied" : (errorCode(reply) ?? "?")
                        outcomes.withLockedValue { $0.append((writer, n, result)) }
                        if result != "applied" && result != "CONFLICT" { problems.withLockedValue { $0.append("writer \(writer): \(reply)") } }
                    }
                } catch {
                    problems.withLockedValue { $0.append("writer \(writer): \(error)") }
                }
            }
        }
        for reader in 0..<8 {
            spawn {
                do {
                    let client = try LineClient(path: queryPath)
                    while !stop.withLockedValue({ $0 }) {
                        let reply = try client.request(#"{"op":"evalAll","context":{"targetingKey":"r\#(reader)"}}"#)
                        guard let state = Self.state(ofEvalAll: reply) else {
                            problems.withLockedValue { $0.append("reader \(reader): \(reply)") }
                            return
                        }
                        readStates.withLockedValue { $0.append(state) }
                        usleep(500)  // enough reads to see every version, without starving the writers of the two cores
                    }
                } catch {
                    problems.withLockedValue { $0.append("reader \(reader): \(error)") }
                }
            }
        }
        // The file, read at any moment, is a whole document that validates.
        spawn {
            while !stop.withLockedValue({ $0 }) {
                guard let data = FileManager.default.contents(atPath: configPath) else { continue }
                do {
                    _ = try Snapshot.compile(json: Array(data))
                } catch {
                    problems.withLockedValue { $0.append("the file did not validate: \(error)") }
                }
                usleep(2_000)
            }
        }
        writersDone.wait()
        stop.withLockedValue { $0 = true }
        group.wait()

        #expect(problems.withLockedValue { $0 }.isEmpty, "\(problems.withLockedValue { $0 }.prefix(5))")
        let all = outcomes.withLockedValue { $0 }
        #expect(all.count == writers * editsPerWriter)
        let applied = all.filter { $0.result == "applied" }
        print("concurrent writes: \(applied.count) applied, \(all.count - applied.count) conflicts; \(readStates.withLockedValue { $0.count }) reads")
        #expect(applied.count >= editsPerWriter, "at least the writers alone on their flags get through")

        // The audit log: one applied record per applied write, chained revision to revision.
        let records = try daemon.auditRecords()
        let appliedRecords = records.filter { $0["result"] == "applied" }
        #expect(appliedRecords.count == applied.count)
        #expect(records.filter { $0["result"] == "conflict" }.count == all.count - applied.count)
        var expectedBefore = revision(of: Array(Self.flags.utf8))
        var states: Set<State> = [[:]]
        var current = State()
        for record in appliedRecords {
            #expect(record["revisionBefore"] == .string(expectedBefore), "an applied write was not based on the version before it")
            expectedBefore = record["revisionAfter"]?.string ?? ""
            let after = record["after"]?.object?["metadata"]?.object ?? [:]
            let flag = record["flag"]?.string ?? ""
            for (name, value) in after where name.hasPrefix("w") {
                if case .int(let n) = value { current["\(flag)/\(name)"] = n }
            }
            states.insert(current)
        }
        #expect(expectedBefore == revision(of: try daemon.fileBytes()))
        // Nothing lost: every writer's last applied value is in the file.
        let final = try JSONParser().parse(try daemon.fileBytes())
        for writer in 0..<writers {
            let flag = writer < 4 ? "shared" : "own-\(writer)"
            let last = applied.filter { $0.writer == writer }.map(\.n).max()
            #expect(final.object?["flags"]?.object?[flag]?.object?["metadata"]?.object?["w\(writer)"] == last.map(JSONValue.int))
        }
        // Every read shows one whole version.
        for state in readStates.withLockedValue({ $0 }) {
            #expect(states.contains(state), "a read mixed versions: \(state)")
        }
    }

    /// `kill -9` at random moments across 200 writes: the file is always the version before the
    /// write in progress or the one after it, and always validates; restarted, the daemon goes on.
    @Test func aKilledWriterLeavesTheOldFileOrTheNewOne() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("flags.json", bundledExampleFlags)
        var generator = SystemRandomNumberGenerator()
        var writes = 0
        var kills = 0
        var outcomes: [String: Int] = [:]
        var bytes = Array(bundledExampleFlags.utf8)
        while writes < 200 {
            let daemon = try RunningDaemon.withAdmin(flags: nil, dir: dir)
            let admin = try daemon.adminClient()
            let burst = Int.random(in: 3...15, using: &generator)
            var killed = false
            for i in 0..<burst where !killed {
                writes += 1
                let percentage = Int64.random(in: 0...100, using: &generator)
                let operation = FlagOperation(flag: "search-v2", action: .rollout(percentage: Double(percentage), variant: nil, otherVariant: nil))
                let expected = try FlagEditor().apply(operation, to: bytes).document
                let request: JSONObject = [
                    "op": "flags.rollout", "flag": "search-v2", "percentage": .int(percentage), "ifRevision": .string(revision(of: bytes)),
                ]
                if i == burst - 1 {
                    // The last write of the burst: kill the daemon somewhere in it.
                    try admin.send(JSONWriter.string(.object(request)) + "\n")
                    usleep(UInt32.random(in: 0...15_000, using: &generator))
                    daemon.process.signal(SIGKILL)
                    _ = try daemon.process.waitForExit()
                    killed = true
                    kills += 1
                    let now = try daemon.fileBytes()
                    #expect(now == bytes || now == expected, "a torn or unexpected file after kill -9")
                    #expect((try? Snapshot.compile(json: now)) != nil, "the file does not validate after kill -9")
                    outcomes[now == expected ? "new" : "old", default: 0] += 1
                    bytes = now
                } else {
                    let reply = try admin.ask(request)
                    #expect(reply["ok"] == true, "\(reply)")
                    #expect(try daemon.fileBytes() == expected)
                    bytes = expected
                }
            }
        }
        print("kill -9 during writes: \(writes) writes, \(kills) kills, file after the kill: \(outcomes)")
        #expect(kills >= 10)
    }
}
