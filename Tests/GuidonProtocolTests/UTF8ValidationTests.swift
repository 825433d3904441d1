@testable import GuidonProtocol
import Testing

@Suite("UTF-8 validation of request strings")
struct UTF8ValidationTests {
    func agrees(_ bytes: [UInt8]) -> Bool {
        let ours = bytes.withUnsafeBytes(isValidUTF8)
        let stdlib = String(validating: bytes, as: UTF8.self) != nil
        return ours == stdlib
    }

    @Test func agreesWithTheStandardLibraryOnEveryOneAndTwoByteSequence() {
        for a in 0...255 {
            #expect(agrees([UInt8(a)]))
            for b in 0...255 where !agrees([UInt8(a), UInt8(b)]) {
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
            let length = Int(next() % 7) + 1
            let bytes = (0..<length).map { _ in interesting[Int(next() % UInt64(interesting.count))] }
            if !agrees(bytes) { disagreements += 1 }
        }
        #expect(disagreements == 0)
    }
}
