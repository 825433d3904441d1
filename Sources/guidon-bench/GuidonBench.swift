import ArgumentParser

@main
struct GuidonBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guidon-bench",
        abstract: "Guidon benchmarks.",
        subcommands: [DaemonBench.self, EngineBench.self, EchoServer.self, NIOEchoServer.self, WriteFlags.self],
        defaultSubcommand: DaemonBench.self
    )
}
