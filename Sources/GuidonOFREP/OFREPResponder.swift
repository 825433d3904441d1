public import GuidonEngine
public import GuidonJSON

/// What OFREP evaluates against: the configuration being served. OFREP has no evaluation of its
/// own; it asks this, exactly as the query socket does, and words the answers its way.
public protocol OFREPSource {
    /// The served configuration's revision (part of the bulk response's `ETag`).
    var revision: String { get }
    /// The flag set's metadata (the bulk response's `metadata`).
    var flagSetMetadata: JSONObject { get }
    /// Evaluates one key and lends `body` the result.
    func withResult(_ key: String, context: @autoclosure () -> EvaluationContext, type: ValueType?, _ body: (EncodedResult) -> Void)
    /// Evaluates every key and lends `body` each result, in order.
    func forEachResult(context: @autoclosure () -> EvaluationContext, _ body: (EncodedResult) -> Void)
}

/// An OFREP response: a status and a JSON body (`application/json`), and for a bulk evaluation
/// its `ETag`.
public struct OFREPResponse: Sendable, Hashable {
    public var status: Int
    public var body: [UInt8]
    public var etag: String?

    public init(status: Int, body: [UInt8], etag: String? = nil) {
        self.status = status
        self.body = body
        self.etag = etag
    }

    public static let contentType = "application/json"
}

