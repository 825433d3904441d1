import GuidonJSON

/// An evaluation result as the JSON text of a reply's members, lent to a closure.
///
/// `Snapshot.withResult(_:context:type:now:_:)` lends one without making an
/// `EvaluationResult`: the text was written when the flag was compiled, and lending it costs
/// no reference counting. (Counting references to a snapshot's objects means atomic
/// operations on memory that every thread reading the snapshot shares, and making an
/// `EvaluationResult` takes several.) `EvaluationResult.withEncoded(_:)` lends the same
/// members for a result in hand.
///
/// The buffers are valid only until the closure that receives them returns.
public struct EncodedResult {
    /// `"flag":KEY`.
    public let flag: UnsafeRawBufferPointer
    /// `,"value":VALUE,"variant":NAME` (or `,"value":VALUE` for a result without a variant
    /// name); `nil` when the result carries no value and the caller's default applies.
    public let served: UnsafeRawBufferPointer?
    public let reason: Reason
    public let errorCode: ErrorCode?
    public let errorMessage: String?
    /// The metadata object.
    public let metadata: UnsafeRawBufferPointer
    /// Where the flag is in the snapshot that evaluated it (`nil` for an unknown key), and
    /// the variant served (its index in the flag's variants, in document order), so that a
    /// server can count results by position rather than by name.
    public internal(set) var flagPosition: Int?
    public internal(set) var variantIndex: Int?
    /// For a feature's answer (entitlements) that tells the tenant no: which feature and why
    /// (`nil` for every flag's result, for a feature's answer that entitles, and for a type
    /// mismatch: that is an error, not a denial).
    public var denial: EntitlementDenial?

    /// A result whose members are text written elsewhere (entitlements lend theirs this way).
    public init(
        flag: UnsafeRawBufferPointer, served: UnsafeRawBufferPointer?, reason: Reason,
        errorCode: ErrorCode? = nil, errorMessage: String? = nil, metadata: UnsafeRawBufferPointer,
        flagPosition: Int? = nil, variantIndex: Int? = nil, denial: EntitlementDenial? = nil
    ) {
        self.flag = flag
        self.served = served
        self.reason = reason
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.metadata = metadata
        self.flagPosition = flagPosition
        self.variantIndex = variantIndex
        self.denial = denial
    }

    /// The flag's key as a JSON string (`flag` without its `"flag":`).
    public var key: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: flag.dropFirst(Self.flagPrefix.count))
    }

    static let flagPrefix = Array(#""flag":"#.utf8)

    /// Writes `"flag":KEY` (what `flag` holds).
    static func writeFlag(_ key: String, into text: inout [UInt8]) {
        text.append(contentsOf: flagPrefix)
        JSONWriter.writeString(key, into: &text)
    }

    /// Writes `,"value":VALUE,"variant":NAME` (what `served` holds).
    static func writeServed(_ value: JSONValue, variant: String?, into text: inout [UInt8]) {
        text.append(contentsOf: #","value":"#.utf8)
        JSONWriter.write(value, into: &text)
        if let variant {
            text.append(contentsOf: #","variant":"#.utf8)
            JSONWriter.writeString(variant, into: &text)
        }
    }
}

extension EvaluationResult {
    /// Lends `body` this result's reply members. A result of a compiled flag lends the text the
    /// flag wrote (unless the result was changed since); the rest is written for the call.
    public func withEncoded<Result>(_ body: (EncodedResult) -> Result) -> Result {
        withSharedMembers { sharedFlag, sharedServed, metadata in
            let needsValue = sharedServed == nil && value != nil
            if let sharedFlag, !needsValue {
                return body(encoded(flag: sharedFlag, served: sharedServed, metadata: metadata))
            }
            var text: [UInt8] = []
            if sharedFlag == nil { EncodedResult.writeFlag(flagKey, into: &text) }
            let flagEnd = text.count
            if needsValue, let value { EncodedResult.writeServed(value, variant: variant, into: &text) }
            return text.withUnsafeBytes { bytes in
                let flag = sharedFlag ?? UnsafeRawBufferPointer(rebasing: bytes[..<flagEnd])
                let served = needsValue ? UnsafeRawBufferPointer(rebasing: bytes[flagEnd...]) : sharedServed
                return body(encoded(flag: flag, served: served, metadata: metadata))
            }
        }
    }

    /// `withEncoded(_:)` for a result of the flag at `position` serving the variant at `variant`.
    func withEncoded(position: Int, variant: Int?, _ body: (EncodedResult) -> Void) {
        withEncoded { encoded in
            var encoded = encoded
            encoded.flagPosition = position
            encoded.variantIndex = variant
            body(encoded)
        }
    }

    private func encoded(flag: UnsafeRawBufferPointer, served: UnsafeRawBufferPointer?, metadata: UnsafeRawBufferPointer) -> EncodedResult {
        EncodedResult(
            flag: flag, served: served, reason: reason, errorCode: errorCode, errorMessage: errorMessage, metadata: metadata)
    }
}
