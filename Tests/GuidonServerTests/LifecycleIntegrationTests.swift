import Foundation
import GuidonJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Stands in for systemd's notification socket: collects what `sd_notify` sends.
final class NotifyListener {
    let path: String
    let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0, bindUnix(fd, path) == 0 else { throw TestFailure("cannot bind \(path)") }
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// The next message, or nil after 100 ms of silence.
    func next() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : nil
    }

    /// Reads messages until one satisfies `condition`; returns it.
    func waitFor(_ what: String, timeout: Duration = .seconds(15), _ condition: (String) -> Bool) throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let message = next(), condition(message) { return message }
        }
        throw TestFailure("no notification \(what) within \(timeout)")
    }
}

@Suite("guidond: lifecycle, systemd protocol, socket handling", .serialized)
struct LifecycleIntegrationTests {
    @Test func notifiesReadinessReloadStatusAndStopping() throws {
        let dir = try ScratchDirectory()
        let notify = try NotifyListener(path: dir.file("notify.sock"))
        try dir.write("flags.json", buttonFlags("one"))
        let process = try DaemonProcess(
            arguments: ["--config", dir.file("flags.json"), "--socket", dir.file("guidon.sock"), "--no-watch"],
            logPath: dir.file("guidond.log"), environment: ["NOTIFY_SOCKET": notify.path])
        defer { dir.remove() }

        let ready = try notify.waitFor("READY=1") { $0.contains("READY=1") }
        // READY=1 only once the socket accepts.
        #expect(try LineClient(path: dir.file("guidon.sock")).request(#"{"op":"ping"}"#)["ok"] == true)
        #expect(ready.contains("STATUS=serving 1 flags, config v"))

        try dir.write("flags.json", buttonFlags("two", extra: ["more": "m"]))
        process.signal(SIGHUP)
        let reloading = try notify.waitFor("RELOADING=1") { $0.contains("RELOADING=1") }
        #expect(reloading.contains("MONOTONIC_USEC="))
        let reloaded = try notify.waitFor("READY=1 after the reload") { $0.contains("READY=1") }
        #expect(reloaded.contains("STATUS=serving 2 flags"))

        try dir.write("flags.json", #"{"flags": {"button": {"state": "ENABLED", "variants": {"#)
        process.signal(SIGHUP)
        _ = try notify.waitFor("RELOADING=1") { $0.contains("RELOADING=1") }
        let kept = try notify.waitFor("READY=1 after the failed reload") { $0.contains("READY=1") }
        #expect(kept.contains("reload failed at"), "\(kept)")
        #expect(kept.contains("still serving v"), "\(kept)")

        process.signal(SIGTERM)
        _ = try notify.waitFor("STOPPING=1") { $0.contains("STOPPING=1") }
        #expect(try process.waitForExit() == 0)
    }

    @Test func petsTheWatchdogAtHalfTheInterval() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let notify = try NotifyListener(path: dir.file("notify.sock"))
        try dir.write("flags.json", buttonFlags("one"))
        let process = try DaemonProcess(
            arguments: ["--config", dir.file("flags.json"), "--socket", dir.file("guidon.sock")],
            logPath: dir.file("guidond.log"), environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"])
        _ = try notify.waitFor("READY=1") { $0.contains("READY=1") }
        var pets = 0
        let until = ContinuousClock.now + .seconds(2)
        while ContinuousClock.now < until {
            if notify.next() == "WATCHDOG=1" { pets += 1 }
        }
        // At 200 ms intervals, about 10 in 2 s; allow for a loaded machine.
        #expect(pets >= 3, "only \(pets) WATCHDOG=1 in 2 s")
        #expect(try process.stop() == 0)
    }

    @Test func adoptsASocketPassedBySystemdAndLeavesItAlone() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("flags.json", buttonFlags("activated"))
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard bindUnix(listener, dir.file("activated.sock")) == 0, listen(listener, 16) == 0 else { throw TestFailure("bind/listen") }
        let inheritable = fcntl(listener, F_DUPFD, 10)  // not CLOEXEC, and not already fd 3
        close(listener)
        defer { close(inheritable) }

        let process = try DaemonProcess(
            arguments: ["--config", dir.file("flags.json"), "--socket", dir.file("not-used.sock")],
            logPath: dir.file("guidond.log"), listenFD: inheritable)
        var answered = false
        for _ in 0..<500 where !answered {
            if let c = try? LineClient(path: dir.file("activated.sock")), let r = try? c.request(#"{"op":"eval","flag":"button"}"#) {
                #expect(r["value"] == "activated")
                answered = true
            } else {
                usleep(20_000)
            }
        }
        #expect(answered, "\(process.log)")
        #expect(access(dir.file("not-used.sock"), F_OK) != 0, "it must not bind its own socket")
        #expect(try process.stop() == 0)
        #expect(process.log.contains("passed by systemd"), "\(process.log)")
        #expect(access(dir.file("activated.sock"), F_OK) == 0, "a socket it did not create is not unlinked")
    }

