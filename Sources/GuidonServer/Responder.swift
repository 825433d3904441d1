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
    /// Where the admin socket is, to name it when a write is refused here (`nil`: there is none).
    public var adminSocketPath: String?
    /// Called on the loop with every write refused on this socket (the request line, the error
    /// and the connection's socket), to audit it off the loop.
    public var refusedWrite: (@Sendable (_ line: [UInt8], _ error: RequestError, _ socket: Int32) -> Void)?

    public init(
        store: ConfigStore, connections: Connections, maxLineBytes: Int, replyBudget: Int = 256 * 1024,
        adminSocketPath: String? = nil, refusedWrite: (@Sendable ([UInt8], RequestError, Int32) -> Void)? = nil,
        status: @escaping @Sendable () -> DaemonStatus
    ) {
        self.store = store
        self.connections = connections
        self.maxLineBytes = maxLineBytes
        self.replyBudget = replyBudget
        self.adminSocketPath = adminSocketPath
        self.refusedWrite = refusedWrite
        self.status = status
    }
}

/// Answers request lines into reply bytes: the protocol without the I/O.
///
/// Keeps one `Request` between lines, so that decoding reuses its storage and the usual
/// request allocates nothing.
struct Responder {
    let service: ServiceContext
    /// The connection's socket (for the credentials of a refused write), -1 for none.
    let socket: Int32
    private let parser = RequestParser()
    private var request = Request(op: .ping)

    init(service: ServiceContext, socket: Int32 = -1) {
        self.service = service
        self.socket = socket
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
            if error.code == .forbidden { return refuseWrite(line, error, into: &replies) }
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

    /// An admin operation on the query socket: `FORBIDDEN`, naming the admin socket, and audited.
    private func refuseWrite(_ line: UnsafeRawBufferPointer, _ error: RequestError, into replies: inout [UInt8]) {
        var refusal = error
        if let path = service.adminSocketPath {
            refusal.message += "; send it to the admin socket, \(path)"
        } else {
            refusal.message += "; this guidond has no admin socket (start it with --admin-socket PATH)"
        }
        service.refusedWrite?(Array(line), refusal, socket)
        ReplyEncoder.error(refusal, into: &replies)
    }
}
