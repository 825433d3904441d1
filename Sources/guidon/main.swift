import ArgumentParser
import GuidonEngine
import GuidonJSON

#if canImport(Glibc)
import Glibc
#endif

struct Guidon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guidon",
        abstract: "Asks guidond for feature flags and entitlements, changes them, and checks flag files.",
        subcommands: [Eval.self, Ping.self, Status.self, List.self, Watch.self, Stats.self, Metrics.self, Usage.self, Validate.self, Flags.self, Tenants.self, Plans.self, Features.self, Import.self, EntitlementsCommand.self]
    )
}

/// Options shared by every command that talks to the daemon.
struct ClientOptions: ParsableArguments {
    @Option(name: .long, help: "The daemon's socket (default: $GUIDON_SOCKET or /run/guidon/guidon.sock).")
    var socket: String?

    @Flag(name: .long, help: "Print the daemon's JSON replies as they are, one per line.")
    var json = false

    @Option(name: .long, help: "Seconds to wait for a reply.")
    var timeout: Double = 5

    var socketPath: String {
        if let socket { return socket }
        if let env = getenv("GUIDON_SOCKET"), env.pointee != 0 { return String(cString: env) }
        return "/run/guidon/guidon.sock"
    }

    /// Sends one request and returns its reply; daemon-side errors become a failure.
    func ask(_ request: JSONObject) throws -> (JSONObject, [UInt8]) {
        var client = try LineClient(path: socketPath, timeout: timeout)
        try client.send(.object(request))
        let (reply, raw) = try client.receive()
        guard case .object(let object) = reply else { throw CLIError("unexpected reply: \(reply)") }
        if case .object(let error)? = object["error"] {
            if json { printLine(raw) }
            throw CLIError("\(error["code"]?.string ?? "ERROR"): \(error["message"]?.string ?? "")")
        }
        return (object, raw)
    }
}

struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func printLine(_ bytes: [UInt8]) {
    print(String(decoding: bytes, as: UTF8.self))
}

func text(_ value: JSONValue?) -> String {
    guard let value else { return "-" }
    return value.string ?? value.description
}

/// `guidon --socket PATH ping` reads as naturally as `guidon ping --socket PATH`, but the
/// argument parser only gives a subcommand the options that follow it: move the client options
/// written before the subcommand to just after it.
func clientOptionsAfterSubcommand(_ arguments: [String]) -> [String] {
    let withValue: Set<String> = ["--socket", "--timeout"]
    let bare: Set<String> = ["--json"]
    var moved: [String] = []
    var index = 0
    while index < arguments.count {
        let argument = arguments[index]
        let name = String(argument.prefix { $0 != "=" })
        if withValue.contains(name) {
            let takesNext = name == argument
            guard !takesNext || index + 1 < arguments.count else { break }
            moved += takesNext ? [argument, arguments[index + 1]] : [argument]
            index += takesNext ? 2 : 1
        } else if bare.contains(argument) {
            moved.append(argument)
            index += 1
        } else {
            break
        }
    }
    guard !moved.isEmpty, index < arguments.count, !arguments[index].hasPrefix("-") else { return arguments }
    return [arguments[index]] + moved + arguments[(index + 1)...]
}

Guidon.main(clientOptionsAfterSubcommand(Array(CommandLine.arguments.dropFirst())))
