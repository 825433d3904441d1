#if canImport(Glibc)
import Glibc
#endif

/// Whether the host's zone database knows the time zone `name` (what an entitlements file's
/// `timezone` is checked with): `UTC` always; otherwise a name without `..`, a leading `/` or a
/// NUL, whose file under `$TZDIR` (default `/usr/share/zoneinfo`) is a regular file that begins
/// with `TZif`. The entitlements module does no I/O, so the daemon and the CLI pass this.
public func systemZoneExists(_ name: String) -> Bool {
    if name == "UTC" { return true }
    guard !name.isEmpty, !name.hasPrefix("/"), !name.contains(".."), !name.utf8.contains(0), name.utf8.count <= 255 else {
        return false
    }
    let directory = getenv("TZDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/usr/share/zoneinfo"
    let fd = open(directory + "/" + name, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return false }
    var magic = [UInt8](repeating: 0, count: 4)
    let n = magic.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4) }
    return n == 4 && magic == Array("TZif".utf8)
}
