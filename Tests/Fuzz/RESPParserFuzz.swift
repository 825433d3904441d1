// libFuzzer target for the RESP2 reply parser (built by .ci/fuzz, not by SwiftPM).
//
// Whatever the bytes: no crash; every reply parsed re-encodes to bytes that parse to the same
// value; every proper prefix of a reply is only "incomplete" (nil), never a value or an error,
// which is what lets a connection feed the parser whatever has arrived so far; and an error
// points inside the input.
import GuidonRESP

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRESPReplies(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let parser = RESPParser(maxDepth: 8, maxBulkLength: 1 << 16, maxArrayLength: 1 << 12, maxLineLength: 1 << 10)
    // Simple strings and errors are decoded as UTF-8 with invalid bytes replaced by U+FFFD (three
    // bytes each), so a re-encoded line can be up to three times as long as the one received.
    let reparser = RESPParser(maxDepth: 8, maxBulkLength: 1 << 16, maxArrayLength: 1 << 12, maxLineLength: 3 << 10)
    var offset = 0
    while offset < size {
        let parsed: (value: RESPValue, end: Int)?
        do {
            parsed = try parser.parse(bytes, from: offset)
        } catch {
            precondition(error.code == .malformedReply, "the parser only reports malformed replies")
            precondition((error.offset ?? -1) >= offset && (error.offset ?? size) < size, "error offset \(String(describing: error.offset)) outside the input")
            return 0
        }
        guard let (value, end) = parsed else { return 0 }
        precondition(end > offset && end <= size, "a reply must consume bytes within the input")
        // Re-encoded, it parses to the same value, consuming exactly the encoding.
        var encoded: [UInt8] = []
        value.encode(into: &encoded)
        guard let (again, againEnd) = try? reparser.parse(encoded) else { preconditionFailure("re-encoded reply does not parse") }
        precondition(again == value && againEnd == encoded.count, "round trip changed the reply")
        // Each proper prefix of the reply is incomplete (checked at a few cut points to bound the cost).
        let length = end - offset
        for cut in Set([0, 1, 2, length / 3, length / 2, length - 2, length - 1]) where cut >= 0 && cut < length {
            let prefix = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + cut)])
            let result = Result { () throws(RESPError) in try parser.parse(prefix) }
            guard case .success(nil) = result else {
                preconditionFailure("a prefix of \(cut) of a \(length)-byte reply gave \(result) instead of nil")
            }
        }
        offset = end
    }
    return 0
}
