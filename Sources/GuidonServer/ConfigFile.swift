public import GuidonEngine
public import GuidonEntitlements

#if canImport(Glibc)
import Glibc
#endif

/// Why a flag file could not be served.
public enum ConfigLoadError: Error, Sendable, CustomStringConvertible {
    /// The file could not be read (missing, unreadable, a directory, too large).
    case unreadable(path: String, reason: String)
    /// The file was read but rejected; the report lists every problem.
    case invalid(path: String, report: ValidationReport)
    /// The entitlements file was read but rejected.
    case invalidEntitlements(path: String, report: ValidationReport)
    /// Both files are valid, but keys are both flags and features (located in the entitlements file).
    case conflicting(flagPath: String, entitlementsPath: String, report: ValidationReport)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): "cannot read \(path): \(reason)"
        case .invalid(let path, let report):
            "\(path) is not a valid flag file (\(report.errors.count) error\(report.errors.count == 1 ? "" : "s")):\n\(report)"
        case .invalidEntitlements(let path, let report):
            "\(path) is not a valid entitlements file (\(report.errors.count) error\(report.errors.count == 1 ? "" : "s")):\n\(report)"
        case .conflicting(let flagPath, let path, let report):
            "\(path) and \(flagPath) cannot be served together (\(report.errors.count) key\(report.errors.count == 1 ? " is" : "s are") both a flag and a feature):\n\(report)"
        }
    }
}

/// Reading and compiling the flag file.
public enum ConfigFile {
    /// Files larger than this are refused rather than read into memory.
    public static let maxBytes = 64 << 20

    /// Reads the whole file (following symlinks).
    public static func read(_ path: String) throws(ConfigLoadError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, reason: errnoText()) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .unreadable(path: path, reason: errnoText()) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .unreadable(path: path, reason: "not a regular file") }
        guard Int(st.st_size) <= maxBytes else {
            throw .unreadable(path: path, reason: "file is larger than \(maxBytes >> 20) MiB")
        }
        // Read straight into an array of the size as of now (plus one byte, to see the file
        // grow): no copy through a chunk. The snapshot keeps these bytes (to reuse unchanged
        // flags and tenants on the next reload), so they should not carry spare capacity.
        let size = Int(st.st_size)
        var failure: Int32 = 0
        var bytes = [UInt8](unsafeUninitializedCapacity: size + 1) { buffer, initialized in
            while initialized < buffer.count {
                let n = Glibc.read(fd, buffer.baseAddress! + initialized, buffer.count - initialized)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                if n == 0 { return }
                initialized += n
            }
        }
        if failure != 0 { throw .unreadable(path: path, reason: errnoText(failure)) }
        guard bytes.count > size else { return bytes }
        // The file grew while it was read: the rest, a chunk at a time.
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .unreadable(path: path, reason: errnoText())
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            if bytes.count > maxBytes {
                throw .unreadable(path: path, reason: "file is larger than \(maxBytes >> 20) MiB")
            }
        }
        return bytes
    }

    /// Reads and compiles the file.
    public static func load(_ path: String, options: CompileOptions) throws(ConfigLoadError) -> (ServedConfig, [UInt8]) {
        let bytes = try read(path)
        return (try compile(bytes, path: path, options: options), bytes)
    }

    /// Compiles `bytes`, reusing the flags of `previous` that did not change.
    static func compile(
        _ bytes: [UInt8], path: String, options: CompileOptions, reusing previous: Snapshot? = nil
    ) throws(ConfigLoadError) -> ServedConfig {
        do {
            let snapshot = try Snapshot.compile(json: bytes, options: options, reusing: previous)
            return ServedConfig(snapshot: snapshot, version: contentVersion(of: bytes), loadedAt: Int64(time(nil)))
        } catch {
            throw .invalid(path: path, report: error)
        }
    }
}

/// The entitlements file served next to the flag file (`--entitlements`).
public struct EntitlementsFile: Sendable {
    public var path: String
    /// The context attribute naming the tenant (`--tenant-attribute`).
    public var tenantAttribute: String
    public var options: EntitlementsCompileOptions

    public init(path: String, tenantAttribute: String = "tenantId", options: EntitlementsCompileOptions) {
        self.path = path
        self.tenantAttribute = tenantAttribute
        self.options = options
    }
}

