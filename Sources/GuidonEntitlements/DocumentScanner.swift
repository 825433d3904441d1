import GuidonJSON

/// An entitlements document read for compiling: the root's members parsed, except `tenants`,
/// whose members are only delimited (id bytes and definition text), to be parsed one at a time
/// when compiled, or not at all when reused.
struct ScannedDocument {
    /// The root members, in order; `tenants` stands as `null` when it was delimited.
    var root: JSONObject
    /// The document, when it is not an object.
    var notAnObject: JSONValue?
    /// Whether `tenants` is an object whose members were delimited.
    var tenantsDelimited = false
    /// Every tenant id's UTF-8, one after the other, and where each ends.
    var keyBytes: [UInt8] = []
    var keyEnds: [UInt32] = []
    /// Where each tenant's definition is in the document.
    var spans: [Range<Int>] = []
    /// Definitions already parsed (the standard parse keeps values that are not objects);
    /// `null` for a delimited one. Empty when every definition was delimited.
    var values: [JSONValue] = []
    /// Whether some id has bytes outside ASCII (duplicates are then looked for by canonical
    /// equivalence, as the parser compares keys).
    var nonASCIIKeys = false
    /// Per tenant, the position of the previous value's tenant whose id and definition it has
    /// byte for byte (-1: none, or no previous value), as `scan`'s `match` found.
    var reused: [Int32] = []

    var tenantCount: Int { keyEnds.count }

    func key(_ i: Int) -> String {
        let start = i == 0 ? 0 : Int(keyEnds[i - 1])
        return keyBytes.withUnsafeBufferPointer { String(decoding: UnsafeBufferPointer(rebasing: $0[start..<Int(keyEnds[i])]), as: UTF8.self) }
    }

    /// The standard reading: the project's parser (duplicate keys rejected) skimming `tenants`.
    /// Slower for 100,000 tenants (it builds the tenants' object, with a hashed index of their
    /// ids); used when `scan` declines, and it reports syntax errors where the parser finds them.
    static func parse(_ bytes: [UInt8]) throws(JSONSyntaxError) -> ScannedDocument {
        let (root, spans) = try JSONParser(duplicateKeys: .reject).parse(bytes, skippingIn: "tenants") { _, _, start in
            JSONParser.objectEnd(in: bytes, from: start)
        }
        var document = ScannedDocument(root: root.object ?? JSONObject())
        if case .object(let tenants)? = document.root["tenants"] {
            document.tenantsDelimited = true
            for key in tenants.keys {
                document.keyBytes.append(contentsOf: key.utf8)
                document.keyEnds.append(UInt32(document.keyBytes.count))
            }
            document.spans = spans
            document.values = tenants.values
            document.root["tenants"] = .null
        }
        if case .object = root {} else { document.notAnObject = root }
        return document
    }

