import GuidonEditing
import GuidonEngine
import GuidonJSON
import Testing

/// Each verb's resulting JSON, and how the result evaluates.
@Suite struct VerbTests {
    /// A small pretty-printed file: a boolean flag without targeting and a string flag.
    static let base = Array("""
        {
          "flags": {
            "feature": {
              "state": "ENABLED",
              "variants": {"on": true, "off": false},
              "defaultVariant": "off"
            },
            "color": {
              "state": "ENABLED",
              "variants": {"red": "#f00", "green": "#0f0", "blue": "#00f"},
              "defaultVariant": "red"
            }
          }
        }

        """.utf8)

    @Test func createAndGet() throws {
        let definition: JSONValue = ["state": "ENABLED", "variants": ["a": 1, "b": 2], "defaultVariant": "b",
                                     "targeting": ["if": [["in": [["var": "plan"], ["pro"]]], "a"]]]
        let created = try edit(Self.base, "limit", .create(definition: definition), by: "ci", reason: "release 42")
        #expect(created.summary == "limit: created (variants a, b; default b)")
        let stored = try FlagEditor.definition(of: "limit", in: created.document)
        #expect(stored.object?["metadata"] == ["updatedBy": "ci", "notes": "release 42"])
        #expect(stored.object?["targeting"] == definition.object?["targeting"])
        #expect(variant(created.snapshot, "limit", nil, ["plan": "pro"]) == "a")
        #expect(variant(created.snapshot, "limit", nil, ["plan": "free"]) == "b")
    }

    @Test func deleteEnableDisableDefault() throws {
        let deleted = try edit(Self.base, "color", .delete)
        #expect(deleted.snapshot.info("color") == nil)
        #expect(deleted.before?.object?["defaultVariant"] == "red")

        let disabled = try edit(Self.base, "feature", .setState(enabled: false))
        #expect(disabled.after?.object?["state"] == "DISABLED")
        #expect(disabled.snapshot.evaluate("feature", context: context()).reason == .disabled)
        let again = try edit(disabled.document, "feature", .setState(enabled: false))
        #expect(!again.changed)
        #expect(again.summary == "feature: already DISABLED")
        let enabled = try edit(disabled.document, "feature", .setState(enabled: true))
        #expect(enabled.document == Self.base)

        let defaulted = try edit(Self.base, "color", .setDefault(variant: "blue"))
        #expect(defaulted.summary == "color: default variant red → blue")
        #expect(variant(defaulted.snapshot, "color") == "blue")
    }

    @Test func rolloutWritesAFractionalWithTheRolledOutVariantFirst() throws {
        let rolled = try edit(Self.base, "feature", .rollout(percentage: 10, variant: nil, otherVariant: nil))
        #expect(try targeting(rolled) == ["fractional": [["on", 10], ["off", 90]]])
        #expect(rolled.summary == "feature: rollout 0 % → 10 %")
        let raised = try edit(rolled.document, "feature", .rollout(percentage: 12.5, variant: nil, otherVariant: nil))
        #expect(try targeting(raised) == ["fractional": [["on", 1250], ["off", 8750]]])
        #expect(raised.summary == "feature: rollout 10 % → 12.5 %")
        let full = try edit(raised.document, "feature", .rollout(percentage: 100, variant: nil, otherVariant: nil))
        #expect(try targeting(full) == ["fractional": [["on", 10000], ["off", 0]]])
        #expect(variant(full.snapshot, "feature", "anyone") == "on")

        let colors = try edit(Self.base, "color", .rollout(percentage: 30, variant: "green", otherVariant: nil))
        #expect(try targeting(colors) == ["fractional": [["green", 30], ["red", 70]]])
        #expect(colors.summary == "color: rollout of green 0 % → 30 %")
    }

