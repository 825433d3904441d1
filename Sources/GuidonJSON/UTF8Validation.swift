/// The offset of the first byte of the first ill-formed sequence in `bytes`, or `nil` when all of
/// `bytes` is well-formed UTF-8 (RFC 3629: no overlong forms, no UTF-16 surrogates, nothing above
/// U+10FFFF, no truncated sequences).
///
/// Parsers check text with this and then build strings with the fast, non-validating
/// `String(decoding:as:)`; the offset lets them point at the offending byte.
public func firstInvalidUTF8Offset(in bytes: UnsafeRawBufferPointer) -> Int? {
    let n = bytes.count
    var i = 0
    while i < n {
        // ASCII fast path: eight bytes at a time while none has its high bit set.
        while i + 8 <= n, bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
            i += 8
        }
        guard i < n else { return nil }
        let b0 = bytes[i]
        if b0 < 0x80 {
            i += 1
            continue
        }
        // The allowed range of the second byte depends on the lead byte (RFC 3629, section 4);
        // the remaining bytes are plain continuations (0x80...0xBF).
        let length: Int
        let second: ClosedRange<UInt8>
        switch b0 {
        case 0xC2...0xDF: length = 2; second = 0x80...0xBF
        case 0xE0: length = 3; second = 0xA0...0xBF  // below: overlong
        case 0xED: length = 3; second = 0x80...0x9F  // above: surrogates
        case 0xE1...0xEF: length = 3; second = 0x80...0xBF
        case 0xF0: length = 4; second = 0x90...0xBF  // below: overlong
        case 0xF4: length = 4; second = 0x80...0x8F  // above: beyond U+10FFFF
        case 0xF1...0xF3: length = 4; second = 0x80...0xBF
        default: return i  // a stray continuation byte, C0/C1 (always overlong) or F5...FF
        }
        guard i + length <= n, second.contains(bytes[i + 1]) else { return i }
        for k in 2..<length where bytes[i + k] & 0xC0 != 0x80 {
            return i
        }
        i += length
    }
    return nil
}
