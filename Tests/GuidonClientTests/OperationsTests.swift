import GuidonJSON
import Testing

@testable import GuidonClient

/// Each operation's request members and reply decoding, against the protocol's examples.
@Suite struct OperationsTests {
    private func request<Operation: GuidonOperation>(_ operation: Operation) throws -> JSONObject {
        var members: [UInt8] = []
        operation.encodeMembers(into: &members)
        // What the handler sends: the id, then the members.
        let line = Array(#"{"id":1,"#.utf8) + members + Array("}".utf8)
        guard case .object(let object) = try JSONParser(duplicateKeys: .reject).parse(line) else {
            throw GuidonClientError(.protocolViolation, "not an object")
        }
        return object
    }

    private func reply(_ text: String) throws -> JSONObject {
        guard case .object(let object) = try JSONParser().parse(text) else { throw GuidonClientError(.protocolViolation, text) }
        return object
    }

    @Test func evaluateOneWritesOnlyWhatWasGiven() throws {
        let plain = try request(EvaluateOne(flag: "new-checkout", context: ["targetingKey": "user-42"], type: nil, defaultValue: nil))
        #expect(plain == ["id": 1, "op": "eval", "flag": "new-checkout", "context": ["targetingKey": "user-42"]])
        let typed = try request(EvaluateOne(flag: "q\"uote", context: [:], type: .boolean, defaultValue: false))
        #expect(typed == ["id": 1, "op": "eval", "flag": "q\"uote", "context": [:], "type": "boolean", "default": false])
    }

    @Test func evaluateOneReadsEveryMember() throws {
        let result = try EvaluateOne(flag: "new-checkout", context: [:], type: nil, defaultValue: nil).decode(reply(
            #"{"id":1,"flag":"new-checkout","value":true,"variant":"on","reason":"TARGETING_MATCH","metadata":{"flagSetId":"shop-web","ticket":"SHOP-1432"}}"#))
        #expect(result == GuidonEvaluation(
            flag: "new-checkout", value: true, variant: "on", reason: .targetingMatch,
            metadata: ["flagSetId": "shop-web", "ticket": "SHOP-1432"]))
        let missing = try EvaluateOne(flag: "nope", context: [:], type: nil, defaultValue: 3).decode(reply(
            #"{"id":1,"flag":"nope","value":3,"reason":"ERROR","errorCode":"FLAG_NOT_FOUND","errorMessage":"flag not found","metadata":{}}"#))
        #expect(missing.reason == .error)
        #expect(missing.errorCode == .flagNotFound)
        #expect(missing.value == 3)
        #expect(missing.clientError == nil)
    }

    @Test func aMistypedMemberIsAViolationThatSaysWhere() {
        #expect {
            try EvaluateOne(flag: "f", context: [:], type: nil, defaultValue: nil).decode(reply(#"{"flag":"f","reason":7,"metadata":{}}"#))
        } throws: { error in
            guard let error = error as? GuidonClientError else { return false }
            return error.code == .protocolViolation && error.message.contains(#""reason" should be a string, found a integer"#)
        }
    }

    @Test func evaluateManyChecksItGotOneResultPerKey() throws {
        let many = EvaluateMany(flags: ["a", "b"], context: ["k": 1], type: .string, defaultValue: "x")
        #expect(try request(many) == ["id": 1, "op": "eval", "flags": ["a", "b"], "context": ["k": 1], "type": "string", "default": "x"])
        let results = try many.decode(reply(
            #"{"results":[{"flag":"a","value":"1","reason":"STATIC","metadata":{}},{"flag":"b","value":"x","reason":"DISABLED","metadata":{}}]}"#))
        #expect(results.map(\.flag) == ["a", "b"])
        #expect(results.map(\.reason) == [.static, .disabled])
        #expect(throws: GuidonClientError.self) {
            try many.decode(reply(#"{"results":[{"flag":"a","value":"1","reason":"STATIC","metadata":{}}]}"#))
        }
    }

    @Test func evaluateAllKeepsDocumentOrderAndLooksUpByKey() throws {
        let all = EvaluateAll(context: ["tier": "gold"])
        #expect(try request(all) == ["id": 1, "op": "evalAll", "context": ["tier": "gold"]])
        let results = try all.decode(reply(
            #"{"results":{"z":{"flag":"z","value":1,"variant":"one","reason":"STATIC","metadata":{}},"a":{"flag":"a","reason":"DISABLED","metadata":{}}}}"#))
        #expect(results.results.map(\.flag) == ["z", "a"])
        #expect(results["z"]?.value == 1)
        #expect(results["a"]?.value == nil)
        #expect(results["missing"] == nil)
    }

    @Test func pingStatusAndListReadTheProtocolExamples() throws {
        #expect(try request(Ping()) == ["id": 1, "op": "ping"])
        let ping = try Ping().decode(reply(#"{"id":4,"ok":true,"configVersion":"8d66de54e05ea417","flags":10}"#))
        #expect(ping.configVersion == "8d66de54e05ea417")
        #expect(ping.flagCount == 10)

        let status = try Status().decode(reply(
            #"{"id":5,"version":"0.1.0","configPath":"/etc/guidon/flags.json","configVersion":"8d66de54e05ea417","flags":10,"loadedAt":"2026-11-21T11:52:11Z","uptimeSeconds":3605,"mode":"strict","warnings":0,"connections":3,"lastReload":{"ok":false,"at":"2026-11-21T12:03:00Z","trigger":"inotify","configVersion":"8d66de54e05ea417","error":"bad"},"later":1}"#))
        #expect(status.version == "0.1.0")
        #expect(status.uptimeSeconds == 3605)
        #expect(status.lastReload == GuidonStatus.Reload(ok: false, at: "2026-11-21T12:03:00Z", trigger: "inotify", configVersion: "8d66de54e05ea417", error: "bad"))
        #expect(status.reply["later"] == 1)
        let fresh = try Status().decode(reply(
            #"{"version":"0.1.0","configPath":"p","configVersion":"v","flags":0,"loadedAt":"t","uptimeSeconds":0,"mode":"lenient","warnings":2,"connections":1,"lastReload":null}"#))
        #expect(fresh.lastReload == nil)

        let list = try List().decode(reply(
            #"{"id":6,"configVersion":"v","flags":[{"key":"new-checkout","state":"ENABLED","variants":["on","off"],"defaultVariant":"off","targeting":true,"metadata":{"ticket":"SHOP-1432"}},{"key":"recommendations","state":"DISABLED","variants":["on"],"defaultVariant":null,"targeting":false,"metadata":{}}]}"#))
        #expect(list.flags.map(\.key) == ["new-checkout", "recommendations"])
        #expect(list.flags.map(\.enabled) == [true, false])
        #expect(list.flags[0].defaultVariant == "off")
        #expect(list.flags[1].defaultVariant == nil)
        #expect(list.flags[0].hasTargeting)
    }

    @Test func watchReadsTheAcknowledgementAndEvents() throws {
        #expect(try Watch().decode(reply(#"{"id":7,"ok":true,"watching":true,"configVersion":"8d66"}"#)) == "8d66")
        let change = try Watch.decodeEvent(reply(
            #"{"event":"configurationChanged","configVersion":"3d9e","added":["new-flag"],"changed":["theme"],"removed":[]}"#))
        #expect(change == GuidonConfigurationChange(kind: .changed, configVersion: "3d9e", added: ["new-flag"], changed: ["theme"]))
        #expect(try Watch.decodeEvent(reply(#"{"event":"somethingLater"}"#)) == nil)
    }

    @Test func theBackoffDoublesUpToItsMaximum() {
        let backoff = GuidonClientConfiguration.Backoff(initial: .milliseconds(10), maximum: .seconds(1))
        #expect((1...9).map { backoff.delay(afterFailures: $0) } == [10, 20, 40, 80, 160, 320, 640, 1000, 1000].map { .milliseconds($0) })
    }
}
