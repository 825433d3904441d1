public import GuidonEngine

#if canImport(Glibc)
import Glibc
#endif

/// Why a flag file could not be served.
public enum ConfigLoadError: Error, Sendable, CustomStringConvertible {
    /// The file could not be read (missing, unreadable, a directory, too large).
    case unreadable(path: String, reason: String)
    /// The file was read but rejected; the report lists every problem.
    case invalid(path: String, report: ValidationReport)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): "cannot read \(path): \(reason)"
        case .invalid(let path, let report):
            "\(path) is not a valid flag file (\(report.errors.count) error\(report.errors.count == 1 ? "" : "s")):\n\(report)"
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
        var bytes: [UInt8] = []
        // The size as of now; the file may still grow. The snapshot keeps these bytes (to reuse
        // unchanged flags on the next reload), so they should not carry spare capacity.
        bytes.reserveCapacity(Int(st.st_size) + 1)
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

func errnoText(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}
