import CAllocCounter
import GuidonEngine
import GuidonJSON
import GuidonProtocol
import Testing

/// What a parse produced, comparable: the request's members (its context read, hence decoded), or the refusal.
enum Outcome: Equatable, CustomStringConvertible {
    case request(op: Request.Operation, id: JSONValue?, flag: String?, flags: [String]?, type: ValueType?, defaultValue: JSONValue?, context: EvaluationContext)
    case refused(RequestError)

    init(_ parse: () throws(RequestError) -> Request) {
        do {
            var r = try parse()
            self = .request(op: r.op, id: r.id, flag: r.flag, flags: r.flags, type: r.type, defaultValue: r.defaultValue, context: r.context)
        } catch {
            self = .refused(error)
        }
    }

    var description: String {
        switch self {
        case .request(let op, let id, let flag, let flags, let type, let defaultValue, let context):
            "\(op) id=\(String(describing: id)) flag=\(String(describing: flag)) flags=\(String(describing: flags)) type=\(String(describing: type)) default=\(String(describing: defaultValue)) context=\(context)"
        case .refused(let error): "refused: \(error)"
        }
    }
}

func bytes(_ line: String, _ body: (UnsafeRawBufferPointer) -> Void) {
    Array(line.utf8).withUnsafeBytes(body)
}

extension Outcome {
    /// What `parser` makes of `raw` decoded into the kept `request`, its context read there (so
    /// that the next line starts from a decoded one), and what a one-off parse makes of it.
    static func keptAndFresh(_ raw: UnsafeRawBufferPointer, _ parser: RequestParser, _ request: inout Request) -> (kept: Outcome, fresh: Outcome) {
        let fresh = Outcome { () throws(RequestError) in try parser.parse(raw) }
        let kept = Outcome { () throws(RequestError) in
            try parser.parse(raw, into: &request)
            _ = request.context
            return request
        }
        return (kept, fresh)
    }
}

@Suite("Request parser: decoding into a reused request")
struct RequestReuseTests {
    /// Lines in an order that makes each one reuse (or have to replace) what the one before left:
    /// same and different flag keys, longer and shorter `flags`, contexts that grow, shrink and
    /// vanish, escapes that take the general path, and refusals in between.
    static let sequence: [String] = [
        #"{"op":"eval","flag":"targeted-checkout","context":{"targetingKey":"user-4217","tier":"gold","email":"ana.maria@example.com","appVersion":"2.6.1"}}"#,
        #"{"op":"eval","flag":"targeted-checkout","context":{"targetingKey":"user-4217","tier":"gold","email":"ana.maria@example.com","appVersion":"2.6.1"}}"#,
        #"{"op":"eval","flag":"targeted-checkouT","context":{"tier":"silver"}}"#,
        #"{"op":"eval","flag":"targeted-checkouT","type":"boolean","default":true}"#,
        #"{"op":"eval","flags":["a-long-flag-key-one","b","c"],"context":{"targetingKey":7}}"#,
        #"{"op":"eval","flags":["a-long-flag-key-one","x"],"id":"r2"}"#,
        #"{"op":"eval","flags":[]}"#,
        #"{"op":"eval","flags":[ "a\u0062" , "c" ]}"#,
        #"{"op":"eval","flags":["a",1]}"#,
        #"{"op":"eval","flags":["a",tru]}"#,
        #"{"op":"eval","flags":["a","b"}"#,
        #"{"op":"eval","flag":"f","context":{"target\u0069ngKey":"escaped","k":1}}"#,
        #"{"op":"eval","flag":"f","context":{"targetingKey":"u","targetingKey":"v"}}"#,
        #"{"op":"eval","flag":"f","context":{"a":1,"a":2}}"#,
        #"{"op":"ev\u0061l","flag":"f\u0021"}"#,
        #"{"op":"evil","flag":"f"}"#,
        #"{"op":"eval\u0000","flag":"f"}"#,
        #"{"op":"eval","flag":"f","type":"bool"}"#,
        #"{"op":"eval","flag":"f","type":"b\u006flean"}"#,
        #"{"op":"eval","flag":"f","type":"string","default":1}"#,
        #"{"op":"ping","id":1}"#,
        #"{"op":"evalAll","context":{"targetingKey":"user-1","plan":"pro","seats":12,"tags":["a"],"geo":{"c":"FR"}}}"#,
        #"{"op":"evalAll"}"#,
        #"{"op":"eval","flag":"targeted-checkout","context":{"targetingKey":"user-4217","tier":"gold","email":"ana.maria@example.com","appVersion":"2.6.1"}}"#,
        // The same context text again: with other members around it, then refused elsewhere.
        #"{"context":{"targetingKey":"user-4217","tier":"gold","email":"ana.maria@example.com","appVersion":"2.6.1"},"op":"eval","flag":"static-banner","id":3}"#,
        #"{"op":"eval","flag":"x","context":{"targetingKey":"user-4217","tier":"gold","email":"ana.maria@example.com","appVersion":"2.6.1"},"type":"nope"}"#,
        #"{"op":"eval","flag":"x","context":{"targetingKey":"user-4217","tier":"gold","email":"ana.maria@example.com","appVersion":"2.6.1"}}"#,
        #"{"op":"eval","flag":"x","context":{"targetingKey":"user-4217","tier":"gold","email":"ana.maria@example.com","appVersion":"2.6.1"},}"#,
        #"{"op":"eval","flag":"x","context":{"targetingKey":"user-4217","tier":"gold","email":"ana.maria@example.com","appVersion":"2.6.2"}}"#,
        #"{"op":"eval","flag":"x","context":{"targetingKey":"user-4217","tier":"gold","email":"ana.maria@example.com","appVersion":"2.6.2","more":1}}"#,
        #"{"op":"eval","flag":"x","context":{}}"#,
        #"{"op":"eval","flag":"x","context":{}}"#,
        #"{"op":"eval","flag":"x"}"#,
        #"{"op":"eval","flag":"x","context":{"deep":{"er":{"est":[1]}}}}"#,
        #"{"op":"eval","flag":"x","context":{"deep":{"er":{"est":[1]}}}}"#,
    ]

