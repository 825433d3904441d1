import ArgumentParser

@main
struct GuidonBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guidon-bench",
        abstract: "Guidon benchmarks.",
        subcommands: [DaemonBench.self, ClientBench.self, EngineBench.self, EchoServer.self, NIOEchoServer.self, WriteFlags.self],
        defaultSubcommand: DaemonBench.self
    )
}
