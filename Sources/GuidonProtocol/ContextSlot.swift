import GuidonEngine
import GuidonJSON

/// Where a `Request` keeps its context: decoded, or checked and kept as text until it is read.
///
/// Most flags do not read the context (no targeting, disabled, missing), and building an
/// `EvaluationContext` is most of the cost of decoding a request line. So when the parser
/// decodes into a kept `Request` and the context is *flat* (members whose names and string
/// values have no escapes and are ASCII, or scalars), it only checks the context and copies
/// its text; `Request.context` decodes it the first time it is read, which the engine does
/// only for a flag whose targeting reads it.
///
/// The check (`FlatContext.check`) is deliberately narrower than the decoder: anything it
/// does not vouch for (escapes, nesting, a non-ASCII name, a repeated name, a syntax error,
/// more than 16 members) is decoded at once, by the same code as always, so that a refused
/// line is refused with the very same message and column whichever path it took.
///
/// Decoding reuses what the context decoded before holds. When a flat context has the same
/// members (names, order, roles) as that one, the usual case from one request of a client to
/// the next, only the values that changed are decoded, in place (`FlatContext.update`).
/// Otherwise the attributes are filled into the spare object while the ones decoded before
/// stay intact to be compared with, and a string equal to the one at the same place before
/// is kept instead of being built again.
struct ContextSlot: Sendable {
    /// The context decoded last: the request's context, unless `pending`.
    private(set) var decoded = EvaluationContext()
    /// Storage for the next decode (the attributes decoded the time before).
    private var spareAttributes = JSONObject()
    /// Where the members of `decoded` lie in its text, when `FlatContext` decoded it (else
    /// empty); and the storage for the next such layout.
    private var decodedLayout = FlatContext.Layout()
    private var spareLayout = FlatContext.Layout()
    /// The text of the request's context object, when known (else empty): the context is kept
    /// without decoding or checking it again when the next request's context has the same text.
    private(set) var text: [UInt8] = []
    /// The depth limit `text` was checked under.
    private(set) var maxDepth = 0
    /// Whether the request's context is `text`, checked but not decoded yet; empty text then
    /// means that the request has no context.
    private var pending = false
    /// How a pending `text` differs from the decoded context's, when only in one string value.
    private var pendingChange: FlatContext.Change?

    init(_ context: EvaluationContext = EvaluationContext()) {
        decoded = context
    }

    /// The request's context, decoded now if it was not yet.
    mutating func context() -> EvaluationContext {
        if pending { decodePending() }
        return decoded
    }

    /// Lends `body` the request's context (decoded now if it was not yet), without copying it.
    mutating func withContext<Result>(_ body: (EvaluationContext) -> Result) -> Result {
        if pending { decodePending() }
        return body(decoded)
    }

    mutating func set(_ context: EvaluationContext) {
        decoded = context
        decodedLayout.removeAll()
        pending = false
        pendingChange = nil
        text.removeAll(keepingCapacity: true)
    }

    /// The request has no context.
    mutating func setEmpty() {
        text.removeAll(keepingCapacity: true)
        pending = true
        pendingChange = nil
    }

    /// Takes the context object at the scanner's position: checks it and keeps its text when
    /// it is flat and `lazily`, else decodes it at once (keeping its text when `lazily`).
    ///
    /// A flat context that differs from the decoded one in one string value only is not
    /// checked: comparing it with the decoded text shows that it is flat, and which value
    /// to decode when it is read (`FlatContext.change`).
    mutating func take(_ s: inout JSONScanner, lazily: Bool) throws(JSONScanner.Failure) {
        let start = s.position
        text.removeAll(keepingCapacity: true)
        maxDepth = s.maxDepth
        pendingChange = nil
        if lazily, let change = FlatContext.change(&s, from: decodedLayout) {
            pending = true
            pendingChange = change
        } else if lazily && FlatContext.check(&s) {
            pending = true
        } else {
            s.position = start
            try decode(&s)
        }
        if lazily { text.append(contentsOf: UnsafeRawBufferPointer(rebasing: s.bytes[start..<s.position])) }
    }