    @Test func decodesExactlyAsAFreshRequest() {
        let parser = RequestParser()
        var reused = Request(op: .ping)
        // Twice through, so that every line also follows every other kind of line.
        for line in Self.sequence + Self.sequence.reversed() {
            bytes(line) { raw in
                let (again, fresh) = Outcome.keptAndFresh(raw, parser, &reused)
                #expect(again == fresh, "\(line)")
            }
        }
    }

    /// A context whose text repeats is kept only under the same depth limit.
    @Test func aRepeatedContextIsCheckedAgainstTheDepthLimit() {
        var reused = Request(op: .ping)
        let line = #"{"op":"eval","flag":"x","context":{"deep":{"er":{"est":[1]}}}}"#
        for parser in [RequestParser(maxDepth: 32), RequestParser(maxDepth: 3), RequestParser(maxDepth: 32)] {
            bytes(line) { raw in
                let (again, fresh) = Outcome.keptAndFresh(raw, parser, &reused)
                #expect(again == fresh, "maxDepth \(parser.maxDepth)")
            }
        }
    }

    /// Strings longer than 15 bytes live on the heap: an unchanged one is kept, not built again.
    @Test func unchangedStringsAreKept() throws {
        let parser = RequestParser()
        var request = Request(op: .ping)
        func storage(_ text: String?) -> UnsafeRawPointer? {
            text?.utf8.withContiguousStorageIfAvailable { UnsafeRawPointer($0.baseAddress) } ?? nil
        }
        func email() -> String? { request.context.attributes["email"]?.string }
        let line = #"{"op":"eval","flag":"a-flag-key-longer-than-15-bytes","context":{"targetingKey":"0b6f3c52-1c4e-4f0a-9d55-7f1e2a9c4b10","email":"ana.maria@example.com"}}"#
        bytes(line) { try? parser.parse($0, into: &request) }
        let first = (storage(request.flag), storage(request.context.targetingKey), storage(email()))
        bytes(line) { try? parser.parse($0, into: &request) }
        #expect(first.0 != nil && storage(request.flag) == first.0)
        #expect(first.1 != nil && storage(request.context.targetingKey) == first.1)
        #expect(first.2 != nil && storage(email()) == first.2)

        bytes(#"{"op":"eval","flag":"another-key-longer-than-15-bytes","context":{"targetingKey":"0b6f3c52-1c4e-4f0a-9d55-7f1e2a9c4b11","email":"ana.mario@example.com"}}"#) {
            try? parser.parse($0, into: &request)
        }
        #expect(request.flag == "another-key-longer-than-15-bytes")
        #expect(request.context.targetingKey == "0b6f3c52-1c4e-4f0a-9d55-7f1e2a9c4b11")
        #expect(email() == "ana.mario@example.com")
    }

