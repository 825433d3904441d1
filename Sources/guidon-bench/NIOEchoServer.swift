import ArgumentParser
import NIOCore
import NIOPosix

/// SwiftNIO with nothing on top: the same framing as the floor, served from NIO event loops the
/// way guidond serves (count the lines of each read, write the replies, flush once per read
/// burst). Attach `guidon-bench --socket` to it to see which part of guidond's cost is NIO's.
struct NIOEchoServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nio-echo-server",
        abstract: "Serve a fixed reply line per request line from SwiftNIO event loops (for comparisons).",
        shouldDisplay: false
    )

    @Option(help: "The Unix socket to listen on.")
    var socket: String

    @Option(help: "Event-loop threads (guidond's default is one per core).")
    var threads: Int = System.coreCount

    /// Also a valid `ping` and `eval` reply, so that `guidon-bench --socket` accepts this server.
    static let reply = #"{"ok":true,"configVersion":"echo","flag":"new-checkout","value":true,"variant":"on","reason":"TARGETING_MATCH"}"#

    func run() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        let line = Array((Self.reply + "\n").utf8)
        let channel = try ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(LineEcho(reply: line)) }
            }
            .bind(unixDomainSocketPath: socket, cleanupExistingSocketFile: true)
            .wait()
        try channel.closeFuture.wait()
    }
}

final class LineEcho: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let reply: [UInt8]

    init(reply: [UInt8]) { self.reply = reply }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let input = unwrapInboundIn(data)
        let lines = input.readableBytesView.reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
        guard lines > 0 else { return }
        var out = context.channel.allocator.buffer(capacity: lines * reply.count)
        for _ in 0..<lines { out.writeBytes(reply) }
        context.write(wrapOutboundOut(out), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}
