import Foundation
import Testing

@testable import GuidonServer

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

    /// Every kind of change, to the file itself, through a symlink and through a symlink to a
    /// symlink, twice in a row, with the watcher's real debounce: each change is reported after
    /// its last step (a reload in between must not lose track of a target that was deleted).
    @Test(arguments: FlagFileLayout.allCases, FlagFileChange.allCases)
    func everyChangeIsReportedThroughEveryLayout(layout: FlagFileLayout, change: FlagFileChange) throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let final = try layout.prepare(dir, "{}", dataDirectory: change.needsDataDirectory)
        let counter = ChangeCounter()
        let watcher = try FileWatcher(path: dir.file("flags.json"), quietPeriod: .milliseconds(50))
        watcher.start { counter.increment() }
        defer { watcher.stop() }

        for generation in 2...3 {
            var before = 0
            try change.apply(to: final, #"{"flags": {"g": \#(generation)}}"#, generation: generation, scratch: dir) {
                before = counter.count
            }
            try counter.waitFor(before + 1, "\(change) #\(generation - 1) through \(layout)")
            // Let the reload that the change brings about finish before the next change.
            usleep(150_000)
        }
    }

    @Test func aPlanFollowsEveryHopOfASymlinkChainEvenWhenTheTargetDangles() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        _ = try FlagFileLayout.symlinkToSymlink.prepare(dir, "{}")
        let expected = WatchPlan(entries: [
            dir.path: ["flags.json"], dir.file("mid"): ["link.json"], dir.file("mid/../srv"): ["real.json"],
        ])
        #expect(WatchPlan(path: dir.file("flags.json")) == expected)
        try FileManager.default.removeItem(atPath: dir.file("srv/real.json"))
        #expect(WatchPlan(path: dir.file("flags.json")) == expected, "the dangling target's name is still watched")
        // A target whose directory does not exist yet is watched for through its parent.
        try FileManager.default.removeItem(atPath: dir.file("srv"))
        #expect(WatchPlan(path: dir.file("flags.json")).existingDirectories() == WatchPlan(entries: [
            dir.path: ["flags.json"], dir.file("mid"): ["link.json"], dir.file("mid/.."): ["srv"],
        ]))
    }

    @Test func aPlanWatchesSymlinkedDirectoriesOnTheWay() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        _ = try FlagFileLayout.direct.prepare(dir, "{}", dataDirectory: true)
        // flags.json → ..data/flags.json, ..data → ..v1
        #expect(WatchPlan(path: dir.file("flags.json")) == WatchPlan(entries: [
            dir.path: ["flags.json", "..data"], dir.file("..data"): ["flags.json"],
        ]))
    }

    @Test func aSymlinkLoopEnds() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        try FileManager.default.createSymbolicLink(atPath: dir.file("flags.json"), withDestinationPath: "other.json")
        try FileManager.default.createSymbolicLink(atPath: dir.file("other.json"), withDestinationPath: "flags.json")
        #expect(WatchPlan(path: dir.file("flags.json")) == WatchPlan(entries: [dir.path: ["flags.json", "other.json"]]))
    }
}
