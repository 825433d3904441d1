import ArgumentParser

@main
struct GuidonBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guidon-bench",
        abstract: "Guidon benchmarks.",
        subcommands: [DaemonBench.self, EngineBench.self, QuotaBench.self, EchoServer.self, NIOEchoServer.self, WriteFlags.self, QuotaLoad.self],
        defaultSubcommand: DaemonBench.self
    )
}
