import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// How the path guidond is given (`DIR/flags.json`) leads to the file that holds the flags.
enum FlagFileLayout: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// `flags.json` is the file.
    case direct
    /// `flags.json → srv/real.json` (a relative link, resolved against the link's directory).
    case symlink
    /// `flags.json → DIR/mid/link.json` (absolute) `→ ../srv/real.json` (relative).
    case symlinkToSymlink

    var testDescription: String { rawValue }

    /// Makes the layout in `dir` with `text` as the flags, the final file being an entry of a
    /// ConfigMap-style directory (`NAME → ..data/NAME`, `..data → ..v1`) when `dataDirectory`.
    /// Returns the final path: where a deployment tool would write the file.
    func prepare(_ dir: ScratchDirectory, _ text: String, dataDirectory: Bool = false) throws -> String {
        let fm = FileManager.default
        let final: String
        switch self {
        case .direct:
            final = dir.file("flags.json")
        case .symlink:
            try fm.createDirectory(atPath: dir.file("srv"), withIntermediateDirectories: true)
            try fm.createSymbolicLink(atPath: dir.file("flags.json"), withDestinationPath: "srv/real.json")
            final = dir.file("srv/real.json")
        case .symlinkToSymlink:
            try fm.createDirectory(atPath: dir.file("srv"), withIntermediateDirectories: true)
            try fm.createDirectory(atPath: dir.file("mid"), withIntermediateDirectories: true)
            try fm.createSymbolicLink(atPath: dir.file("flags.json"), withDestinationPath: dir.file("mid/link.json"))
            try fm.createSymbolicLink(atPath: dir.file("mid/link.json"), withDestinationPath: "../srv/real.json")
            final = dir.file("srv/real.json")
        }
        if dataDirectory {
            let parent = (final as NSString).deletingLastPathComponent
            let name = (final as NSString).lastPathComponent
            try fm.createDirectory(atPath: parent + "/..v1", withIntermediateDirectories: true)
            try text.write(toFile: parent + "/..v1/" + name, atomically: false, encoding: .utf8)
            try fm.createSymbolicLink(atPath: parent + "/..data", withDestinationPath: "..v1")
            try fm.createSymbolicLink(atPath: final, withDestinationPath: "..data/" + name)
        } else {
            try text.write(toFile: final, atomically: false, encoding: .utf8)
        }
        return final
    }
}

/// A way of changing the flag file, applied to the final path of a `FlagFileLayout`.
enum FlagFileChange: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// Truncate and write the same inode, then close.
    case inPlace
    /// Write `NAME.tmp` next to it and rename it over (how editors save).
    case editorRename
    /// Write a file in another directory and `mv` it over.
    case moveOver
    /// Delete it, wait half a second, then open, write and close a new one (issue 11's reproduction).
    case deleteThenRecreate
    /// A Kubernetes ConfigMap update: a new `..vN` directory, `..data` swapped to it by rename.
    case dataSwap

    var testDescription: String { rawValue }

    /// Whether the layout must be prepared with a ConfigMap-style directory for this change.
    var needsDataDirectory: Bool { self == .dataSwap }

    /// Changes the file at `final` to `text`. `generation` (2, 3, …) numbers successive changes;
    /// `scratch` is a directory of the same file system for files written elsewhere first;
    /// `beforeLastStep` runs just before the step that completes the change.
    func apply(
        to final: String, _ text: String, generation: Int, scratch: ScratchDirectory, beforeLastStep: () -> Void = {}
    ) throws {
        let parent = (final as NSString).deletingLastPathComponent
        let name = (final as NSString).lastPathComponent
        switch self {
        case .inPlace:
            beforeLastStep()
            try writeInPlace(final, text)
        case .editorRename:
            try text.write(toFile: final + ".tmp", atomically: false, encoding: .utf8)
            beforeLastStep()
            guard rename(final + ".tmp", final) == 0 else { throw TestFailure("rename: \(String(cString: strerror(errno)))") }
        case .moveOver:
            try FileManager.default.createDirectory(atPath: scratch.file("staging"), withIntermediateDirectories: true)
            let staging = scratch.file("staging/\(generation).json")
            try text.write(toFile: staging, atomically: false, encoding: .utf8)
            beforeLastStep()
            guard rename(staging, final) == 0 else { throw TestFailure("mv: \(String(cString: strerror(errno)))") }
        case .deleteThenRecreate:
            guard unlink(final) == 0 else { throw TestFailure("unlink: \(String(cString: strerror(errno)))") }
            usleep(500_000)
            beforeLastStep()
            try writeInPlace(final, text)
        case .dataSwap:
            let version = parent + "/..v\(generation)"
            try FileManager.default.createDirectory(atPath: version, withIntermediateDirectories: false)
            try text.write(toFile: version + "/" + name, atomically: false, encoding: .utf8)
            try FileManager.default.createSymbolicLink(atPath: parent + "/..data_tmp", withDestinationPath: "..v\(generation)")
            beforeLastStep()
            guard rename(parent + "/..data_tmp", parent + "/..data") == 0 else { throw TestFailure("rename ..data") }
            try FileManager.default.removeItem(atPath: parent + "/..v\(generation - 1)")
        }
    }
}
