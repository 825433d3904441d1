@testable import GuidonServer
import Testing

@Suite("Quota reply writer")
struct QuotaReplyWriterTests {
    /// What `RawWriter.int` writes for `value`.
    private func written(_ value: Int64?) -> String {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { buffer in
            var writer = QuotaReply.RawWriter(buffer.baseAddress!)
            writer.int(value)
            return String(decoding: UnsafeBufferPointer(start: buffer.baseAddress, count: writer.count), as: UTF8.self)
        }
    }

    @Test("Integers are written as Swift prints them, at every length and sign")
    func integers() {
        var values: [Int64] = [0, 1, 9, 10, 11, 99, 100, 101, 999, 1_000, 9_007_199_254_740_991, .max, .min, .min + 1]
        var power: Int64 = 1
        for _ in 0..<18 {
            power *= 10
            values += [power - 1, power, power + 1, -power, -(power - 1)]
        }
        for value in values { #expect(written(value) == String(value), "\(value)") }
        #expect(written(nil) == "null")
    }

    @Test("Several integers follow one another")
    func sequence() {
        let text = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { buffer in
            var writer = QuotaReply.RawWriter(buffer.baseAddress!)
            writer.text("[")
            writer.int(7)
            writer.text(",")
            writer.int(-1_234_567)
            writer.text(",")
            writer.int(nil)
            writer.text("]")
            return String(decoding: UnsafeBufferPointer(start: buffer.baseAddress, count: writer.count), as: UTF8.self)
        }
        #expect(text == "[7,-1234567,null]")
    }
}
