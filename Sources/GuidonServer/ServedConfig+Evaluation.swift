public import GuidonEngine

/// How any request evaluates keys against the served configuration: the query socket's `eval`
/// and `evalAll` and OFREP's two endpoints all come through these functions, so that what
/// answers a key is decided here, once (today the flag snapshot; entitlement features join it
/// here, and every front end answers them alike).
///
/// Each lends its results (`EncodedResult`: the reply's text, written when the flag was
/// compiled), so that answering allocates nothing; they are inlined into the request path, and
/// pass the caller's context closure on as it is (`reading:`), so that the socket's request path
/// costs what it cost when it called the snapshot directly (callgrind: the same instructions
/// per request).
extension ServedConfig {
    /// Evaluates `key` (a flag's value of `type`, when given) for `context`, which is read only
    /// if the key's rules need it, and lends `body` the result.
    @inline(__always)
    public func withResult(
        _ key: String, context: @autoclosure () -> EvaluationContext, type: ValueType? = nil, _ body: (EncodedResult) -> Void
    ) {
        snapshot.withResult(key, reading: context, type: type, body)
    }

    /// Evaluates `keys` in order, against this one configuration, reading `context` at most once.
    @inline(__always)
    public func forEachResult(
        _ keys: [String], context: @autoclosure () -> EvaluationContext, type: ValueType? = nil, _ body: (EncodedResult) -> Void
    ) {
        snapshot.forEachResult(keys, reading: context, type: type, body)
    }

    /// Evaluates every key, in document order, reading `context` at most once.
    @inline(__always)
    public func forEachResult(context: @autoclosure () -> EvaluationContext, _ body: (EncodedResult) -> Void) {
        snapshot.forEachResult(reading: context, body)
    }
}
