import ArgumentParser

@main
struct GuidonBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guidon-bench",
        abstract: "Guidon benchmarks.",
        subcommands: [
            DaemonBench.self, ClientBench.self, EngineBench.self, QuotaBench.self, EchoServer.self, NIOEchoServer.self,
            WriteFlags.self, QuotaLoad.self,
        ],
        defaultSubcommand: DaemonBench.self
    )
}
