import CSystemd
public import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Whether stderr is connected to journald (`JOURNAL_STREAM` names stderr's device and inode).
public func stderrIsJournal() -> Bool {
    guard let value = getenv("JOURNAL_STREAM") else { return false }
    let parts = String(cString: value).split(separator: ":")
    guard parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]) else { return false }
    var st = stat()
    guard fstat(2, &st) == 0 else { return false }
    return UInt64(st.st_dev) == dev && UInt64(st.st_ino) == ino
}

/// A swift-log handler that writes native journald entries (`sd_journal_sendv`):
/// `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER`, and every metadata key as an
/// upper-cased field (`configVersion` → `GUIDON_CONFIG_VERSION` when the key is
/// already written that way, otherwise `GUIDON_` + the key upper-cased).
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let identifier: String

    public init(label: String, identifier: String = "guidond") {
        self.label = label
        self.identifier = identifier
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields: [String] = [
            "MESSAGE=\(event.message)",
            "PRIORITY=\(Self.priority(event.level))",
            "SYSLOG_IDENTIFIER=\(identifier)",
            "GUIDON_LOGGER=\(label)",
        ]
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let extra = event.metadata { all.merge(extra) { _, new in new } }
        for (key, value) in all.sorted(by: { $0.key < $1.key }) {
            fields.append("\(Self.fieldName(key))=\(value)")
        }
        Self.send(fields)
    }

    static func send(_ fields: [String]) {
        var storage = fields.map { Array($0.utf8) }
        let count = storage.count
        storage.withUnsafeMutableBufferPointer { buffers in
            var iov = [iovec](repeating: iovec(), count: count)
            func fill(_ i: Int) {
                if i == count {
                    _ = sd_journal_sendv(&iov, Int32(count))
                    return
                }
                buffers[i].withUnsafeMutableBytes { raw in
                    iov[i] = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
                    fill(i + 1)
                }
            }
            fill(0)
        }
    }

    /// A journald field name: upper-case letters, digits and `_`, not starting with `_` or a digit.
    static func fieldName(_ key: String) -> String {
        var name = ""
        var previousWasLower = false
        for scalar in key.unicodeScalars {
            if scalar.properties.isUppercase && previousWasLower { name.append("_") }
            previousWasLower = scalar.properties.isLowercase
            if scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)) {
                name.append(String(scalar).uppercased())
            } else {
                name.append("_")
            }
        }
        return name.hasPrefix("GUIDON_") ? name : "GUIDON_" + name
    }

    /// syslog(3) priorities.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }
}

/// Plain lines on stderr: `LEVEL message key=value …`, without timestamps
/// (journald and most supervisors add their own).
public struct StderrLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    public init(label: String) {}

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { _, new in new } }
        var line = "\(event.level.rawValue.uppercased()) \(event.message)"
        for (key, value) in all.sorted(by: { $0.key < $1.key }) { line += " \(key)=\(value)" }
        line += "\n"
        // One write(2) per line, so that lines from several threads never interleave.
        var bytes = Array(line.utf8)
        _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    }
}

extension LoggingSystem {
    /// journald-native logging when stderr goes to the journal, plain stderr lines otherwise.
    public static func bootstrapForSystemd(level: Logger.Level = .info) {
        let journal = stderrIsJournal()
        bootstrap { label in
            var handler: any LogHandler = journal ? JournalLogHandler(label: label) : StderrLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
