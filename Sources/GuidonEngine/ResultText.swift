import GuidonJSON

/// What the results of one flag share, written once when the flag is compiled: the metadata,
/// as a value and as JSON text, and the JSON text of the members that name the flag and that
/// serve each of its variants, so that a reply copies bytes instead of encoding the same
/// strings on every evaluation. Results without a compiled flag (and without metadata) share
/// `none`.
///
/// A snapshot holds one per flag, so it is one allocation (a `ManagedBuffer`): the metadata in
/// the header, then in the tail where each member ends (32-bit offsets) and the text itself,
/// the metadata's JSON followed by the members'.
struct ResultText: @unchecked Sendable {
    // Sendable: the buffer is written once by `make`, before it is shared, and only read afterwards.
    private let storage: Storage

    private final class Storage: ManagedBuffer<Header, UInt32> {}

    private struct Header {
        let metadata: JSONObject
        /// The length of the metadata's JSON, which the members follow.
        let metadataCount: UInt32
        /// How many member ends precede the text: 1 + the variants, or 0 without members.
        let endCount: UInt32
    }

    static let none = make(metadata: JSONObject(), metadataJSON: Array("{}".utf8), members: [], ends: [])

    /// Metadata alone, for results without a compiled flag.
    static func make(_ metadata: JSONObject) -> ResultText {
        guard !metadata.isEmpty else { return none }
        return make(metadata: metadata, metadataJSON: json(metadata), members: [], ends: [])
    }

    /// Everything, for a compiled flag.
    static func make(flagKey: String, variants: VariantTable, metadata: JSONObject) -> ResultText {
        var members: [UInt8] = []
        var ends: [Int] = []
        ends.reserveCapacity(variants.names.count + 1)
        EncodedResult.writeFlag(flagKey, into: &members)
        ends.append(members.count)
        for (name, value) in zip(variants.names, variants.values) {
            EncodedResult.writeServed(value, variant: name, into: &members)
            ends.append(members.count)
        }
        return make(metadata: metadata, metadataJSON: json(metadata), members: members, ends: ends)
    }

    var metadata: JSONObject { storage.header.metadata }

    /// The metadata as compact JSON text (a copy: replies borrow it through `withMembers`).
    var metadataJSON: [UInt8] {
        withMembers(flag: false, variant: nil) { _, _, metadata in Array(metadata) }
    }

    /// Whether the members were written (for a compiled flag).
    var hasMembers: Bool { storage.header.endCount != 0 }

    /// The flag's members and those of `variant` (when asked for and written), and the
    /// metadata, lent to `body`.
    @inline(__always)
    func withMembers<Result>(
        flag: Bool, variant: Int?, _ body: (UnsafeRawBufferPointer?, UnsafeRawBufferPointer?, UnsafeRawBufferPointer) -> Result
    ) -> Result {
        storage.withUnsafeMutablePointers { header, ends in
            let endCount = Int(header.pointee.endCount)
            let metadataCount = Int(header.pointee.metadataCount)
            let text = UnsafeRawPointer(ends + endCount)
            let metadata = UnsafeRawBufferPointer(start: text, count: metadataCount)
            guard endCount != 0 else { return body(nil, nil, metadata) }
            let members = text + metadataCount
            let flagMember = flag ? UnsafeRawBufferPointer(start: members, count: Int(ends[0])) : nil
            let variantMembers = variant.map { i in
                precondition(i >= 0 && i + 1 < endCount, "no variant \(i)")
                let start = Int(ends[i])
                return UnsafeRawBufferPointer(start: members + start, count: Int(ends[i + 1]) - start)
            }
            return body(flagMember, variantMembers, metadata)
        }
    }

    /// `ends`: where, in `members`, the flag's member ends and then each variant's (empty
    /// without members). A flag's text is far below 4 GiB: the file is at most 64 MiB.
    private static func make(metadata: JSONObject, metadataJSON: [UInt8], members: [UInt8], ends: [Int]) -> ResultText {
        let textCount = metadataJSON.count + members.count
        let capacity = ends.count + (textCount + 3) / 4
        let header = Header(metadata: metadata, metadataCount: UInt32(metadataJSON.count), endCount: UInt32(ends.count))
        let storage = Storage.create(minimumCapacity: capacity) { _ in header }
        storage.withUnsafeMutablePointerToElements { tail in
            tail.initialize(repeating: 0, count: capacity)
            for (i, end) in ends.enumerated() { tail[i] = UInt32(end) }
            let text = UnsafeMutableRawPointer(tail + ends.count)
            metadataJSON.withUnsafeBytes { text.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            members.withUnsafeBytes { bytes in
                guard let base = bytes.baseAddress else { return }
                (text + metadataJSON.count).copyMemory(from: base, byteCount: bytes.count)
            }
        }
        return ResultText(storage: unsafeDowncast(storage, to: Storage.self))
    }

    private static func json(_ metadata: JSONObject) -> [UInt8] {
        var json: [UInt8] = []
        JSONWriter.write(.object(metadata), into: &json)
        return json
    }
}