    private mutating func decodePending() {
        pending = false
        let (text, maxDepth) = (self.text, self.maxDepth)
        if let change = pendingChange {
            pendingChange = nil
            text.withUnsafeBytes { FlatContext.apply(change, to: &decoded, layout: &decodedLayout, text: $0) }
            return
        }
        // Only values changed, usually: then they are changed in place.
        let updated = text.withUnsafeBytes { FlatContext.update(&decoded, layout: &decodedLayout, to: $0, maxDepth: maxDepth) }
        guard !updated else { return }
        var layout = FlatContext.Layout()
        swap(&layout, &spareLayout)
        refill { context, previous in
            text.withUnsafeBytes { FlatContext.decode($0, maxDepth: maxDepth, into: &context, layout: &layout, previous: previous) }
        }
        // `layout` now describes `decoded`.
        swap(&layout, &decodedLayout)
        swap(&layout, &spareLayout)
    }

    /// Decodes the context object at the scanner's position into `decoded`. When this throws,
    /// `decoded` holds part of the context.
    private mutating func decode(_ s: inout JSONScanner) throws(JSONScanner.Failure) {
        decodedLayout.removeAll()
        try refill { context, previous throws(JSONScanner.Failure) in
            try Self.decode(&s, into: &context, previous: previous)
        }
    }

    /// Fills the spare attributes (emptied) by `fill`, which may reuse what the context decoded
    /// last holds (given as `previous`); then that is the decoded context, and the attributes
    /// it replaces are the spare.
    private mutating func refill<Failure: Error>(
        _ fill: (inout EvaluationContext, EvaluationContext) throws(Failure) -> Void
    ) throws(Failure) {
        pending = false
        var context = EvaluationContext()
        swap(&context.attributes, &spareAttributes)
        context.attributes.removeAll(keepingCapacity: true)
        defer {
            swap(&context, &decoded)
            swap(&context.attributes, &spareAttributes)
        }
        try fill(&context, decoded)
    }

    /// The context object: a string `targetingKey` becomes the targeting key, every other
    /// member an attribute (as `EvaluationContext(json:)` reads it). Plain strings equal to the
    /// ones at the same place in `previous` are reused rather than built again.
    private static func decode(
        _ s: inout JSONScanner, into context: inout EvaluationContext, previous: EvaluationContext
    ) throws(JSONScanner.Failure) {
        var sawTargetingKey = false
        guard try s.openObject(depth: 2) else { return }
        repeat {
            s.skipWhitespace()
            let keyOffset = s.position
            let key: String
            let isTargetingKey: Bool
            let i = context.attributes.count
            if let raw = s.plainString() {
                isTargetingKey = equals(raw, "targetingKey")
                key = isTargetingKey ? "targetingKey" : reusing(i < previous.attributes.count ? previous.attributes.keys[i] : nil, for: raw)
            } else {
                key = try s.string()
                isTargetingKey = key == "targetingKey"
            }
            try s.expect(UInt8(ascii: ":"), "':' after the member name")
            s.skipWhitespace()
            let value: JSONValue
            if let raw = s.plainString() {
                let before: String?
                if isTargetingKey {
                    before = previous.targetingKey
                } else if i < previous.attributes.count, case .string(let text) = previous.attributes.values[i] {
                    before = text
                } else {
                    before = nil
                }
                value = .string(reusing(before, for: raw))
            } else {
                value = try s.value(depth: 2)
            }
            if isTargetingKey {
                if sawTargetingKey { throw s.fail("duplicate member \"targetingKey\"", at: keyOffset) }
                sawTargetingKey = true
                if case .string(let targetingKey) = value {
                    context.targetingKey = targetingKey
                    continue
                }
            }
            guard context.attributes.insertNew(key, value) else {
                throw s.fail("duplicate member \"\(key)\"", at: keyOffset)
            }
        } while try s.nextMember()
    }
}
