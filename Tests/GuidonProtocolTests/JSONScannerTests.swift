@testable import GuidonProtocol
import Testing

@Suite("JSON scanner: plain strings")
struct JSONScannerTests {
    /// The lane of the first byte that is a quote, a backslash, a control character or not ASCII.
    private static func reference(_ word: UInt64) -> Int? {
        (0..<8).first { lane in
            let b = UInt8(truncatingIfNeeded: word >> (8 * UInt64(lane)))
            return b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") || b < 0x20 || b >= 0x80
        }
    }

    private static func firstFlagged(_ word: UInt64) -> Int? {
        let special = JSONScanner.specialBytes(word)
        return special == 0 ? nil : special.trailingZeroBitCount / 8
    }

    /// The eight-bytes-at-a-time test finds the first byte a byte-by-byte one finds: every byte
    /// value in every lane, next to bytes that are plain or special, and random words.
    @Test func wordTestMatchesTheByteTest() {
        for fill: UInt8 in [0x61, 0x22, 0x5C, 0x00, 0x1F, 0x7F, 0x80, 0xFF] {
            let background = UInt64(0x0101_0101_0101_0101) &* UInt64(fill)
            for lane in 0..<8 {
                for value in 0...255 {
                    let shift = UInt64(8 * lane)
                    let word = background & ~(0xFF << shift) | UInt64(value) << shift
                    #expect(Self.firstFlagged(word) == Self.reference(word), "byte \(value) in lane \(lane) among \(fill)")
                }
            }
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let word = generator.next() as UInt64
            #expect(Self.firstFlagged(word) == Self.reference(word))
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