    /// The fast reading of a well-formed document whose tenant ids are plain strings (no
    /// escapes): the root is scanned here, every root member but `tenants` is parsed by the
    /// project's parser, and the tenants are only delimited. `nil` when anything is out of the
    /// ordinary (an escape in an id, a tenant that is not an object, a repeated root member,
    /// any syntax error): `parse` then reads the document and reports what is wrong.
    ///
    /// `match`, given a tenant's position, id and where its definition starts, may say that the
    /// text there begins with a definition known from the previous compile: where it ends, and
    /// the previous position. Such a definition is not scanned (a memory compare finds its end
    /// about ten times as fast as matching its brackets).
    static func scan(
        _ bytes: [UInt8], match: ((_ position: Int, _ key: UnsafeRawBufferPointer, _ start: Int) -> (old: Int, end: Int)?)? = nil
    ) -> ScannedDocument? {
        bytes.withUnsafeBufferPointer { text -> ScannedDocument? in
            var scanner = Scanner(text: text, match: match)
            var document = ScannedDocument(root: JSONObject())
            scanner.skipSpace()
            guard scanner.take(UInt8(ascii: "{")) else { return nil }
            scanner.skipSpace()
            if !scanner.take(UInt8(ascii: "}")) {
                while true {
                    scanner.skipSpace()
                    guard let key = scanner.plainString(),
                        firstInvalidUTF8Offset(in: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(text)[key])) == nil
                    else { return nil }
                    scanner.skipSpace()
                    guard scanner.take(UInt8(ascii: ":")) else { return nil }
                    scanner.skipSpace()
                    let name = String(decoding: UnsafeBufferPointer(rebasing: text[key]), as: UTF8.self)
                    guard !document.root.contains(name) else { return nil }
                    if name == "tenants", scanner.peek == UInt8(ascii: "{") {
                        guard scanner.tenants(into: &document, bytes) else { return nil }
                        document.tenantsDelimited = true
                        document.root[name] = .null
                    } else {
                        let start = scanner.position
                        guard let end = scanner.valueEnd(),
                            let value = try? JSONParser(duplicateKeys: .reject).parse(bytes, valueIn: start..<end, depth: 1)
                        else { return nil }
                        document.root[name] = value
                    }
                    scanner.skipSpace()
                    if scanner.take(UInt8(ascii: "}")) { break }
                    guard scanner.take(UInt8(ascii: ",")) else { return nil }
                }
            }
            scanner.skipSpace()
            return scanner.position == text.count ? document : nil
        }
    }

    private struct Scanner {
        let text: UnsafeBufferPointer<UInt8>
        let match: ((Int, UnsafeRawBufferPointer, Int) -> (old: Int, end: Int)?)?
        var position = 0

        init(text: UnsafeBufferPointer<UInt8>, match: ((Int, UnsafeRawBufferPointer, Int) -> (old: Int, end: Int)?)?) {
            self.text = text
            self.match = match
        }

        var peek: UInt8? { position < text.count ? text[position] : nil }

        mutating func skipSpace() {
            while position < text.count {
                switch text[position] {
                case 0x20, 0x0A, 0x0D, 0x09: position += 1
                default: return
                }
            }
        }

        mutating func take(_ byte: UInt8) -> Bool {
            guard position < text.count, text[position] == byte else { return false }
            position += 1
            return true
        }

        /// A string without escapes or control characters, as the range of its content.
        mutating func plainString() -> Range<Int>? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            let start = position
            while position < text.count {
                let b = text[position]
                if b == UInt8(ascii: "\"") {
                    position += 1
                    return start..<position - 1
                }
                if b == UInt8(ascii: "\\") || b < 0x20 { return nil }
                position += 1
            }
            return nil
        }

        /// The members of `tenants`: ids (plain, valid UTF-8) and object definitions.
        mutating func tenants(into document: inout ScannedDocument, _ bytes: [UInt8]) -> Bool {
            position += 1  // {
            skipSpace()
            if take(UInt8(ascii: "}")) { return true }
            let raw = UnsafeRawBufferPointer(text)
            while true {
                skipSpace()
                guard let key = plainString() else { return false }
                let keyBytes = UnsafeRawBufferPointer(rebasing: raw[key])
                var ascii = true
                for b in keyBytes where b >= 0x80 {
                    ascii = false
                    break
                }
                if !ascii {
                    guard firstInvalidUTF8Offset(in: keyBytes) == nil else { return false }
                    document.nonASCIIKeys = true
                }
                document.keyBytes.append(contentsOf: keyBytes)
                document.keyEnds.append(UInt32(document.keyBytes.count))
                skipSpace()
                guard take(UInt8(ascii: ":")) else { return false }
                skipSpace()
                let start = position
                guard peek == UInt8(ascii: "{") else { return false }
                if let known = match?(document.spans.count, keyBytes, start) {
                    document.spans.append(start..<known.end)
                    document.reused.append(Int32(known.old))
                    position = known.end
                } else {
                    // As the flag compiler delimits flags: brackets matched by kind, strings skipped.
                    guard let end = JSONParser.objectEnd(in: bytes, from: start) else { return false }
                    document.spans.append(start..<end)
                    document.reused.append(-1)
                    position = end
                }
                skipSpace()
                if take(UInt8(ascii: "}")) { return true }
                guard take(UInt8(ascii: ",")) else { return false }
            }
        }

        /// Where the object or array at `start` ends (its brackets matched, strings skipped; not
        /// otherwise checked: its text is parsed later, which checks everything).
        func objectEnd(from start: Int) -> Int? {
            var depth = 0
            var i = start
            while i < text.count {
                switch text[i] {
                case UInt8(ascii: "\""):
                    i += 1
                    while i < text.count && text[i] != UInt8(ascii: "\"") {
                        i += text[i] == UInt8(ascii: "\\") ? 2 : 1
                    }
                    guard i < text.count else { return nil }
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return i + 1 }
                default:
                    break
                }
                i += 1
            }
            return nil
        }

        /// Moves past the value here and returns where it ends (delimited only; parsed by the caller).
        mutating func valueEnd() -> Int? {
            guard let first = peek else { return nil }
            switch first {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                guard let end = objectEnd(from: position) else { return nil }
                position = end
            case UInt8(ascii: "\""):
                position += 1
                while position < text.count && text[position] != UInt8(ascii: "\"") {
                    position += text[position] == UInt8(ascii: "\\") ? 2 : 1
                }
                guard position < text.count else { return nil }
                position += 1
            default:
                while position < text.count {
                    switch text[position] {
                    case UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x0A, 0x0D, 0x09: return position
                    default: position += 1
                    }
                }
            }
            return position
        }
    }
}
