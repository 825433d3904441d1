import Foundation
import GuidonServer
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Counts `onChange` calls.
final class ChangeCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    var count: Int { lock.withLock { value } }
    func increment() { lock.withLock { value += 1 } }

    /// Polls until at least `n` changes were reported.
    func waitFor(_ n: Int, _ what: String) throws {
        let deadline = ContinuousClock.now + .seconds(15)
        while count < n {
            guard ContinuousClock.now < deadline else { throw TestFailure("no change reported for \(what)") }
            usleep(5_000)
        }
    }
}

@Suite("FileWatcher", .serialized)
struct FileWatcherTests {
    /// A watcher whose debounce would take an hour: it only reports at once what it sees complete.
    func watch(_ dir: ScratchDirectory, _ counter: ChangeCounter) throws -> FileWatcher {
        let watcher = try FileWatcher(path: dir.file("flags.json"), quietPeriod: .seconds(3600), maxDelay: .seconds(3600))
        watcher.start { counter.increment() }
        return watcher
    }

    @Test func completedWritesAreReportedWithoutWaitingForTheQuietPeriod() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("flags.json", "{}")
        let counter = ChangeCounter()
        let watcher = try watch(dir, counter)
        defer { watcher.stop() }

        try renameOver(dir.file("flags.json"), #"{"flags": {}}"#)
        try counter.waitFor(1, "a rename over the file (IN_MOVED_TO)")
        try writeInPlace(dir.file("flags.json"), #"{"flags": {} }"#)
        try counter.waitFor(2, "an in-place write, closed (IN_CLOSE_WRITE)")
    }

    /// The watch is armed when the watcher is made: a file replaced before it starts reporting
    /// (while a daemon loads the file and prepares to reload) is reported once it starts.
    @Test func aChangeBetweenArmingAndStartingIsReported() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("flags.json", "{}")
        let watcher = try FileWatcher(path: dir.file("flags.json"), quietPeriod: .seconds(3600), maxDelay: .seconds(3600))
        defer { watcher.stop() }
        try renameOver(dir.file("flags.json"), #"{"flags": {}}"#)
        let counter = ChangeCounter()
        watcher.start { counter.increment() }
        try counter.waitFor(1, "a rename made before the watcher started")
    }

    @Test func aSwappedDataSymlinkIsReportedAtOnce() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        for version in ["..v1", "..v2"] {
            try FileManager.default.createDirectory(atPath: dir.file(version), withIntermediateDirectories: false)
            try dir.write("\(version)/flags.json", "{}")
        }
        try FileManager.default.createSymbolicLink(atPath: dir.file("..data"), withDestinationPath: "..v1")
        try FileManager.default.createSymbolicLink(atPath: dir.file("flags.json"), withDestinationPath: "..data/flags.json")
        let counter = ChangeCounter()
        let watcher = try watch(dir, counter)
        defer { watcher.stop() }

        try FileManager.default.createSymbolicLink(atPath: dir.file("..data_tmp"), withDestinationPath: "..v2")
        guard rename(dir.file("..data_tmp"), dir.file("..data")) == 0 else { throw TestFailure("rename ..data") }
        try counter.waitFor(1, "the ..data symlink swap")
    }

    @Test func writesStillOpenAreDebounced() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("flags.json", "{}")
        let counter = ChangeCounter()
        let watcher = try FileWatcher(path: dir.file("flags.json"), quietPeriod: .milliseconds(50))
        watcher.start { counter.increment() }
        defer { watcher.stop() }

        let fd = open(dir.file("flags.json"), O_WRONLY | O_APPEND)
        defer { close(fd) }
        let bytes = Array(" ".utf8)
        #expect(write(fd, bytes, bytes.count) == bytes.count)
        try counter.waitFor(1, "a write that has not closed (IN_MODIFY, after the quiet period)")
    }

    @Test func stopReturnsWhileTheDirectoryNeverStopsChanging() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try dir.write("flags.json", "{}")
        let counter = ChangeCounter()
        let watcher = try watch(dir, counter)

        let stopWriting = ManagedFlag()
        let writerDone = DispatchGroup()
        startNoiseWriter(in: dir, named: "writer", until: stopWriting, group: writerDone)
        defer {
            stopWriting.set()
            writerDone.wait()
        }

        try renameOver(dir.file("flags.json"), #"{"flags": {}}"#)
        try counter.waitFor(1, "a rename over the file in a busy directory")
        let stopped = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            watcher.stop()
            stopped.signal()
        }
        #expect(stopped.wait(timeout: .now() + .seconds(10)) == .success, "stop() did not return")
    }
}
