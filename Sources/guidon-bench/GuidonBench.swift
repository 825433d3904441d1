import ArgumentParser

@main
struct GuidonBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guidon-bench",
        abstract: "Benchmarks for Guidon.",
        subcommands: [DaemonBench.self, EchoServer.self, WriteFlags.self],
        defaultSubcommand: DaemonBench.self
    )
}
