import Atomics
import Foundation
import GuidonClient
import Testing

/// The client against the real `guidond` (built next to the tests), serving
/// protocol/examples/flags.json: every method, pipelining, restarts, timeouts, `watch`.
@Suite(.serialized) struct ClientIntegrationTests {
    let documentOrder = [
        "new-checkout", "bulk-export", "internal-tools", "beta-dashboard", "search-v2", "checkout-button-copy",
        "black-friday-banner", "recommendations", "max-cart-items", "theme",
    ]

    /// A configuration with a generous timeout: the machine that runs CI is shared and busy (while
    /// the rest of the suite starts dozens of daemons, a local round trip was seen to take over
    /// 2 s, and a first one over 5 s), and these tests are about behaviour, not speed.
    func configuration(_ socket: String, timeout: Duration = .seconds(30), poolSize: Int = 2) -> GuidonClientConfiguration {
        GuidonClientConfiguration(socket: socket, timeout: timeout, poolSize: poolSize)
    }

    @Test func everyEvaluationMethodAnswersWhatTheDaemonServes() async throws {
        try await withDaemon { daemon in
            await GuidonClient.withClient(configuration: configuration(daemon.socket)) { guidon in
                let gold: JSONObject = ["targetingKey": "user-42", "tier": "gold"]
                let result = await guidon.evaluate("new-checkout", context: gold, default: false, type: .boolean)
                #expect(result == GuidonEvaluation(
                    flag: "new-checkout", value: true, variant: "on", reason: .targetingMatch,
                    metadata: ["flagSetId": "shop-web", "owner": "team-checkout", "updatedBy": "maria.lopez",
                               "notes": "Gold and platinum customers get the redesigned checkout first.", "ticket": "SHOP-1432"]))

                #expect(await guidon.isEnabled("new-checkout", context: gold))
                #expect(await !guidon.isEnabled("new-checkout", context: ["tier": "silver"], default: true))
                // Disabled: the caller's default, whichever it is.
                #expect(await guidon.isEnabled("recommendations", default: true))
                #expect(await !guidon.isEnabled("recommendations", default: false))

                #expect(await guidon.int("max-cart-items", context: ["plan": "business"], default: 1) == 200)
                #expect(await guidon.int("max-cart-items", default: 1) == 50)
                #expect(await guidon.double("max-cart-items", context: ["plan": "enterprise"], default: 1.5) == 200)
                let copy = await guidon.string("checkout-button-copy", context: ["targetingKey": "user-7"], default: "?")
                #expect(["Buy now", "Buy now - ships today", "Get yours"].contains(copy))
                #expect(await guidon.object("theme", default: [:]) == ["primary": "#1f4e79", "rounded": false])

                // Evaluation problems are results with reason ERROR, and the default.
                let missing = await guidon.evaluate("no-such-flag", default: "fallback")
                #expect(missing.value == "fallback")
                #expect(missing.reason == .error)
                #expect(missing.errorCode == .flagNotFound)
                #expect(missing.clientError == nil)
                #expect(await guidon.string("new-checkout", default: "not a string") == "not a string")
                let mismatch = await guidon.evaluate("new-checkout", default: "x", type: .string)
                #expect(mismatch.errorCode == .typeMismatch)

                let many = await guidon.evaluateMany(["theme", "new-checkout", "theme"], context: gold)
                #expect(many.map(\.flag) == ["theme", "new-checkout", "theme"])
                #expect(many[1].value == true)
                #expect(many[0] == many[2])

                let all = await guidon.evaluateAll(context: gold)
                #expect(all.clientError == nil)
                #expect(all.results.map(\.flag) == documentOrder)
                #expect(all["new-checkout"]?.value == true)
                #expect(all["recommendations"]?.reason == .disabled)
                #expect(all["recommendations"]?.value == nil)
            }
        }
    }

    @Test func pingStatusAndListDescribeTheServedFile() async throws {
        try await withDaemon { daemon in
            try await GuidonClient.withClient(configuration: configuration(daemon.socket)) { guidon in
                let ping = try await guidon.ping()
                #expect(ping.flagCount == 10)
                #expect(ping.configVersion.count == 16)
                let status = try await guidon.status()
                #expect(status.configVersion == ping.configVersion)
                #expect(status.configPath == daemon.config)
                #expect(status.flagCount == 10)
                #expect(status.mode == "strict")
                #expect(status.connections >= 1)
                let list = try await guidon.list()
                #expect(list.configVersion == ping.configVersion)
                #expect(list.flags.map(\.key) == documentOrder)
                let recommendations = list.flags.first { $0.key == "recommendations" }
                #expect(recommendations?.enabled == false)
                #expect(recommendations?.hasTargeting == false)
                #expect(list.flags.first?.variants == ["on", "off"])
                #expect(list.flags.first?.defaultVariant == "off")
            }
        }
    }

    @Test func theThrowingVariantThrowsWhatTheDefaultAPIAnswersWithADefault() async throws {
        try await withDaemon { daemon in
            try await GuidonClient.withClient(configuration: configuration(daemon.socket)) { guidon in
                // A default that is not of the type asked is an INVALID_REQUEST (PROTOCOL.md §2).
                await #expect {
                    try await guidon.throwing.evaluate("new-checkout", default: "x", type: .boolean)
                } throws: { error in
                    (error as? GuidonClientError)?.code == .daemonError && (error as? GuidonClientError)?.daemonCode == "INVALID_REQUEST"
                }
                let answered = await guidon.evaluate("new-checkout", default: "x", type: .boolean)
                #expect(answered.value == "x")
                #expect(answered.reason == .error)
                #expect(answered.errorCode == .general)
                #expect(answered.clientError?.code == .daemonError)
                // An evaluation the daemon answered is a result, even with reason ERROR.
                let missing = try await guidon.throwing.evaluate("no-such-flag")
                #expect(missing.errorCode == .flagNotFound)
                #expect(try await guidon.throwing.evaluateMany(["theme", "beta-dashboard"]).count == 2)
                #expect(try await guidon.throwing.evaluateAll().results.count == 10)
            }
        }
    }

    @Test func concurrentCallsPipelineOnOneConnection() async throws {
        try await withDaemon { daemon in
            try await GuidonClient.withClient(configuration: configuration(daemon.socket, poolSize: 1)) { guidon in
                // What each user gets, asked one at a time.
                let users = (0..<64).map { "user-\($0)" }
                var expected: [String: JSONValue?] = [:]
                for user in users {
                    expected[user] = await guidon.evaluate("search-v2", context: ["targetingKey": .string(user)]).value
                }
                #expect(Set(expected.values.compactMap { $0 }).count == 2, "the rollout splits these users")
                let answers = expected
                // 16 tasks × 250 calls, all in flight together on one connection.
                let mismatches = await withTaskGroup(of: Int.self) { group in
                    for task in 0..<16 {
                        group.addTask {
                            var wrong = 0
                            for i in 0..<250 {
                                let user = users[(task * 7 + i) % users.count]
                                let result = await guidon.evaluate("search-v2", context: ["targetingKey": .string(user)])
                                if result.value != answers[user] || result.clientError != nil { wrong += 1 }
                            }
                            return wrong
                        }
                    }
                    return await group.reduce(0, +)
                }
                #expect(mismatches == 0)
                // Every one of those calls went over the pool's single connection.
                let connections = try await guidon.status().connections
                #expect(connections == 1)
            }
        }
    }

    @Test func aDaemonRestartCostsCallersNoErrorsAndAnswersResume() async throws {
        let daemon = try TestDaemon()
        try daemon.start()
        defer { try? daemon.stop() }
        let timeout = Duration.seconds(30)
        let configuration = GuidonClientConfiguration(
            socket: daemon.socket, timeout: timeout, poolSize: 2,
            reconnectBackoff: .init(initial: .milliseconds(5), maximum: .milliseconds(100)))
        try await GuidonClient.withClient(configuration: configuration) { guidon in
            let gold: JSONObject = ["targetingKey": "user-42", "tier": "gold"]
            #expect(await guidon.isEnabled("new-checkout", context: gold))

            // Callers keep calling while the daemon stops and starts again.
            let stop = ManagedFlag()
            let callers = Task {
                await withTaskGroup(of: [GuidonClientError.Code].self) { group in
                    for _ in 0..<4 {
                        group.addTask {
                            var failures: [GuidonClientError.Code] = []
                            while !stop.isSet {
                                let result = await guidon.evaluate("new-checkout", context: gold, default: false)
                                if let error = result.clientError {
                                    failures.append(error.code)
                                    #expect(result.value == false && result.reason == .error)
                                } else {
                                    #expect(result.value == true)
                                }
                                try? await Task.sleep(for: .milliseconds(1))
                            }
                            return failures
                        }
                    }
                    return await group.reduce(into: []) { $0 += $1 }
                }
            }

            try await Task.sleep(for: .milliseconds(100))
            try daemon.stop()
            // Down: each call answers its default at once — a failed connection, or none tried
            // during the back-off; never a wait for the timeout.
            let start = ContinuousClock.now
            for _ in 0..<20 {
                let result = await guidon.evaluate("new-checkout", context: gold, default: false)
                #expect(result.value == false)
                #expect(result.clientError?.code == .connectionFailed)
            }
            #expect(ContinuousClock.now - start < timeout, "20 calls to a stopped daemon took less than one timeout")
            await #expect(throws: GuidonClientError.self) { try await guidon.ping() }

            try daemon.start()
            try await daemon.waitFor("answers after the restart") {
                await guidon.evaluate("new-checkout", context: gold).clientError == nil
            }
            try await Task.sleep(for: .milliseconds(100))
            stop.set()
            let failures = await callers.value
            #expect(!failures.contains(.timeout), "no caller waited out a timeout: \(failures)")
            #expect(failures.allSatisfy { $0 == .connectionFailed || $0 == .connectionClosed }, "\(failures)")
            #expect(await guidon.isEnabled("new-checkout", context: gold))
        }
    }

    @Test func noDaemonAtAllAnswersDefaultsAtOnce() async throws {
        let directory = try makeScratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        await GuidonClient.withClient(configuration: configuration(directory + "/none.sock")) { guidon in
            let result = await guidon.evaluate("new-checkout", default: true)
            #expect(result.value == true)
            #expect(result.reason == .error)
            #expect(result.clientError?.code == .connectionFailed)
            #expect(result.errorMessage?.contains("none.sock") == true)
            #expect(await guidon.int("max-cart-items", default: 7) == 7)
            #expect(await guidon.evaluateMany(["a", "b"], default: 1).map(\.value) == [1, 1])
            #expect(await guidon.evaluateAll().clientError?.code == .connectionFailed)
            await #expect { try await guidon.status() } throws: { ($0 as? GuidonClientError)?.code == .connectionFailed }
        }
    }

    @Test func aDaemonThatNeverAnswersCostsTheTimeoutThenTheDefault() async throws {
        let silent = try FakeDaemon()
        defer { silent.stop() }
        await GuidonClient.withClient(configuration: configuration(silent.socket, timeout: .milliseconds(50))) { guidon in
            var start = ContinuousClock.now
            let result = await guidon.evaluate("new-checkout", default: true)
            #expect(ContinuousClock.now - start >= .milliseconds(50))
            #expect(result.value == true)
            #expect(result.clientError?.code == .timeout)
            #expect(result.errorMessage?.contains("within 50 ms") == true)

            // A per-call timeout overrides the configuration's.
            start = ContinuousClock.now
            #expect(await guidon.isEnabled("new-checkout", default: true, timeout: .milliseconds(300)))
            #expect(ContinuousClock.now - start >= .milliseconds(300))

            await #expect { try await guidon.ping() } throws: { ($0 as? GuidonClientError)?.code == .timeout }
            await #expect { try await guidon.throwing.evaluate("x") } throws: { ($0 as? GuidonClientError)?.code == .timeout }
            // Each timeout closed its connection: no call queues behind a stuck one.
            #expect(silent.connections >= 2)
        }
    }

    @Test func brokenRepliesAreProtocolViolationsAndTheDefault() async throws {
        let cases: [(String, @Sendable (String) -> String?)] = [
            ("garbage", { _ in "hello\n" }),
            ("wrong id", { _ in #"{"id":999999,"flag":"x","value":true,"reason":"STATIC","metadata":{}}"# + "\n" }),
            ("wrong shape", { line in
                let id = line.split(separator: ",").first!.dropFirst(6)
                return #"{"id":\#(id),"flag":"x","reason":7}"# + "\n"
            }),
        ]
        for (name, answer) in cases {
            let broken = try FakeDaemon(answer: answer)
            defer { broken.stop() }
            await GuidonClient.withClient(configuration: configuration(broken.socket)) { guidon in
                let result = await guidon.evaluate("x", default: 3)
                #expect(result.value == 3, "\(name)")
                #expect(result.clientError?.code == .protocolViolation, "\(name): \(String(describing: result.clientError))")
            }
        }
    }

    @Test func cancellingACallerEndsItsWaitAtOnce() async throws {
        let silent = try FakeDaemon()
        defer { silent.stop() }
        try await GuidonClient.withClient(configuration: configuration(silent.socket, timeout: .seconds(30))) { guidon in
            let start = ContinuousClock.now
            let call = Task { await guidon.evaluate("new-checkout", default: false) }
            try await Task.sleep(for: .milliseconds(100))
            call.cancel()
            let result = await call.value
            #expect(result.clientError?.code == .cancelled)
            #expect(ContinuousClock.now - start < .seconds(30))
        }
    }

    @Test func shutdownEndsEverythingAndMayBeCalledTwice() async throws {
        try await withDaemon { daemon in
            let guidon = GuidonClient(configuration: configuration(daemon.socket))
            let ping = try await guidon.ping()
            #expect(ping.flagCount == 10)
            var changes = guidon.watch().makeAsyncIterator()
            #expect(await changes.next()?.kind == .subscribed)
            let watcher = Task { [changes] in
                var changes = changes
                return await changes.next()
            }
            await guidon.shutdown()
            await guidon.shutdown()
            #expect(await watcher.value == nil)  // the stream ended
            let late = await guidon.evaluate("new-checkout", default: true)
            #expect(late.value == true)
            #expect(late.clientError?.code == .clientShutDown)
            await #expect { try await guidon.ping() } throws: { ($0 as? GuidonClientError)?.code == .clientShutDown }

            // withClient shuts down whether its body returns or throws.
            var kept: GuidonClient?
            await #expect(throws: TestFailure.self) {
                try await GuidonClient.withClient(configuration: configuration(daemon.socket)) { client in
                    kept = client
                    throw TestFailure("thrown from the body")
                }
            }
            #expect(await kept?.evaluate("theme").clientError?.code == .clientShutDown)
        }
    }
}

/// A flag several tasks read and one sets.
final class ManagedFlag: Sendable {
    private let value = ManagedAtomic(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set() { value.store(true, ordering: .relaxed) }
}
