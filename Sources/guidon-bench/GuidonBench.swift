import ArgumentParser

@main
struct GuidonBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guidon-bench",
        abstract: "Guidon benchmarks.",
        subcommands: [EngineBench.self]
    )
}
