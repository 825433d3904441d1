#if canImport(Glibc)
import Glibc
#endif

extension TimeZoneRules {
    /// The system's zone database (Debian's `tzdata`).
    public static let defaultDirectory = "/usr/share/zoneinfo"

    /// Reads and parses the zone `name` (an IANA name such as `Europe/Berlin`) from
    /// `directory`. `UTC` (also `Etc/UTC`) needs no file. This is the only I/O of the window
    /// arithmetic: call it when a document is loaded, never per request.
    public static func load(_ name: String, directory: String = defaultDirectory) throws(TimeZoneError) -> TimeZoneRules {
        if name == "UTC" || name == "Etc/UTC" { return .utc }
        try validateName(name)
        let path = directory + "/" + name
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code: TimeZoneError.Code = (errno == ENOENT || errno == ENOTDIR) ? .notFound : .unreadable
            throw TimeZoneError(code, "time zone '\(name)': cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else {
                throw TimeZoneError(.unreadable, "time zone '\(name)': cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
            guard bytes.count <= 1 << 20 else { throw TimeZoneError(.malformed, "time zone '\(name)': \(path) is larger than 1 MiB") }
        }
        return try TimeZoneRules(name: name, tzif: bytes)
    }

    /// IANA names: letters, digits, `/ _ + - .`; no empty, `.` or `..` component; no leading `/`.
    static func validateName(_ name: String) throws(TimeZoneError) {
        let allowed = name.utf8.allSatisfy { b in
            (b | 0x20 >= UInt8(ascii: "a") && b | 0x20 <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
                || b == UInt8(ascii: "/") || b == UInt8(ascii: "_") || b == UInt8(ascii: "+") || b == UInt8(ascii: "-") || b == UInt8(ascii: ".")
        }
        let components = name.split(separator: "/", omittingEmptySubsequences: false)
        guard !name.isEmpty, name.utf8.count <= 255, allowed,
            components.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." })
        else {
            throw TimeZoneError(.invalidName, "'\(name)' is not an IANA time zone name (such as Europe/Berlin)")
        }
    }
}
