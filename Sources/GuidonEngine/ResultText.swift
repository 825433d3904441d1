import GuidonJSON

/// What the results of one flag share, written once when the flag is compiled: the metadata,
/// as a value and as JSON text, and the JSON text of the members that name the flag and that
/// serve each of its variants, so that a reply copies bytes instead of encoding the same
/// strings on every evaluation. Results without a compiled flag (and without metadata) share
/// `none`.
final class ResultText: Sendable {
    let metadata: JSONObject
    let metadataJSON: [UInt8]
    /// `"flag":KEY`, then `,"value":VALUE,"variant":NAME` for each variant (empty for `none`).
    private let members: [UInt8]
    /// Where each of these ends in `members`: the flag's, then each variant's.
    private let ends: [Int]

    static let none = ResultText(metadata: JSONObject(), metadataJSON: Array("{}".utf8), members: [], ends: [])

    private init(metadata: JSONObject, metadataJSON: [UInt8], members: [UInt8], ends: [Int]) {
        self.metadata = metadata
        self.metadataJSON = metadataJSON
        self.members = members
        self.ends = ends
    }

    /// Metadata alone, for results without a compiled flag.
    static func make(_ metadata: JSONObject) -> ResultText {
        guard !metadata.isEmpty else { return none }
        return ResultText(metadata: metadata, metadataJSON: json(metadata), members: [], ends: [])
    }

    /// Everything, for a compiled flag.
    static func make(flagKey: String, variants: VariantTable, metadata: JSONObject) -> ResultText {
        var members: [UInt8] = []
        var ends: [Int] = []
        ends.reserveCapacity(variants.names.count + 1)
        members.append(contentsOf: #""flag":"#.utf8)
        JSONWriter.writeString(flagKey, into: &members)
        ends.append(members.count)
        for (name, value) in zip(variants.names, variants.values) {
            members.append(contentsOf: #","value":"#.utf8)
            JSONWriter.write(value, into: &members)
            members.append(contentsOf: #","variant":"#.utf8)
            JSONWriter.writeString(name, into: &members)
            ends.append(members.count)
        }
        return ResultText(metadata: metadata, metadataJSON: json(metadata), members: members, ends: ends)
    }

    /// Whether the members were written (for a compiled flag).
    var hasMembers: Bool { !ends.isEmpty }

    /// The flag's members and those of `variant` (when asked for and written), and the
    /// metadata, lent to `body`.
    @inline(__always)
    func withMembers<Result>(
        flag: Bool, variant: Int?, _ body: (UnsafeRawBufferPointer?, UnsafeRawBufferPointer?, UnsafeRawBufferPointer) -> Result
    ) -> Result {
        metadataJSON.withUnsafeBytes { metadata in
            members.withUnsafeBytes { bytes in
                guard !ends.isEmpty else { return body(nil, nil, metadata) }
                let flagMember = flag ? UnsafeRawBufferPointer(rebasing: bytes[..<ends[0]]) : nil
                let variantMembers = variant.map { UnsafeRawBufferPointer(rebasing: bytes[ends[$0]..<ends[$0 + 1]]) }
                return body(flagMember, variantMembers, metadata)
            }
        }
    }

    private static func json(_ metadata: JSONObject) -> [UInt8] {
        var json: [UInt8] = []
        JSONWriter.write(.object(metadata), into: &json)
        return json
    }
}