/// The served files (the flag file and, optionally, the entitlements file), read and compiled
/// together into one `ServedConfig`.
public struct ServedFiles: Sendable {
    public var flagPath: String
    public var options: CompileOptions
    public var entitlements: EntitlementsFile?

    public init(flagPath: String, options: CompileOptions, entitlements: EntitlementsFile? = nil) {
        self.flagPath = flagPath
        self.options = options
        self.entitlements = entitlements
    }

    /// Both files as they are now.
    struct Contents {
        var flags: [UInt8]
        var flagVersion: String
        var entitlements: [UInt8]?
        var entitlementsVersion: String?
    }

    /// `served`: what is served now; a file that holds the text it was compiled from keeps its
    /// version without a digest (a comparison of memory: after an admin write, the watcher
    /// finds the 10 MiB it serves in about a millisecond instead of 15).
    func read(served: ServedConfig? = nil) throws(ConfigLoadError) -> Contents {
        let flags = try ConfigFile.read(flagPath)
        let flagVersion = served.flatMap { $0.snapshot.isCompiled(from: flags) ? $0.version : nil } ?? contentVersion(of: flags)
        var contents = Contents(flags: flags, flagVersion: flagVersion)
        if let entitlements {
            let bytes = try ConfigFile.read(entitlements.path)
            contents.entitlements = bytes
            contents.entitlementsVersion = served.flatMap { served in
                served.entitlements?.isCompiled(from: bytes) == true ? served.entitlementsVersion : nil
            } ?? contentVersion(of: bytes)
        }
        return contents
    }

    /// Compiles what changed since `previous` (reusing what did not: unchanged flags and tenants,
    /// or a whole file), checks that no key is both a flag and a feature, and returns the one
    /// configuration that serves both.
    func compile(_ contents: Contents, reusing previous: ServedConfig?) throws(ConfigLoadError) -> ServedConfig {
        var entitlements: Entitlements?
        if let file = self.entitlements, let bytes = contents.entitlements {
            if let previous, previous.entitlementsVersion == contents.entitlementsVersion, let served = previous.entitlements {
                entitlements = served
            } else {
                do {
                    entitlements = try Entitlements.compile(json: bytes, options: file.options, reusing: previous?.entitlements)
                } catch {
                    throw .invalidEntitlements(path: file.path, report: error)
                }
            }
        }
        // `entitled` in the flags' targeting is checked against the features served with them:
        // when they change, the flags are compiled again (reusing none, as their problems may differ).
        var options = self.options
        options.features = entitlements.map { Set($0.features.map(\.key)) }
        let snapshot: Snapshot
        if let previous, previous.version == contents.flagVersion, previous.snapshot.features == options.features {
            snapshot = previous.snapshot
        } else {
            do {
                snapshot = try Snapshot.compile(json: contents.flags, options: options, reusing: previous?.snapshot)
            } catch {
                throw .invalid(path: flagPath, report: error)
            }
        }
        if let entitlements, let file = self.entitlements {
            try Self.checkConflicts(snapshot, entitlements, flagPath: flagPath, entitlementsPath: file.path)
        }
        return ServedConfig(
            snapshot: snapshot, version: contents.flagVersion, loadedAt: Int64(time(nil)), entitlements: entitlements,
            entitlementsVersion: contents.entitlementsVersion, tenantAttribute: self.entitlements?.tenantAttribute ?? "tenantId")
    }

    /// Refuses keys that are both a flag and a feature.
    static func checkConflicts(
        _ snapshot: Snapshot, _ entitlements: Entitlements, flagPath: String, entitlementsPath: String
    ) throws(ConfigLoadError) {
        let conflicts = entitlements.conflicts(withFlagKeys: snapshot.flags.lazy.map(\.key))
        if !conflicts.isEmpty {
            throw .conflicting(flagPath: flagPath, entitlementsPath: entitlementsPath, report: ValidationReport(errors: conflicts))
        }
    }

    /// Reads and compiles both files.
    func load() throws(ConfigLoadError) -> ServedConfig {
        try compile(read(), reusing: nil)
    }
}

func errnoText(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}