    /// Every user in at 10 % is in at 50 %; lowering only removes users.
    @Test func rolloutIsMonotonic() throws {
        let users = (0..<20_000).map { "user-\($0)" }
        func inUsers(_ document: [UInt8], _ flag: String) throws -> Set<String> {
            let snapshot = try Snapshot.compile(json: document)
            return Set(users.filter { variant(snapshot, flag, $0) == "on" })
        }
        let at10 = try edit(Self.base, "feature", .rollout(percentage: 10, variant: nil, otherVariant: nil))
        let at50 = try edit(at10.document, "feature", .rollout(percentage: 50, variant: nil, otherVariant: nil))
        let at20 = try edit(at50.document, "feature", .rollout(percentage: 20, variant: nil, otherVariant: nil))
        let at33 = try edit(at20.document, "feature", .rollout(percentage: 33.33, variant: nil, otherVariant: nil))
        let (in10, in50, in20, in33) = (try inUsers(at10.document, "feature"), try inUsers(at50.document, "feature"),
                                        try inUsers(at20.document, "feature"), try inUsers(at33.document, "feature"))
        #expect(in10.isSubset(of: in50))
        #expect(in20.isSubset(of: in50), "lowering only removes")
        #expect(in10.isSubset(of: in20))
        #expect(in20.isSubset(of: in33) && in33.isSubset(of: in50), "across totals of 100 and 10,000 too")
        // And the shares are what was asked (within sampling noise).
        for (set, share) in [(in10, 0.10), (in50, 0.50), (in20, 0.20), (in33, 0.3333)] {
            #expect(abs(Double(set.count) / Double(users.count) - share) < 0.015, "\(set.count) of \(users.count) for \(share)")
        }

        // The example's rollout keeps its own bucketing value ({"var": "targetingKey"}) and stays monotonic.
        let example10 = try inUsers(exampleFile, "search-v2")
        let example50 = try edit(exampleFile, "search-v2", .rollout(percentage: 50, variant: nil, otherVariant: nil))
        #expect(example10.isSubset(of: try inUsers(example50.document, "search-v2")))
    }

