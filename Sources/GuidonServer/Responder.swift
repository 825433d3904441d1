import GuidonEngine
import GuidonJSON
public import GuidonProtocol

/// What every connection shares.
public struct ServiceContext: Sendable {
    public var store: ConfigStore
    public var connections: Connections
    /// Longest accepted request line, in bytes, without its newline.
    public var maxLineBytes: Int
    /// How many reply bytes a connection may have waiting before it writes them out and,
    /// should the client not take them, stops answering (bounds the memory a burst of small
    /// requests with large replies can take).
    public var replyBudget: Int
    /// Builds the `status` reply body.
    public var status: @Sendable () -> DaemonStatus

    public init(
        store: ConfigStore, connections: Connections, maxLineBytes: Int, replyBudget: Int = 256 * 1024,
        status: @escaping @Sendable () -> DaemonStatus
    ) {
        self.store = store
        self.connections = connections
        self.maxLineBytes = maxLineBytes
        self.replyBudget = replyBudget
        self.status = status
    }
}

/// Answers request lines into reply bytes: the protocol without the I/O.
///
/// Keeps one `Request` between lines, so that decoding reuses its storage and the usual
/// request allocates nothing.
struct Responder {
    let service: ServiceContext
    private let parser = RequestParser()
    private var request = Request(op: .ping)

    init(service: ServiceContext) {
        self.service = service
    }

    /// Answers `line` (without its newline) from `config`, appending the reply to `replies`.
    /// A `watch` calls `subscribe` before it reads the version it reports, so that no reload
    /// falls between the two unannounced.
    mutating func answer(
        _ line: UnsafeRawBufferPointer, config: ServedConfig, into replies: inout [UInt8], subscribe: () -> Void
    ) {
        var line = line
        if let last = line.last, last == UInt8(ascii: "\r") { line = UnsafeRawBufferPointer(rebasing: line.dropLast()) }
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }
        do {
            try parser.parse(line, into: &request)
        } catch {
            ReplyEncoder.error(error, into: &replies)
            return
        }
        let snapshot = config.snapshot
        switch request.op {
        case .eval:
            if let keys = request.flags {
                let type = request.type
                ReplyEncoder.evalMany(id: request.id, default: request.defaultValue, into: &replies) { each in
                    snapshot.forEachResult(keys, context: request.context, type: type, each)
                }
            } else {
                let (id, defaultValue) = (request.id, request.defaultValue)
                snapshot.withResult(request.flag ?? "", context: request.context, type: request.type) { result in
                    ReplyEncoder.eval(id: id, result: result, default: defaultValue, into: &replies)
                }
            }
        case .evalAll:
            ReplyEncoder.evalAll(id: request.id, into: &replies) { each in
                snapshot.forEachResult(context: request.context, each)
            }
        case .ping:
            ReplyEncoder.ping(id: request.id, configVersion: config.version, flagCount: snapshot.count, into: &replies)
        case .status:
            ReplyEncoder.reply(id: request.id, service.status().json, into: &replies)
        case .list:
            ReplyEncoder.reply(id: request.id, FlagListing.json(configVersion: config.version, flags: snapshot.flags), into: &replies)
        case .watch:
            subscribe()
            let now = service.store.current
            ReplyEncoder.reply(id: request.id, ["ok": true, "watching": true, "configVersion": .string(now.version)], into: &replies)
        }
    }
}
