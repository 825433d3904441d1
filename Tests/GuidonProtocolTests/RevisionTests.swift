import GuidonProtocol
import Testing

/// Revisions are XXH64 digests (seed 0): the reference implementation's published values, every
/// length class (empty, under 4, under 8, under 32, several 32-byte stripes with a tail), and
/// stability (equal bytes, equal revisions; one byte changed anywhere, another revision).
@Suite struct RevisionTests {
    @Test func knownDigests() {
        #expect(Revision.of([]) == "ef46db3751d8e999")
        #expect(Revision.of(Array("a".utf8)) == "d24ec4f1a98c6e5b")
        #expect(Revision.of(Array("abc".utf8)) == "44bc2cf5ad770999")
        #expect(Revision.of(Array("Nobody inspects the spammish repetition".utf8)) == "fbcea83c8a378bf1")
        #expect(Revision.of(Array("The quick brown fox jumps over the lazy dog".utf8)) == "0b242d361fda71bc")
        // 771 bytes (24 stripes and a tail of 3), as computed by a direct transcription of the algorithm.
        #expect(Revision.of((0..<3).flatMap { _ in (0...255).map { UInt8($0) } } + Array("xyz".utf8)) == "e921a1b45bd779f8")
    }

    @Test func equalBytesEqualRevisions() {
        var bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 13) }
        let revision = Revision.of(bytes)
        #expect(Revision.of(Array(bytes)) == revision)
        #expect(Revision.isWellFormed(revision))
        for position in [0, 1, 31, 32, 4_999, 9_990, 9_999] {
            bytes[position] ^= 1
            #expect(Revision.of(bytes) != revision, "byte \(position) changed")
            bytes[position] ^= 1
        }
        #expect(Revision.of(bytes) == revision)
    }
}
