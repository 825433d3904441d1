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

    /// A result whose members are text written elsewhere (entitlements lend theirs this way).
    public init(
        flag: UnsafeRawBufferPointer, served: UnsafeRawBufferPointer?, reason: Reason,
        errorCode: ErrorCode? = nil, errorMessage: String? = nil, metadata: UnsafeRawBufferPointer
    ) {
        self.flag = flag
        self.served = served
        self.reason = reason
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.metadata = metadata
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

    private func encoded(flag: UnsafeRawBufferPointer, served: UnsafeRawBufferPointer?, metadata: UnsafeRawBufferPointer) -> EncodedResult {
        EncodedResult(
            flag: flag, served: served, reason: reason, errorCode: errorCode, errorMessage: errorMessage, metadata: metadata)
    }
}
