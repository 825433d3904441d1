import CAllocCounter
import CMalloc
import GuidonEditing
import GuidonEngine
import GuidonEntitlements
import GuidonJSON
import GuidonProtocol

#if canImport(Glibc)
import Glibc
#endif

/// The entitlements scenarios of `guidon-bench engine` (issue 13's scale): 100,000 tenants,
/// 30 features, 3 plans, an override on one tenant in ten.
extension EngineBench {
    func entitlementsScenarios() throws {
        // `--only` selects these by a name that starts with "entitlements" ("entitlements: recompile").
        if let only, !only.hasPrefix("entitlements") && !"entitlements".contains(only) { return }
        let now: Int64 = 1_797_336_000  // 2026-12-15T12:00:00Z
        if let only, only.contains("memory") {
            return try entitlementsMemory(now: now)
        }
        print("")
        let document = Self.entitlementsDocument(tenants: tenants)
        let options = EntitlementsCompileOptions(clock: { now })
        var times: [Double] = []
        var cpuTimes: [Double] = []
        var compiled: Entitlements?
        let compileName = "entitlements: compile \(tenants / 1000)k tenants (\(document.count / 1024) KiB)"
        print(pad("stage", 52) + pad("wall", 12, right: true) + pad("CPU", 12, right: true))
        for _ in 0..<(wanted(compileName) ? max(3, runs) : 1) {
            let (start, cpuStart) = (ContinuousClock.now, Self.threadCPUNanoseconds())
            compiled = try Entitlements.compile(json: document, options: options)
            times.append(Self.nanoseconds(ContinuousClock.now - start))
            cpuTimes.append(Self.threadCPUNanoseconds() - cpuStart)
        }
        let entitlements = compiled!
        precondition(entitlements.tenantCount == tenants && entitlements.features.count == 30)
        if wanted(compileName) { printTimes(compileName, times, cpuTimes) }

        // A reload of the same file with one tenant's plan changed, alternating between the two versions.
        let recompileName = "entitlements: recompile, 1 tenant changed"
        if wanted(recompileName) {
            let edited = Self.entitlementsDocument(tenants: tenants, changing: tenants / 2)
            var previous = entitlements
            times = []
            cpuTimes = []
            for run in 0..<max(3, runs) * 2 {
                let (start, cpuStart) = (ContinuousClock.now, Self.threadCPUNanoseconds())
                let recompiled = try Entitlements.compile(json: run % 2 == 0 ? edited : document, options: options, reusing: previous)
                times.append(Self.nanoseconds(ContinuousClock.now - start))
                cpuTimes.append(Self.threadCPUNanoseconds() - cpuStart)
                previous = recompiled
            }
            printTimes(recompileName, times, cpuTimes)
        }

        // What the admin writer does for `guidon tenants enable`, phase by phase, off the socket:
        // the file's revision, the edit (`EntitlementsEditor.draft`), the validating compile
        // (reusing the served value), the new file's revision.
        if wanted("entitlements: admin edit") {
            let editor = EntitlementsEditor(options: options)
            var served = entitlements
            var bytes = document
            var phases: [String: ([Double], [Double])] = [:]
            func timed<T>(_ phase: String, _ body: () throws -> T) rethrows -> T {
                let (start, cpuStart) = (ContinuousClock.now, Self.threadCPUNanoseconds())
                let value = try body()
                phases[phase, default: ([], [])].0.append(Self.nanoseconds(ContinuousClock.now - start))
                phases[phase, default: ([], [])].1.append(Self.threadCPUNanoseconds() - cpuStart)
                return value
            }
            let tenant = Self.tenantID(tenants / 2 + 1)
            for run in 0..<max(3, runs) * 2 {
                var change = OverrideChange(enabled: run % 2 == 1)
                change.by = "guidon-bench"
                let operation = EntitlementsOperation(
                    .setOverride(tenant: tenant, feature: "feature-12", change), by: "guidon-bench", reason: nil, now: now)
                // As the daemon does: the served revision when the file holds the served text.
                _ = timed("revision") { served.isCompiled(from: bytes) ? "" : Revision.of(bytes) }
                let draft = try timed("edit") { try editor.draft(operation, to: bytes, served: served) }
                let edit = try timed("validate") { try editor.validate(draft, reusing: served, flagKeys: []) }
                _ = timed("new revision") { Revision.of(edit.document) }
                served = edit.entitlements
                bytes = edit.document
            }
            for phase in ["revision", "edit", "validate", "new revision"] {
                printTimes("entitlements: admin edit of 1 tenant, \(phase)", phases[phase]!.0, phases[phase]!.1)
            }
        }

        print(pad("scenario", 52) + pad("ns/op", 12, right: true) + pad("allocs/op", 11, right: true) + "  answer")
        // One feature for one tenant, lent as a server lends it: a plan grant, and an override.
        for (label, tenant, feature) in [
            ("plan grant", "tenant-050001", "feature-12"), ("override", "tenant-050000", "feature-07"),
            ("unknown tenant", "nobody", "feature-12"),
        ] {
            var reason = ""
            _ = entitlements.withResult(feature: feature, tenant: tenant, now: now) { reason = "\($0.reason.rawValue)" }
            reportEntitlements("entitlements: 1 feature, \(label)", reason, measure { sink in
                sink &+= entitlements.withResult(feature: feature, tenant: tenant, now: now) { $0.served?.count ?? 0 } ?? 0
            })
        }
        // A different tenant each time (the tables do not stay in the cache).
        let ids = (0..<4096).map { Self.tenantID(($0 &* 7919) % tenants) }
        var next = 0
        reportEntitlements("entitlements: 1 feature, tenants in turn", "", measure { sink in
            next = (next + 1) & 4095
            sink &+= entitlements.withResult(feature: "feature-12", tenant: ids[next], now: now) { $0.served?.count ?? 0 } ?? 0
        })
        reportEntitlements("entitlements: isEntitled", "", measure { sink in
            sink &+= entitlements.isEntitled(tenant: "tenant-050001", feature: "feature-12", now: now) ? 1 : 0
        })
        // Flags whose targeting asks about the tenant, as guidond evaluates them: the context
        // carries the entitlements and the tenant (`ServedConfig` puts them there).
        let targeting = #"""
            {"flags": {
              "entitled": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                           "targeting": {"if": [{"entitled": "feature-12"}, "on", "off"]}},
              "tenant-plan": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                              "targeting": {"if": [{"==": [{"var": "$tenant.plan"}, "growth"]}, "on", "off"]}}
            }}
            """#
        let flags = try Snapshot.compile(
            json: Array(targeting.utf8), options: CompileOptions(clock: { now }, features: Set(entitlements.features.map(\.key))))
        var context = EvaluationContext(targetingKey: "user-1", attributes: ["tenantId": "tenant-050001"])
        context.tenantDirectory = entitlements
        context.tenant = "tenant-050001"
        for key in ["entitled", "tenant-plan"] {
            var variant = ""
            flags.withResult(key, context: context, now: now) { variant = String(decoding: $0.served ?? UnsafeRawBufferPointer(start: nil, count: 0), as: UTF8.self) }
            reportEntitlements("entitlements: flag with \(key == "entitled" ? "{entitled}" : "$tenant.plan")", variant, measure { sink in
                flags.withResult(key, context: context, now: now) { sink &+= $0.served?.count ?? 0 }
            })
        }
        var view: [UInt8] = []
        view.reserveCapacity(64 * 1024)
        reportEntitlements("entitlements: view of 1 tenant, 30 features", "", measure(iterations: max(1, iterations / 20)) { sink in
            entitlements.writeEntitlements(tenant: "tenant-050000", now: now, into: &view)
            sink &+= view.count
            view.removeAll(keepingCapacity: true)
        })
    }

    /// The medians of wall-clock and CPU times (the CPU time of the compiling thread: on a busy
    /// machine the wall clock also counts the time other processes ran).
    private func printTimes(_ name: String, _ wall: [Double], _ cpu: [Double]) {
        let wall = wall.sorted()[wall.count / 2] / 1e6
        let cpu = cpu.sorted()[cpu.count / 2] / 1e6
        print(pad(name, 52) + pad(format(wall, decimals: 1) + " ms", 12, right: true) + pad(format(cpu, decimals: 1) + " ms", 12, right: true))
    }

    static func threadCPUNanoseconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) * 1e9 + Double(t.tv_nsec)
    }

    private func reportEntitlements(_ name: String, _ answer: String, _ m: @autoclosure () -> Measurement) {
        guard wanted(name) else { return }
        let m = m()
        print(pad(name, 52) + pad(format(m.nanoseconds, decimals: 1), 12, right: true)
            + pad(guidon_alloc_counting() != 0 ? format(m.allocations, decimals: 2) : "n/a", 11, right: true) + "  " + answer)
    }

    /// Memory of a process that only builds the documents and compiles them (run it alone:
    /// `--only "entitlements memory"`): the heap in use (glibc's count of allocated bytes, mapped
    /// chunks included) and RSS after a compile and after a recompile that reuses it, held as
    /// the daemon would hold them (the compiled value keeps the bytes it was compiled from; the
    /// daemon trims the heap after a reload), and the peak RSS of each step (VmHWM, reset
    /// through /proc/self/clear_refs once the documents are built).
    private func entitlementsMemory(now: Int64) throws {
        func heap() -> Double { let m = mallinfo2(); return Double(m.uordblks + m.hblkhd) / 1_048_576 }
        func mib(_ kib: Int?) -> String { kib.map { format(Double($0) / 1024, decimals: 1) + " MiB" } ?? "n/a" }
        func line(_ label: String, peak: Bool = false) {
            print(pad("  " + label, 48) + pad(format(heap(), decimals: 1) + " MiB", 12, right: true)
                + pad(mib(Self.statusKiB("VmRSS")), 12, right: true) + pad(peak ? mib(Self.statusKiB("VmHWM")) : "", 12, right: true))
        }
        func resetPeak() {
            let fd = open("/proc/self/clear_refs", O_WRONLY)
            if fd >= 0 {
                _ = write(fd, "5", 1)
                close(fd)
            }
        }
        print("entitlements memory, \(tenants) tenants" + pad("heap", 12, right: true) + pad("VmRSS", 12, right: true)
            + pad("peak", 12, right: true))
        line("at start")
        var document: [UInt8]? = Self.entitlementsDocument(tenants: tenants)
        var edited: [UInt8]? = Self.entitlementsDocument(tenants: tenants, changing: tenants / 2)
        malloc_trim(0)
        line("with both documents (\(format(Double(document!.count) / 1_048_576, decimals: 1)) MiB each)")
        resetPeak()
        var entitlements: Entitlements? = try Entitlements.compile(json: document!, options: EntitlementsCompileOptions(clock: { now }))
        document = nil  // the compiled value keeps it
        malloc_trim(0)
        line("compiled", peak: true)
        resetPeak()
        let recompiled = try Entitlements.compile(json: edited!, options: EntitlementsCompileOptions(clock: { now }), reusing: entitlements)
        edited = nil
        line("recompiled, both values alive", peak: true)
        entitlements = nil
        malloc_trim(0)
        line("the old value released, trimmed")
        precondition(recompiled.tenantCount == tenants)
    }

    static func statusKiB(_ field: String) -> Int? {
        guard let text = readTextFile("/proc/self/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            return Int(line.dropFirst(field.count + 1).filter { $0.isNumber })
        }
        return nil
    }

    static func tenantID(_ i: Int) -> String {
        let digits = String(i)
        return "tenant-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }

    /// The document: 30 features (boolean and configuration, a few with limits), three plans
    /// (`growth` inherits `starter`, `enterprise` inherits `growth` and grants everything), and
    /// `tenants` tenants, one in ten with an override. `changing`: that tenant's plan differs.
    static func entitlementsDocument(tenants count: Int, changing: Int? = nil) -> [UInt8] {
        var out = #"{"timezone": "Europe/Berlin", "features": {"#
        for f in 0..<30 {
            if f > 0 { out += "," }
            let key = "feature-" + (f < 10 ? "0" : "") + String(f)
            out += "\n  \"\(key)\": {\"description\": \"Feature \(f)\", \"category\": \"cat-\(f % 4)\", "
            if f % 3 == 2 {
                out += #""default": {"level": "basic", "max": 5, "providers": ["card"], "options": {"fast": false}}"#
            } else {
                out += f % 10 == 0 ? #""default": true"# : #""default": false"#
            }
            if f % 7 == 0 { out += #", "limits": [{"per": "day", "max": 100}]"# }
            out += "}"
        }
        out += "\n},\n\"plans\": {\n"
        out += #"  "starter": {"displayName": "Starter", "order": 1, "grants": {"feature-01": true, "feature-02": {"config": {"level": "starter", "max": 10}}, "feature-03": true, "feature-04": true, "feature-05": {"config": {"providers": ["card", "zarinpal"]}}, "feature-06": true, "feature-07": {"limits": [{"per": "day", "max": 10, "scope": "user"}]}}},"# + "\n"
        out += #"  "growth": {"displayName": "Growth", "order": 2, "inherits": "starter", "grants": {"feature-08": {"config": {"level": "growth", "options": {"fast": true}}}, "feature-09": true, "feature-11": true, "feature-12": true, "feature-13": true, "feature-14": {"config": {"max": 50}}, "feature-15": true, "feature-16": true, "feature-07": {"limits": [{"per": "day", "max": 100, "scope": "user"}, {"per": "month", "max": 2000}]}}},"# + "\n"
        out += #"  "enterprise": {"displayName": "Enterprise", "order": 3, "inherits": "growth", "grants": {"*": true, "feature-02": {"config": {"level": "enterprise", "max": 1000}}, "feature-07": {"limits": []}, "feature-25": false}}"# + "\n"
        out += "},\n\"tenants\": {"
        let plans = ["starter", "growth", "enterprise", "growth", "starter"]
        let statuses = ["active", "active", "active", "trialing", "active", "past_due", "active", "active", "canceled", "active"]
        for i in 0..<count {
            if i > 0 { out += "," }
            var plan = plans[i % plans.count]
            if i == changing { plan = plan == "enterprise" ? "starter" : "enterprise" }
            out += "\n\"\(tenantID(i))\": {\"plan\": \"\(plan)\", \"status\": \"\(statuses[i % statuses.count])\", \"validUntil\": \"2027-0\(1 + i % 9)-28T00:00:00Z\""
            if i % 10 == 0 {
                let f = 1 + (i / 10) % 29
                let key = "feature-" + (f < 10 ? "0" : "") + String(f)
                out += ", \"overrides\": {\"\(key)\": {\"enabled\": \(i % 20 == 0 ? "true" : "false")"
                if f % 3 == 2 && i % 20 == 0 { out += #", "config": {"max": 7}"# }
                out += #", "notes": "ticket SUP-\#(i)", "by": "agent-\#(i % 13)", "at": "2026-11-0\#(1 + i % 9)T10:00:00Z", "expiresAt": "2027-02-01T00:00:00Z"}}"#
            }
            out += "}"
        }
        out += "\n}}\n"
        return Array(out.utf8)
    }
}
