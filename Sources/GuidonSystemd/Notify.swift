import CSystemd

#if canImport(Glibc)
import Glibc
#endif

/// Messages to the service manager (`sd_notify(3)`). Every call is a cheap no-op
/// when the process was not started by systemd (`NOTIFY_SOCKET` unset).
public enum SystemdNotifier {
    /// Whether a service manager listens for notifications.
    public static var isAvailable: Bool { getenv("NOTIFY_SOCKET") != nil }

    /// Sends raw `KEY=VALUE` lines. Returns whether the message was delivered.
    @discardableResult
    public static func send(_ state: String) -> Bool {
        sd_notify(0, state) > 0
    }

    /// `READY=1` plus a status line.
    public static func ready(status: String) {
        send("READY=1\nSTATUS=\(sanitized(status))")
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC` that systemd ≥ 253 requires.
    public static func reloading(status: String) {
        send("RELOADING=1\nMONOTONIC_USEC=\(monotonicMicroseconds())\nSTATUS=\(sanitized(status))")
    }

    public static func stopping(status: String) {
        send("STOPPING=1\nSTATUS=\(sanitized(status))")
    }

    public static func status(_ text: String) {
        send("STATUS=\(sanitized(text))")
    }

    public static func watchdog() {
        send("WATCHDOG=1")
    }

    /// The watchdog interval systemd asked for (`WatchdogSec=`), if any and if meant for this process.
    public static var watchdogInterval: Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(clamping: usec))
    }

    /// CLOCK_MONOTONIC in microseconds, as `MONOTONIC_USEC=` wants it.
    public static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1_000
    }

    /// A status is one line: newlines would start new assignments.
    static func sanitized(_ text: String) -> String {
        text.replacing("\n", with: " ")
    }
}