    @Test func targetingListsAnswerBeforeTheRollout() throws {
        let rolled = try edit(Self.base, "feature", .rollout(percentage: 0, variant: nil, otherVariant: nil))
        let allowed = try edit(rolled.document, "feature", .target(.users(["vip-1", "vip-2"]), variant: nil, deny: false))
        #expect(try targeting(allowed) == ["if": [["in": [["var": "targetingKey"], ["vip-1", "vip-2"]]], "on",
                                                 ["fractional": [["on", 0], ["off", 100]]]]])
        #expect(allowed.summary == "feature: targetingKey vip-1, vip-2 → on")
        #expect(variant(allowed.snapshot, "feature", "vip-2") == "on")
        #expect(variant(allowed.snapshot, "feature", "someone") == "off")

        let domains = try edit(allowed.document, "feature", .target(.domains(["Acme.example", "@labs.example"]), variant: nil, deny: false))
        let denied = try edit(domains.document, "feature", .target(Subjects(attribute: "tenantId", values: ["t-666"]), variant: nil, deny: true))
        #expect(try targeting(denied) == ["if": [
            ["in": [["var": "tenantId"], ["t-666"]]], "off",
            ["in": [["var": "targetingKey"], ["vip-1", "vip-2"]]], "on",
            ["or": [["ends_with": [["var": "email"], "@acme.example"]], ["ends_with": [["var": "email"], "@labs.example"]]]], "on",
            ["fractional": [["on", 0], ["off", 100]]],
        ]])
        #expect(denied.summary == "feature: tenantId t-666 → off (deny-list)")
        #expect(variant(denied.snapshot, "feature", "x", ["email": "bo@labs.example"]) == "on")
        #expect(variant(denied.snapshot, "feature", "vip-1", ["tenantId": "t-666"]) == "off", "the deny-list wins")

        // Targeting a user for the other variant moves them; untargeting removes an emptied rule.
        let moved = try edit(denied.document, "feature", .target(.users(["vip-2"]), variant: "off", deny: false))
        #expect(moved.summary == "feature: targetingKey vip-2 → off (was on)")
        #expect(variant(moved.snapshot, "feature", "vip-2") == "off")
        let removed = try edit(moved.document, "feature", .untarget(.users(["vip-1", "vip-2"]), variant: nil))
        #expect(try targeting(removed) == ["if": [
            ["in": [["var": "tenantId"], ["t-666"]]], "off",
            ["or": [["ends_with": [["var": "email"], "@acme.example"]], ["ends_with": [["var": "email"], "@labs.example"]]]], "on",
            ["fractional": [["on", 0], ["off", 100]]],
        ]])
        // Raising the rollout keeps every rule.
        let raised = try edit(removed.document, "feature", .rollout(percentage: 40, variant: nil, otherVariant: nil))
        #expect(try targeting(raised)?.object?["if"]?.array?.count == 5)
    }

    @Test func aHandWrittenRuleIsKeptInPlace() throws {
        // new-checkout: {"if": [{"$ref": "isPremiumTier"}, "on", "off"]}.
        let rolled = try edit(exampleFile, "new-checkout", .rollout(percentage: 25, variant: nil, otherVariant: nil))
        #expect(try targeting(rolled) == ["if": [["$ref": "isPremiumTier"], "on", ["fractional": [["on", 25], ["off", 75]]]]])
        #expect(rolled.summary == "new-checkout: rollout 0 % → 25 %")
        #expect(variant(rolled.snapshot, "new-checkout", "u", ["tier": "gold"]) == "on")
        // bulk-export: the existing deny-list for "off" grows in place.
        let denied = try edit(exampleFile, "bulk-export", .target(Subjects(attribute: "tenantId", values: ["tenant-0777"]), variant: nil, deny: true))
        #expect(try targeting(denied)?.object?["if"]?.array?[2] == ["in": [["var": "tenantId"], ["tenant-0666", "tenant-0777"]]])
        #expect(variant(denied.snapshot, "bulk-export", nil, ["tenantId": "tenant-0777", "plan": "enterprise"]) == "off")
    }

    @Test func splitAndSchedule() throws {
        let split = try edit(Self.base, "color", .split([SplitWeight(variant: "red", weight: 1), SplitWeight(variant: "green", weight: 1),
                                                         SplitWeight(variant: "blue", weight: 2)]))
        #expect(try targeting(split) == ["fractional": [["red", 1], ["green", 1], ["blue", 2]]])
        #expect(split.summary == "color: split none → red 1 / green 1 / blue 2")
        let counts = (0..<4000).reduce(into: [String: Int]()) { counts, i in
            counts[variant(split.snapshot, "color", "u\(i)") ?? "-", default: 0] += 1
        }
        #expect(abs(Double(counts["blue"] ?? 0) / 4000 - 0.5) < 0.05)

        let start: Int64 = 1_795_737_600  // 2026-11-27T00:00:00Z
        let end: Int64 = 1_796_083_200
        let scheduled = try edit(split.document, "color", .schedule(variant: "green", start: start, end: end))
        #expect(scheduled.summary == "color: schedule green from 2026-11-27T00:00:00Z until 2026-12-01T00:00:00Z")
        #expect(try targeting(scheduled) == ["if": [
            ["and": [[">=": [["var": "$flagd.timestamp"], .int(start)]], ["<": [["var": "$flagd.timestamp"], .int(end)]]]], "green",
            ["fractional": [["red", 1], ["green", 1], ["blue", 2]]],
        ]])
        #expect(variant(scheduled.snapshot, "color", "u1", now: start) == "green")
        #expect(variant(scheduled.snapshot, "color", "u1", now: end - 1) == "green")
        #expect(variant(scheduled.snapshot, "color", "u1", now: end) == variant(split.snapshot, "color", "u1"))
        let openEnded = try edit(scheduled.document, "color", .schedule(variant: "blue", start: end, end: nil))
        #expect(try targeting(openEnded)?.object?["if"]?.array?[2] == [">=": [["var": "$flagd.timestamp"], .int(end)]])
        #expect(variant(openEnded.snapshot, "color", "u1", now: end + 5) == "blue")
        let cleared = try edit(openEnded.document, "color", .clearSchedule)
        #expect(try targeting(cleared) == targeting(split))
    }

    @Test func replaceAndMetadata() throws {
        let replaced = try edit(Self.base, "feature", .replace(definition: ["state": "DISABLED", "variants": ["x": "X"]]), by: "ops")
        #expect(replaced.after == ["state": "DISABLED", "variants": ["x": "X"], "metadata": ["updatedBy": "ops"]])
        let tagged = try edit(replaced.document, "feature", .setMetadata(name: "ticket", value: 42))
        #expect(tagged.after?.object?["metadata"] == ["updatedBy": "ops", "ticket": 42])
        #expect(tagged.summary == "feature: metadata ticket = 42")
        #expect(tagged.snapshot.info("feature")?.metadata["ticket"] == 42)
        let untagged = try edit(tagged.document, "feature", .removeMetadata(name: "ticket"))
        #expect(untagged.document == replaced.document)
    }
}
