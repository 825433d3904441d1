@testable import GuidonProtocol
import Testing

@Suite("JSON scanner: plain strings")
struct JSONScannerTests {
    private static func reference(_ word: UInt64) -> Bool {
        (0..<8).contains { lane in
            let b = UInt8(truncatingIfNeeded: word >> (8 * UInt64(lane)))
            return b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") || b < 0x20 || b >= 0x80
        }
    }

    /// The eight-bytes-at-a-time test agrees with a byte-by-byte one: every byte value in
    /// every lane, next to bytes that are plain, and random words.
    @Test func wordTestMatchesTheByteTest() {
        let plain = UInt64(0x6161_6161_6161_6161)  // "aaaaaaaa"
        for lane in 0..<8 {
            for value in 0...255 {
                let shift = UInt64(8 * lane)
                let word = plain & ~(0xFF << shift) | UInt64(value) << shift
                #expect(JSONScanner.needsAttention(word) == Self.reference(word), "byte \(value) in lane \(lane)")
            }
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let word = generator.next() as UInt64
            #expect(JSONScanner.needsAttention(word) == Self.reference(word))
        }
    }

    @Test(arguments: [
        (#""abcdefghijklmnopqrstuvwxyz""#, "abcdefghijklmnopqrstuvwxyz"),
        (#""abcdefgh""#, "abcdefgh"),
        (#""""#, ""),
        (#""caf\#u{E9} au lait, s'il vous pla\#u{EE}t""#, "caf\u{E9} au lait, s'il vous pla\u{EE}t"),
    ])
    func plainStringsAreReadInPlace(json: String, text: String) {
        Array(json.utf8).withUnsafeBytes { bytes in
            var scanner = JSONScanner(bytes, maxDepth: 4)
            let raw = scanner.plainString()
            #expect(raw.map { String(decoding: $0, as: UTF8.self) } == text)
            #expect(scanner.atEnd)
        }
    }

    @Test(arguments: [#""abcdefghij\"klm""#, #""abcdefghijklmnop\n""#, "\"abcdefghijk\tlm\"", #""abcdefghijklmnop"#, "\"abcdefgh\u{7F}\""])
    func anythingElseIsLeftToTheGeneralPath(json: String) {
        Array(json.utf8).withUnsafeBytes { bytes in
            var scanner = JSONScanner(bytes, maxDepth: 4)
            if json.utf8.contains(0x7F) {
                // DEL is plain JSON: read in place.
                #expect(scanner.plainString() != nil)
            } else {
                #expect(scanner.plainString() == nil)
                #expect(scanner.position == 0)
            }
        }
    }
}
