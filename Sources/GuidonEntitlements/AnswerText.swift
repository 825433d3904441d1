import GuidonEngine
import GuidonJSON

/// One possible answer, written when the document is compiled: where its text is in an arena
/// and what a reply needs besides it.
///
/// The text is three pieces, one after the other:
/// - `served`: `,"value":VALUE,"variant":NAME` (what `EncodedResult.served` holds);
/// - `metadata`: the metadata object `{"source":…,…}`;
/// - `extra`: `,"entitled":…,"why":"…"` and `,"limits":[…]` when limits apply: the members
///   the `entitlements` view adds to an answer.
/// The limits themselves are `limitsCount` entries from `limitsStart` in the arena's limits.
struct AnswerEntry: BitwiseCopyable, Sendable {
    var start: UInt32 = 0
    var servedCount: UInt32 = 0
    var metadataCount: UInt32 = 0
    var extraCount: UInt32 = 0
    var limitsStart: UInt32 = 0
    var limitsCount: UInt16 = 0
    /// Whether this entry was written (an entry for a grant a plan does not make is not).
    var present = false
    var entitled = false
    /// `TARGETING_MATCH` (an override or a grant) rather than `DEFAULT`.
    var matched = false
    /// Where the limits were declared: 0 none, else `EntitlementSource` (1 override, 2 plan, 3 feature).
    var limitsSource: UInt8 = 0

    var reason: Reason { matched ? .targetingMatch : .default }

    var limitSource: EntitlementSource? {
        switch limitsSource {
        case 1: .override
        case 2: .plan
        case 3: .default
        default: nil
        }
    }
}

/// What goes into an answer's text, before it is written.
struct AnswerSpec {
    var value: JSONValue
    var variant: String
    var matched: Bool
    var entitled: Bool
    var metadata: JSONObject
    var why: String
    var limits: [Limit]?
    var limitsSource: EntitlementSource?
}

/// Text and limits being written for a compiled value's answers.
struct AnswerArena {
    var text: [UInt8] = []
    var limits: [Limit] = []
    /// Set when the text would pass `maximumBytes`: nothing more is written, and the document
    /// is refused (a large configuration merged into many answers could otherwise take more
    /// memory than the host has; offsets are 32-bit).
    private(set) var overflowed = false
    let maximumBytes: Int

    init(maximumBytes: Int) {
        self.maximumBytes = min(maximumBytes, Int(UInt32.max >> 1))
    }

    static func overflowMessage(_ maximumBytes: Int) -> String {
        "the answers this document defines would take more than \(maximumBytes) bytes of text (EntitlementsCompileOptions.maximumAnswerBytes): large configurations merged into many plans or overrides?"
    }

    mutating func write(_ spec: AnswerSpec) -> AnswerEntry {
        guard !overflowed, text.count < maximumBytes else {
            overflowed = true
            return AnswerEntry()
        }
        var entry = AnswerEntry()
        entry.present = true
        entry.entitled = spec.entitled
        entry.matched = spec.matched
        entry.start = UInt32(text.count)
        entry.limitsStart = UInt32(limits.count)
        EncodedResultText.writeServed(spec.value, variant: spec.variant, into: &text)
        entry.servedCount = UInt32(text.count) - entry.start
        JSONWriter.write(.object(spec.metadata), into: &text)
        entry.metadataCount = UInt32(text.count) - entry.start - entry.servedCount
        text.append(contentsOf: #","entitled":"#.utf8)
        text.append(contentsOf: (spec.entitled ? "true" : "false").utf8)
        text.append(contentsOf: #","why":"#.utf8)
        JSONWriter.writeString(spec.why, into: &text)
        if let limits = spec.limits, let source = spec.limitsSource {
            text.append(contentsOf: #","limits":"#.utf8)
            JSONWriter.write(.array(limits.map(\.json)), into: &text)
            text.append(contentsOf: #","limitsFrom":"#.utf8)
            JSONWriter.writeString(source == .default ? "feature" : source.rawValue, into: &text)
            entry.limitsCount = UInt16(limits.count)
            self.limits += limits
            entry.limitsSource = switch source {
            case .override: 1
            case .plan: 2
            case .default: 3
            }
        }
        entry.extraCount = UInt32(text.count) - entry.start - entry.servedCount - entry.metadataCount
        return entry
    }

    /// Copies `entry`, whose text and limits are in `fromText` and `fromLimits`, into this arena.
    mutating func copy(_ entry: AnswerEntry, fromText: UnsafePointer<UInt8>, fromLimits: UnsafePointer<Limit>) -> AnswerEntry {
        guard entry.present else { return entry }
        var copied = entry
        copied.start = UInt32(text.count)
        let count = Int(entry.servedCount + entry.metadataCount + entry.extraCount)
        text.append(contentsOf: UnsafeBufferPointer(start: fromText + Int(entry.start), count: count))
        copied.limitsStart = UInt32(limits.count)
        limits.append(contentsOf: UnsafeBufferPointer(start: fromLimits + Int(entry.limitsStart), count: Int(entry.limitsCount)))
        return copied
    }

    /// Whether two entries written in this arena say the same.
    func same(_ a: AnswerEntry, _ b: AnswerEntry) -> Bool {
        guard a.present == b.present, a.entitled == b.entitled, a.matched == b.matched, a.limitsSource == b.limitsSource,
            a.servedCount == b.servedCount, a.metadataCount == b.metadataCount, a.extraCount == b.extraCount,
            a.limitsCount == b.limitsCount
        else { return false }
        let count = Int(a.servedCount + a.metadataCount + a.extraCount)
        return text[Int(a.start)..<Int(a.start) + count].elementsEqual(text[Int(b.start)..<Int(b.start) + count])
            && limits[Int(a.limitsStart)..<Int(a.limitsStart) + Int(a.limitsCount)]
                .elementsEqual(limits[Int(b.limitsStart)..<Int(b.limitsStart) + Int(b.limitsCount)])
    }

    /// Appends `text` and returns where it is.
    mutating func append(_ bytes: [UInt8]) -> TextSpan {
        let start = text.count
        text += bytes
        return TextSpan(start: UInt32(start), count: UInt32(bytes.count))
    }

    /// Drops an entry that is the last thing written (a duplicate of another).
    mutating func drop(_ entry: AnswerEntry) {
        let count = Int(entry.servedCount + entry.metadataCount + entry.extraCount)
        precondition(Int(entry.start) + count == text.count && Int(entry.limitsStart) + Int(entry.limitsCount) == limits.count)
        text.removeLast(count)
        limits.removeLast(Int(entry.limitsCount))
    }
}

/// Where some text is in an arena.
struct TextSpan: BitwiseCopyable, Sendable {
    var start: UInt32
    var count: UInt32

    @inline(__always)
    func bytes(in text: UnsafePointer<UInt8>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: text + Int(start), count: Int(count))
    }
}

/// The reply members' text, as `EncodedResult` wants it (the engine writes its own the same way).
enum EncodedResultText {
    static func writeFlag(_ key: String, into text: inout [UInt8]) {
        text.append(contentsOf: #""flag":"#.utf8)
        JSONWriter.writeString(key, into: &text)
    }

    static func writeServed(_ value: JSONValue, variant: String, into text: inout [UInt8]) {
        text.append(contentsOf: #","value":"#.utf8)
        JSONWriter.write(value, into: &text)
        text.append(contentsOf: #","variant":"#.utf8)
        JSONWriter.writeString(variant, into: &text)
    }
}
