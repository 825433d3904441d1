import NIOCore

/// Splits the daemon's byte stream into reply lines (NDJSON: one JSON text per line feed; a
/// carriage return before the line feed is dropped, as PROTOCOL.md §1 allows).
///
/// A line longer than `maxLineBytes` is an error rather than an ever-growing buffer: nothing the
/// daemon sends comes near the default 64 MiB, so such a line is a broken peer.
struct LineDecoder: NIOSingleStepByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    struct LineTooLong: Error {
        let limit: Int
    }

    let maxLineBytes: Int
    /// How many readable bytes are known to hold no line feed: a long reply that arrives in many
    /// reads is scanned once, not once per read.
    private var scanned = 0

    init(maxLineBytes: Int) {
        self.maxLineBytes = maxLineBytes
    }

    mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
        let view = buffer.readableBytesView
        guard let newline = view[(view.startIndex + scanned)...].firstIndex(of: UInt8(ascii: "\n")) else {
            scanned = view.count
            if scanned > maxLineBytes { throw LineTooLong(limit: maxLineBytes) }
            return nil
        }
        scanned = 0
        var length = newline - view.startIndex
        let carriageReturn = length > 0 && view[newline - 1] == UInt8(ascii: "\r")
        if carriageReturn { length -= 1 }
        if length > maxLineBytes { throw LineTooLong(limit: maxLineBytes) }
        let line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: carriageReturn ? 2 : 1)
        return line
    }

    /// At the end of the stream, bytes after the last line feed are a reply cut short by the
    /// close: not a reply. The requests still waiting fail as the connection closes.
    mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
        if let line = try decode(buffer: &buffer) { return line }
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return nil
    }
}
