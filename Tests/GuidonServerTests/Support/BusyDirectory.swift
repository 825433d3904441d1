import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A flag one thread sets and others poll.
final class ManagedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

/// Keeps a directory busy, as other programs sharing it would: on a background thread, appends
/// single bytes to two files by turns (so that inotify cannot merge the events), truncating them
/// now and then, until `stop` is set; then closes them and leaves `group`.
func startNoiseWriter(in dir: ScratchDirectory, named name: String, until stop: ManagedFlag, group: DispatchGroup) {
    let noise = ["a", "b"].map { (part: String) -> Int32 in
        open(dir.file("noise-\(name)-\(part).log"), O_WRONLY | O_APPEND | O_CREAT, 0o644)
    }
    DispatchQueue.global().async(group: group) {
        var byte: UInt8 = 0x2E
        var writes = 0
        while !stop.isSet {
            _ = write(noise[writes & 1], &byte, 1)
            writes += 1
            if writes % 100_000 == 0 { for fd in noise { _ = ftruncate(fd, 0) } }
        }
        for fd in noise { close(fd) }
    }
}
