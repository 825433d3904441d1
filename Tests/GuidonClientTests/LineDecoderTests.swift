import NIOCore
import Testing

@testable import GuidonClient

/// The reply framing, fed the same bytes three ways (whole, byte by byte, several lines per
/// chunk), as NIO's `ByteToMessageDecoderVerifier` does for its decoders.
@Suite struct LineDecoderTests {
    /// Every line the decoder produces from `chunks`, then at end of stream.
    private func lines(_ chunks: [[UInt8]], max: Int = 1 << 20) throws -> [String] {
        let processor = NIOSingleStepByteToMessageProcessor(LineDecoder(maxLineBytes: max))
        var out: [String] = []
        for chunk in chunks {
            try processor.process(buffer: ByteBuffer(bytes: chunk)) { out.append(String(buffer: $0)) }
        }
        try processor.finishProcessing(seenEOF: true) { out.append(String(buffer: $0)) }
        return out
    }

    /// The same stream whole, one byte per chunk, and in chunks of 2 to 40 bytes.
    private func everyWay(_ text: String) -> [[[UInt8]]] {
        let bytes = Array(text.utf8)
        var ways: [[[UInt8]]] = [[bytes], bytes.map { [$0] }]
        for size in [2, 3, 7, 40] {
            ways.append(stride(from: 0, to: bytes.count, by: size).map { Array(bytes[$0..<min($0 + size, bytes.count)]) })
        }
        return ways
    }

    @Test func linesComeOutWholeHoweverTheBytesArrive() throws {
        let stream = #"{"id":1,"ok":true}"# + "\n" + #"{"id":2,"value":"a\nb"}"# + "\n\n" + #"{"event":"configurationChanged"}"# + "\n"
        for chunks in everyWay(stream) {
            #expect(try lines(chunks) == [#"{"id":1,"ok":true}"#, #"{"id":2,"value":"a\nb"}"#, "", #"{"event":"configurationChanged"}"#])
        }
    }

    @Test func aCarriageReturnBeforeTheLineFeedIsDropped() throws {
        for chunks in everyWay("{\"id\":1}\r\n{\"id\":2}\n") {
            #expect(try lines(chunks) == [#"{"id":1}"#, #"{"id":2}"#])
        }
    }

    @Test func anUnterminatedTailAtTheEndIsNotALine() throws {
        for chunks in everyWay("{\"id\":1}\n{\"id\":2,\"val") {
            #expect(try lines(chunks) == [#"{"id":1}"#])
        }
    }

    @Test func aLineOverTheLimitIsRefusedTerminatedOrNot() {
        let long = String(repeating: "x", count: 101)
        for text in [long + "\n", long] {
            for chunks in everyWay(text) {
                #expect(throws: LineDecoder.LineTooLong.self) { try lines(chunks, max: 100) }
            }
        }
        #expect((try? lines([Array((String(repeating: "x", count: 100) + "\n").utf8)], max: 100))?.count == 1)
    }

    @Test func aLongLineInManyChunksComesOutWhole() throws {
        // 1 MiB in 1 KiB chunks: the decoder resumes its scan where the last chunk ended.
        let payload = String(repeating: "y", count: 1 << 20)
        let bytes = Array((payload + "\n").utf8)
        let chunks = stride(from: 0, to: bytes.count, by: 1024).map { Array(bytes[$0..<min($0 + 1024, bytes.count)]) }
        #expect(try lines(chunks, max: 2 << 20) == [payload])
    }
}
