import ArgumentParser
import GuidonEngine
import GuidonJSON

#if canImport(Glibc)
import Glibc
#endif

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Checks that the daemon answers (exit 0 only if it does): a health check.")

    @OptionGroup var options: ClientOptions

    func run() throws {
        let started = ContinuousClock.now
        let (reply, raw) = try options.ask(["op": "ping"])
        let elapsed = ContinuousClock.now - started
        guard reply["ok"] == .bool(true) else { throw CLIError("unexpected reply: \(JSONValue.object(reply))") }
        if options.json { return printLine(raw) }
        let micros = elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
        print("ok: \(text(reply["flags"])) flags, config \(text(reply["configVersion"])) (\(micros) µs)")
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Shows what the daemon serves and how its last reload went.")

    @OptionGroup var options: ClientOptions

    func run() throws {
        let (reply, raw) = try options.ask(["op": "status"])
        if options.json { return printLine(raw) }
        print("guidond \(text(reply["version"])), up \(text(reply["uptimeSeconds"])) s, \(text(reply["connections"])) connection(s)")
        print("config      \(text(reply["configPath"])) (\(text(reply["mode"])))")
        print("version     \(text(reply["configVersion"])), \(text(reply["flags"])) flags, loaded \(text(reply["loadedAt"]))")
        if case .object(let last)? = reply["lastReload"] {
            let outcome = last["ok"] == .bool(true) ? "ok" : "FAILED"
            print("last reload \(outcome) at \(text(last["at"])) (\(text(last["trigger"])))")
            if let error = last["error"]?.string {
                for line in error.split(separator: "\n") { print("  \(line)") }
            }
        } else {
            print("last reload none yet")
        }
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Lists every flag with its state, variants and metadata.")

    @OptionGroup var options: ClientOptions

    func run() throws {
        let (reply, raw) = try options.ask(["op": "list"])
        if options.json { return printLine(raw) }
        for case .object(let flag) in reply["flags"]?.array ?? [] {
            let variants = (flag["variants"]?.array ?? []).map(text).joined(separator: ", ")
            print("\(text(flag["key"]))  \(text(flag["state"]))  default \(text(flag["defaultVariant"]))  [\(variants)]")
            for (key, value) in flag["metadata"]?.object ?? [:] {
                print("    \(key): \(text(value))")
            }
        }
    }
}

struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Prints a line each time the daemon's flags change.")

    @OptionGroup var options: ClientOptions

    func run() throws {
        var client = try LineClient(path: options.socketPath, timeout: nil)
        try client.send(["op": "watch"])
        while true {
            let (reply, raw) = try client.receive()
            if options.json {
                printLine(raw)
            } else if case .object(let o) = reply {
                if o["event"] != nil {
                    let parts = ["added", "changed", "removed"].compactMap { key -> String? in
                        let keys = (o[key]?.array ?? []).map(text)
                        return keys.isEmpty ? nil : "\(key): \(keys.joined(separator: ", "))"
                    }
                    print("config \(text(o["configVersion"])) — \(parts.joined(separator: "; "))")
                } else if o["watching"] == .bool(true) {
                    print("watching (config \(text(o["configVersion"])))")
                }
            }
            fflush(nil)
        }
    }
}

struct EntitlementsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "entitlements",
        abstract: "Shows what one tenant has: every feature's value and why (the entitlements file guidond serves).")

    @OptionGroup var options: ClientOptions

    @Argument(help: "The tenant's id.")
    var tenant: String

    func run() throws {
        let (reply, raw) = try options.ask(["op": "entitlements", "tenant": .string(tenant)])
        if options.json { return printLine(raw) }
        // The same lines as `guidon tenants show` (which asks through the admin socket or reads a
        // file); this one needs only the query socket.
        var view = reply
        if view["tenant"] == nil { view["tenant"] = .string(tenant) }
        for line in tenantView(view) { print(line) }
    }
}
