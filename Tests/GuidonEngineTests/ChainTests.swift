import GuidonJSON
import Testing

@testable import GuidonEngine

/// The compiler holds a short `and`, `or` or `if` chain as nested pairs and a long one as a
/// list: both give the values a flat reading of the operator gives, on each side of the limit.
@Suite struct ChainTests {
    /// Falsy and truthy values of different types, read through `var` so that nothing is folded.
    static let values: [JSONValue] = [0, 1, "", "a"]

    @Test(arguments: 1...(Node.chainLimit + 2))
    func andAndOrGiveTheFirstDecidingOperandOrTheLast(count: Int) throws {
        let operands = (0..<count).map { #"{"var": "v\#($0)"}"# }.joined(separator: ", ")
        let and = Rule(try JSONParser().parse(#"{"and": [\#(operands)]}"#))
        let or = Rule(try JSONParser().parse(#"{"or": [\#(operands)]}"#))
        // Every combination of values, up to 4^6 of them.
        let combinations = (0..<count).reduce(1) { n, _ in n * Self.values.count }
        for combination in stride(from: 0, to: combinations, by: max(1, combinations / 4096)) {
            var data = JSONObject()
            var chosen: [JSONValue] = []
            var rest = combination
            for i in 0..<count {
                chosen.append(Self.values[rest % Self.values.count])
                data["v\(i)"] = chosen[i]
                rest /= Self.values.count
            }
            let expectedAnd = chosen.first { !JS.truthy($0) } ?? chosen[count - 1]
            let expectedOr = chosen.first { JS.truthy($0) } ?? chosen[count - 1]
            #expect(try and.evaluate(data: .object(data)) == expectedAnd, "and \(chosen)")
            #expect(try or.evaluate(data: .object(data)) == expectedOr, "or \(chosen)")
        }
    }

    /// `if` with `count` conditions `n == i` serving variant `v<i>`, with and without an else
    /// branch: each `n` is served its own variant, anything else the else branch or the default.
    @Test(arguments: 1...(Outcome.chainLimit + 2))
    func ifChainsServeTheFirstMatchingBranch(count: Int) throws {
        let variants = (0..<count).map { #""v\#($0)": \#($0)"# }.joined(separator: ", ")
        let branches = (0..<count).map { #"{"==": [{"var": "n"}, \#($0)]}, "v\#($0)""# }.joined(separator: ", ")
        let document = #"""
            {"flags": {
              "with-else": {"state": "ENABLED", "variants": {\#(variants), "else": -1, "default": -2},
                            "defaultVariant": "default", "targeting": {"if": [\#(branches), "else"]}},
              "without": {"state": "ENABLED", "variants": {\#(variants), "default": -2},
                          "defaultVariant": "default", "targeting": {"if": [\#(branches)]}}
            }}
            """#
        let snapshot = try compiled(document)
        for n in -1...count {
            let context = EvaluationContext(attributes: ["n": .int(Int64(n))])
            let withElse = snapshot.evaluate("with-else", context: context)
            let without = snapshot.evaluate("without", context: context)
            if n >= 0 && n < count {
                #expect(withElse.variant == "v\(n)" && withElse.reason == .targetingMatch)
                #expect(without.variant == "v\(n)" && without.reason == .targetingMatch)
            } else {
                #expect(withElse.variant == "else" && withElse.reason == .targetingMatch)
                #expect(without.variant == "default" && without.reason == .default)
            }
        }
    }

    /// A branch that names no variant is reported wherever it is in the chain.
    @Test(arguments: [2, Outcome.chainLimit + 2])
    func unknownBranchesAreReportedAlongTheChain(count: Int) throws {
        let branches = (0..<count).map { #"{"==": [{"var": "n"}, \#($0)]}, "\#($0 == count - 1 ? "nope" : "on")""# }
        let document = flagDocument(
            #""state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {"if": [\#(branches.joined(separator: ", ")), "also-nope"]}"#)
        let snapshot = try compiled(document, mode: .lenient)
        let messages = snapshot.warnings.map(\.message)
        #expect(messages.contains { $0.contains(#"targeting can return "nope""#) })
        #expect(messages.contains { $0.contains(#"targeting can return "also-nope""#) })
    }
}
