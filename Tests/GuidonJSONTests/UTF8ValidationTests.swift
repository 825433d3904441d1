import GuidonJSON
import Testing

@Suite("UTF-8 validation")
struct UTF8ValidationTests {
    func firstInvalid(_ bytes: [UInt8]) -> Int? {
        bytes.withUnsafeBytes { firstInvalidUTF8Offset(in: $0) }
    }

    func agreesWithStandardLibrary(_ bytes: [UInt8]) -> Bool {
        (firstInvalid(bytes) == nil) == (String(validating: bytes, as: UTF8.self) != nil)
    }

    @Test("the first and last scalar of every encoding length is accepted", arguments: [
        [0x00], [0x7F],  // U+0000, U+007F
        [0xC2, 0x80], [0xDF, 0xBF],  // U+0080, U+07FF
        [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF],  // U+0800, U+D7FF (just below the surrogates)
        [0xEE, 0x80, 0x80], [0xEF, 0xBF, 0xBF],  // U+E000 (just above them), U+FFFF
        [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF],  // U+10000, U+10FFFF
    ] as [[UInt8]])
    func boundaryScalarsAreValid(_ scalar: [UInt8]) {
        #expect(firstInvalid(scalar) == nil)
        #expect(firstInvalid(Array("ab".utf8) + scalar + Array("cd".utf8)) == nil)
    }

    @Test("every class of ill-formed sequence is reported at its first byte", arguments: [
        ("stray continuation", [0x80]), ("stray continuation", [0xBF]),
        ("C0/C1 lead (always overlong)", [0xC0, 0xAF]), ("C0/C1 lead (always overlong)", [0xC1, 0xBF]),
        ("overlong 3-byte", [0xE0, 0x80, 0xAF]), ("overlong 3-byte", [0xE0, 0x9F, 0xBF]),
        ("overlong 4-byte", [0xF0, 0x80, 0x80, 0xAF]), ("overlong 4-byte", [0xF0, 0x8F, 0xBF, 0xBF]),
        ("high surrogate", [0xED, 0xA0, 0x80]), ("low surrogate", [0xED, 0xBF, 0xBF]),
        ("above U+10FFFF", [0xF4, 0x90, 0x80, 0x80]), ("lead above F4", [0xF5, 0x80, 0x80, 0x80]),
        ("lead above F4", [0xFF]),
        ("truncated 2-byte", [0xC3]), ("truncated 3-byte", [0xE2, 0x82]), ("truncated 4-byte", [0xF0, 0x9F, 0x98]),
        ("continuation replaced by ASCII", [0xE2, 0x41, 0x82]), ("third byte not a continuation", [0xE2, 0x82, 0x41]),
        ("fourth byte not a continuation", [0xF0, 0x9F, 0x98, 0xC3]),
    ] as [(String, [UInt8])])
    func illFormedSequences(_ kind: String, _ sequence: [UInt8]) {
        #expect(firstInvalid(sequence) == 0, "\(kind)")
        // After valid text: the offset counts the bytes before it, multi-byte scalars included.
        let prefix = Array("aé€😀".utf8)
        #expect(firstInvalid(prefix + sequence + Array("z".utf8)) == prefix.count, "\(kind)")
    }

    @Test func reportsTheFirstOfSeveralProblems() {
        #expect(firstInvalid([0x41, 0xC0, 0x41, 0xFF]) == 1)
    }

    @Test func findsABadByteAtEveryPositionOfAnASCIIRun() {
        // Around and across the eight-byte steps of the ASCII fast path.
        for length in 1...33 {
            for position in 0..<length {
                var bytes = [UInt8](repeating: UInt8(ascii: "x"), count: length)
                bytes[position] = 0x80
                #expect(firstInvalid(bytes) == position, "length \(length), bad byte at \(position)")
            }
            #expect(firstInvalid([UInt8](repeating: 0x7F, count: length)) == nil)
        }
        #expect(firstInvalid([]) == nil)
    }

    @Test func agreesWithTheStandardLibraryOnEveryOneAndTwoByteSequence() {
        for a in 0...255 {
            #expect(agreesWithStandardLibrary([UInt8(a)]))
            for b in 0...255 where !agreesWithStandardLibrary([UInt8(a), UInt8(b)]) {
                Issue.record("disagree on [\(a), \(b)]")
            }
        }
    }

    @Test func agreesWithTheStandardLibraryOnRandomSequences() {
        // Bytes drawn mostly from the interesting ranges (lead bytes, continuations, edges).
        let interesting: [UInt8] = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
                                    0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var disagreements = 0
        for _ in 0..<200_000 {
            let length = Int(next() % 12) + 1
            let bytes = (0..<length).map { _ in interesting[Int(next() % UInt64(interesting.count))] }
            if !agreesWithStandardLibrary(bytes) { disagreements += 1 }
        }
        #expect(disagreements == 0)
    }
}