    @Test func refusesToStartOnAMissingOrInvalidFile() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let missing = try DaemonProcess(
            arguments: ["--config", dir.file("absent.json"), "--socket", dir.file("a.sock")], logPath: dir.file("missing.log"))
        #expect(try missing.waitForExit() != 0)
        #expect(missing.log.contains("cannot read \(dir.file("absent.json"))"))

        try dir.write("bad.json", "{\n  \"flags\": {\n    \"x\": \n  }\n}\n")
        let invalid = try DaemonProcess(
            arguments: ["--config", dir.file("bad.json"), "--socket", dir.file("b.sock")], logPath: dir.file("invalid.log"))
        #expect(try invalid.waitForExit() != 0)
        #expect(invalid.log.contains("bad.json is not a valid flag file"))
        #expect(invalid.log.contains("line 4"), "the report says where: \(invalid.log)")
        #expect(access(dir.file("b.sock"), F_OK) != 0, "it fails before binding")
    }

    @Test func socketFileHandling() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("flags.json", buttonFlags("one"))
        // A stale socket file (nothing listening) is replaced.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #expect(bindUnix(stale, dir.file("guidon.sock")) == 0)
        close(stale)
        let daemon = try RunningDaemon(flags: nil, dir: dir)

        // A live one is not stolen.
        let second = try DaemonProcess(
            arguments: ["--config", dir.file("flags.json"), "--socket", dir.file("guidon.sock")], logPath: dir.file("second.log"))
        #expect(try second.waitForExit() != 0)
        #expect(second.log.contains("already listening"))
        #expect(try daemon.client().request(#"{"op":"ping"}"#)["ok"] == true)

        // A file that is not a socket is not removed.
        try dir.write("plain", "data")
        let third = try DaemonProcess(
            arguments: ["--config", dir.file("flags.json"), "--socket", dir.file("plain")], logPath: dir.file("third.log"))
        #expect(try third.waitForExit() != 0)
        #expect(third.log.contains("not a socket"))
        #expect(access(dir.file("plain"), F_OK) == 0)

        // On exit it removes the socket it created.
        #expect(try daemon.process.stop() == 0)
        #expect(access(dir.file("guidon.sock"), F_OK) != 0)
    }

    /// A restart where the old instance is still draining a slow client: the old one gives up
    /// the path as soon as it stops accepting, and never removes the successor's socket.
    @Test func successorStartedDuringADrainKeepsItsSocket() throws {
        var extra: [String: String] = [:]
        for i in 0..<400 { extra["filler-\(i)"] = String(repeating: "x", count: 40) }
        let old = try RunningDaemon(flags: buttonFlags("one", extra: extra))
        defer { old.dir.remove() }
        // A client that asks for much more than the socket buffers hold and reads nothing yet:
        // the drain has to wait for it.
        let slow = try old.client()
        let requests = 60
        try slow.send(String(repeating: #"{"op":"list"}"# + "\n", count: requests))
        #expect(try slow.readReply()["flags"]?.array?.count == 401)
        old.process.signal(SIGTERM)
        try old.waitFor("the old instance to give up its socket path") { access(old.socketPath, F_OK) != 0 }
        #expect((try? old.process.waitForExit(timeout: .milliseconds(100))) == nil, "still draining the slow client")

        let successor = try DaemonProcess(
            arguments: ["--config", old.configPath, "--socket", old.socketPath], logPath: old.dir.file("successor.log"))
        defer { _ = try? successor.stop() }
        try old.waitFor("the successor to answer") {
            (try? LineClient(path: old.socketPath).request(#"{"op":"ping"}"#))?["ok"] == true
        }
        // The slow client reads now: the old instance finishes its drain and exits.
        var answered = 1
        while let _ = try slow.readLine() { answered += 1 }
        #expect(answered == requests, "every request received before SIGTERM is answered")
        #expect(try old.process.waitForExit() == 0)
        #expect(try LineClient(path: old.socketPath).request(#"{"op":"ping"}"#)["ok"] == true, "\(successor.log)")
        #expect(try successor.stop() == 0)
        #expect(access(old.socketPath, F_OK) != 0)
    }

    @Test(arguments: [SIGTERM, SIGINT])
    func stopsCleanlyAnsweringWhatItReceived(signal: Int32) throws {
        let daemon = try RunningDaemon(flags: buttonFlags("one"))
        defer { daemon.dir.remove() }
        let c = try daemon.client()
        var batch = ""
        for i in 0..<200 { batch += #"{"op":"eval","id":\#(i),"flag":"button"}"# + "\n" }
        try c.send(batch)
        #expect(try c.readReply()["id"] == 0)
        daemon.process.signal(signal)
        var next = 1
        while let line = try c.readLine() {
            let reply = try #require(try JSONParser().parse(line).object)
            #expect(reply["id"] == .int(Int64(next)))
            next += 1
        }
        #expect(next == 200, "every request received before the signal is answered")
        #expect(try daemon.process.waitForExit() == 0)
        #expect(daemon.process.log.contains("shutting down"))
    }
}