    /// Decoding the usual request into a kept `Request`, evaluating it and encoding the reply
    /// into a kept buffer allocates nothing once the storage has grown. (Targeting is left
    /// out: unoptimised builds of the engine allocate where optimised ones do not; `guidon-bench
    /// engine` counts a targeted request's allocations in a release build.)
    @Test(arguments: ["static-banner", "a-flag-key-longer-than-15-bytes"])
    func answeringAnEvalRequestAllocatesNothing(flag: String) throws {
        guard guidon_alloc_counting() != 0 else { return }  // sanitizer builds keep their own allocator
        let snapshot = try Snapshot.compile(json: Array(Self.flags.utf8))
        let line = Array(#"{"op":"eval","flag":"\#(flag)","context":{"targetingKey":"0b6f3c52-1c4e-4f0a-9d55-7f1e2a9c4b10","tier":"gold","email":"ana.maria@example.com","appVersion":"2.6.1","tenant":"acme"}}"#.utf8)
        let parser = RequestParser()
        var request = Request(op: .ping)
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        func answer() {
            answerKept(line, parser: parser, request: &request, snapshot: snapshot, out: &out)
            out.removeAll(keepingCapacity: true)
        }
        // Grows the storage (and lets the runtime set up what it sets up once).
        for _ in 0..<10 { answer() }
        let before = guidon_thread_alloc_count()
        for _ in 0..<100 { answer() }
        #expect(guidon_thread_alloc_count() - before == 0)
        #expect(request.context.attributes.count == 4)
    }

    /// Multi-flag and `evalAll` replies gather their results in stack memory through a struct
    /// the closures capture (in an unoptimised build a captured local function would be a heap
    /// box per reply). The encoder allocates nothing once the reply buffer has grown, over enough
    /// results to flush the stack buffer several times. (The engine's side of a batch is counted
    /// in a release build by `guidon-bench engine`: 0 allocations per request.)
    @Test func batchAndEvalAllRepliesAllocateNothing() throws {
        guard guidon_alloc_counting() != 0 else { return }  // sanitizer builds keep their own allocator
        let flag = Array(#""flag":"flag-00012""#.utf8), served = Array(#","value":true,"variant":"on""#.utf8)
        let metadata = Array(#"{"team":"growth"}"#.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(16 * 1024)
        var written = 0
        func answer() {
            flag.withUnsafeBytes { flag in
                served.withUnsafeBytes { served in
                    metadata.withUnsafeBytes { metadata in
                        let result = EncodedResult(flag: flag, served: served, reason: .targetingMatch, metadata: metadata)
                        ReplyEncoder.evalMany(id: nil, default: nil, into: &out) { each in
                            for _ in 0..<40 { each(result) }
                        }
                        ReplyEncoder.evalAll(id: nil, into: &out) { each in
                            for _ in 0..<40 { each(result) }
                        }
                    }
                }
            }
            written = out.count
            out.removeAll(keepingCapacity: true)
        }
        for _ in 0..<10 { answer() }
        let before = guidon_thread_alloc_count()
        for _ in 0..<100 { answer() }
        #expect(guidon_thread_alloc_count() - before == 0)
        #expect(written > 6_000)
    }

    static let flags = """
        {"flags": {
          "static-banner": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
          "a-flag-key-longer-than-15-bytes": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}
        }}
        """
}