/// OFREP 0.3.0's evaluation endpoints, without the I/O: a request and a source in, a response
/// out.
///
/// - One flag: `200` with `key`, `value` (absent when the caller's code default applies: a
///   disabled flag, or no default variant), `reason`, `variant` and `metadata`; an evaluation
///   that failed is `400` (`404` for `FLAG_NOT_FOUND`) with `key`, `errorCode`, `errorDetails`
///   and, for a flag that exists, its `metadata`.
/// - Every flag: `200` with `flags` (each one as above, failures in place) and the flag set's
///   `metadata`, and an `ETag` (see `etag(revision:contextDigest:body:)`).
///
/// `variant` is always there (OpenFeature's Python OFREP provider reads it unconditionally), and
/// `null` when no variant is served: the query socket leaves it out then, and every provider
/// reads `null` as "none". Reasons are OpenFeature's: `STATIC`, `TARGETING_MATCH`, `DEFAULT`,
/// `DISABLED` (`ERROR` only ever comes as an error response).
public enum OFREPResponder {
    public static func respond(
        to request: OFREPRequest, from source: some OFREPSource, observe: (EncodedResult) -> Void = { _ in }
    ) -> OFREPResponse {
        switch request.target {
        case .flag(let key):
            var out: [UInt8] = []
            var status = 200
            source.withResult(key, context: request.context, type: nil) { result in
                observe(result)
                if let failure = write(result, into: &out) { status = failure.status }
            }
            return OFREPResponse(status: status, body: out)
        case .allFlags:
            var out = Array(#"{"flags":["#.utf8)
            var first = true
            source.forEachResult(context: request.context) { result in
                observe(result)
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                _ = write(result, into: &out)
            }
            out.append(contentsOf: #"],"metadata":"#.utf8)
            JSONWriter.write(.object(source.flagSetMetadata), into: &out)
            out.append(UInt8(ascii: "}"))
            return OFREPResponse(
                status: 200, body: out, etag: etag(revision: source.revision, contextDigest: request.contextDigest, body: out))
        }
    }

    /// The response to a refused request: for one flag, `key`, `errorCode` and `errorDetails`;
    /// for the bulk endpoint, `errorCode` and `errorDetails`.
    public static func response(for error: OFREPError) -> OFREPResponse {
        var out = Array("{".utf8)
        if let key = error.key {
            out.append(contentsOf: #""key":"#.utf8)
            JSONWriter.writeString(key, into: &out)
            out.append(UInt8(ascii: ","))
        }
        out.append(contentsOf: #""errorCode":"#.utf8)
        JSONWriter.writeString(error.code.description, into: &out)
        out.append(contentsOf: #","errorDetails":"#.utf8)
        JSONWriter.writeString(error.message, into: &out)
        out.append(UInt8(ascii: "}"))
        return OFREPResponse(status: error.status, body: out)
    }

    /// OFREP's `generalErrorResponse`: details only, for what is not an evaluation (a server
    /// fault `500`, and the listener's own refusals: an unknown path `404`, a method other than
    /// `POST` `405`, a body over the limit `413`).
    public static func generalError(status: Int, details: String) -> OFREPResponse {
        var out = Array(#"{"errorDetails":"#.utf8)
        JSONWriter.writeString(details, into: &out)
        out.append(UInt8(ascii: "}"))
        return OFREPResponse(status: status, body: out)
    }

    /// The bulk response's entity tag: the configuration's revision, and a digest of the context
    /// and of the response itself: a new revision or another context is another tag, and so is
    /// an answer that changed with the time alone (a `$flagd.timestamp` rule), which a tag of the
    /// revision and the context would have hidden behind a `304`.
    public static func etag(revision: String, contextDigest: UInt64, body: [UInt8]) -> String {
        let digest = FNV1a.hash(body, from: FNV1a.hash(contextDigest, from: FNV1a.offsetBasis))
        return "\"\(revision)-\(FNV1a.hex(digest))\""
    }

    // MARK: - Writing results

    /// Writes `result` as OFREP's `evaluationSuccess`, or `evaluationFailure` for reason `ERROR`
    /// (returning its error then), reusing the result's text: its key, served value and variant,
    /// and metadata are copied as the engine wrote them.
    static func write(_ result: EncodedResult, into out: inout [UInt8]) -> OFREPError.Code? {
        out.append(contentsOf: #"{"key":"#.utf8)
        out.append(contentsOf: result.key)
        if result.reason == .error {
            let code = result.errorCode.map(OFREPError.Code.init) ?? .general
            out.append(contentsOf: #","errorCode":"#.utf8)
            JSONWriter.writeString(code.description, into: &out)
            out.append(contentsOf: #","errorDetails":"#.utf8)
            JSONWriter.writeString(result.errorMessage ?? "\(code) evaluating this flag", into: &out)
            if code != .flagNotFound { appendMetadata(result, into: &out) }
            out.append(UInt8(ascii: "}"))
            return code
        }
        let (value, variant) = result.served.map(split) ?? (nil, nil)
        if let value {
            out.append(contentsOf: #","value":"#.utf8)
            out.append(contentsOf: value)
        }
        out.append(contentsOf: #","reason":"#.utf8)
        JSONWriter.writeString(result.reason.rawValue, into: &out)
        out.append(contentsOf: #","variant":"#.utf8)
        if let variant { out.append(contentsOf: variant) } else { out.append(contentsOf: "null".utf8) }
        appendMetadata(result, into: &out)
        out.append(UInt8(ascii: "}"))
        return nil
    }

    private static func appendMetadata(_ result: EncodedResult, into out: inout [UInt8]) {
        out.append(contentsOf: #","metadata":"#.utf8)
        out.append(contentsOf: result.metadata)
    }

    private static let valuePrefix = Array(#","value":"#.utf8)
    private static let variantPrefix = Array(#","variant":"#.utf8)

    /// Splits a result's `served` text, `,"value":VALUE` or `,"value":VALUE,"variant":NAME`, into
    /// the value's text and the variant's (a JSON string), without parsing the value.
    ///
    /// The variant, when there is one, is the last member and a string. So the text has one when
    /// it ends with a string (`"`) whose opening quote follows `,"variant":`. The opening quote is
    /// the last `"` before the closing one that no backslash escapes (one after an even run of
    /// backslashes): inside a string every `"` is escaped. A value that is itself a string ends
    /// the same way, but its opening quote follows `,"value":`; one that is an object or an array
    /// (which may hold `"variant"` members of its own) ends with `}` or `]`.
    static func split(_ served: UnsafeRawBufferPointer) -> (value: UnsafeRawBufferPointer, variant: UnsafeRawBufferPointer?) {
        guard served.starts(with: valuePrefix) else { return (served, nil) }
        let text = UnsafeRawBufferPointer(rebasing: served[valuePrefix.count...])
        guard text.count >= 2, text.last == UInt8(ascii: "\"") else { return (text, nil) }
        var open = text.count - 2
        while open >= 0 {
            if text[open] == UInt8(ascii: "\"") {
                var backslashes = 0
                while open - backslashes - 1 >= 0 && text[open - backslashes - 1] == UInt8(ascii: "\\") { backslashes += 1 }
                if backslashes % 2 == 0 { break }
            }
            open -= 1
        }
        let marker = open - variantPrefix.count
        guard marker >= 0, text[marker..<open].elementsEqual(variantPrefix) else { return (text, nil) }
        return (UnsafeRawBufferPointer(rebasing: text[..<marker]), UnsafeRawBufferPointer(rebasing: text[open...]))
    }
}
