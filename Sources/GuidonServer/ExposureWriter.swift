import Atomics
import CLinux
import Dispatch
public import GuidonMetrics
public import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// Where exposure events go (`guidond --events PATH`).
public struct ExposureEventsConfiguration: Sendable, Hashable {
    /// The JSON-lines file; rotated files are `PATH.1` (newest) … `PATH.N`.
    public var path: String
    /// The file is rotated before it would grow past this. Default 64 MiB.
    public var maxBytes: Int
    /// Rotated files kept besides the current one. Default 5.
    public var keep: Int
    /// The same (targeting key, flag, variant) within this many seconds is recorded once;
    /// 0 records every evaluation. Default 60.
    public var windowSeconds: UInt32
    /// Slots in each loop's queue (a power of two; 512 bytes each). Default 1,024.
    public var queueSlots: Int
    /// How often the writer takes the queues and writes. Events reach the file within it.
    public var flushInterval: Duration

    public init(
        path: String, maxBytes: Int = 64 << 20, keep: Int = 5, windowSeconds: UInt32 = 60, queueSlots: Int = 1024,
        flushInterval: Duration = .milliseconds(200)
    ) {
        self.path = path
        self.maxBytes = maxBytes
        self.keep = keep
        self.windowSeconds = windowSeconds
        self.queueSlots = queueSlots
        self.flushInterval = flushInterval
    }
}

/// Where the writer puts event lines: the rotating file, or, in tests, something slower.
protocol ExposureSink: AnyObject {
    /// Writes `bytes` whole, or throws (the events in them are counted as dropped).
    func write(_ bytes: [UInt8]) throws(ExposureWriter.Failure)
    func close()
}

/// Takes exposure events from every loop's queue and appends them, as JSON lines, to the events
/// file, on a thread of its own.
///
/// It wakes every `flushInterval` (200 ms), takes what the queues hold and writes it with one
/// `write`: events are in the file within a second of the evaluation. The loops never wait for
/// it: when it falls behind (a slow or full disk), their queues fill and new events are dropped
/// and counted, and what it does not write it counts too.
///
/// `@unchecked Sendable`: `sink` is used by the writer's thread only (and closed by `shutdown`
/// only when that thread never started); the rest is locked or atomic.
public final class ExposureWriter: @unchecked Sendable {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private enum State {
        case idle
        case running
        case stopping
        case stopped
    }

    let configuration: ExposureEventsConfiguration
    let deduplicator: ExposureDeduplicator
    private let queues = NIOLockedValueBox<[ExposureQueue]>([])
    private let state = NIOLockedValueBox(State.idle)
    private let finished = DispatchSemaphore(value: 0)
    private let written = ManagedAtomic<UInt64>(0)
    private let writeFailures = ManagedAtomic<UInt64>(0)
    private let logger: Logger
    // Touched by the writer's thread only (and by `init`, before it starts).
    private let sink: any ExposureSink

    /// Opens (or creates) the events file; throws when it cannot.
    public convenience init(_ configuration: ExposureEventsConfiguration, logger: Logger) throws(StartupError) {
        let file: RotatingFile
        do throws(Failure) {
            file = try RotatingFile(path: configuration.path, maxBytes: configuration.maxBytes, keep: configuration.keep)
        } catch {
            throw StartupError(description: "cannot write exposure events: \(error)")
        }
        self.init(configuration, sink: file, logger: logger)
    }

    init(_ configuration: ExposureEventsConfiguration, sink: any ExposureSink, logger: Logger) {
        self.configuration = configuration
        self.deduplicator = ExposureDeduplicator(windowSeconds: configuration.windowSeconds)
        self.sink = sink
        self.logger = logger
    }

    /// A queue for one more loop.
    public func makeQueue() -> ExposureQueue {
        let queue = ExposureQueue(capacity: configuration.queueSlots, deduplicator: deduplicator)
        queues.withLockedValue { $0.append(queue) }
        return queue
    }

    /// What the writer counted (`written`, `droppedWriteFailed`).
    public var counts: ExposureCounts {
        var counts = ExposureCounts()
        counts.written = written.load(ordering: .relaxed)
        counts.droppedWriteFailed = writeFailures.load(ordering: .relaxed)
        return counts
    }

    public func start() {
        let starting = state.withLockedValue { state -> Bool in
            guard case .idle = state else { return false }
            state = .running
            return true
        }
        guard starting else { return }
        let box = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { box in
            let writer = Unmanaged<ExposureWriter>.fromOpaque(box!).takeRetainedValue()
            _ = pthread_setname_np(pthread_self(), "guidon-events")
            writer.run()
            return nil
        }, box)
        precondition(created == 0, "cannot start the exposure-event writer: \(created)")
        pthread_detach(thread)
    }

    /// Writes what the queues hold, then stops the thread and closes the file. Safe to call twice.
    public func shutdown() {
        let wasRunning = state.withLockedValue { state -> Bool in
            switch state {
            case .running:
                state = .stopping
                return true
            case .idle:
                state = .stopped
                sink.close()
                return false
            case .stopping, .stopped:
                return false
            }
        }
        if wasRunning { finished.wait() }
    }

    private func run() {
        let interval = UInt32(max(1, ExposureWriter.microseconds(configuration.flushInterval)))
        var buffer: [UInt8] = []
        while true {
            let stopping = state.withLockedValue { $0 == .stopping }
            flush(into: &buffer)
            if stopping { break }
            usleep(interval)
        }
        sink.close()
        state.withLockedValue { $0 = .stopped }
        finished.signal()
    }

    /// Takes every queue's events and writes them with one call.
    func flush(into buffer: inout [UInt8]) {
        buffer.removeAll(keepingCapacity: buffer.capacity <= 1 << 20)
        var events: UInt64 = 0
        for queue in queues.withLockedValue({ $0 }) {
            events += UInt64(queue.drain { $0.writeJSONLine(into: &buffer) })
        }
        guard events > 0 else { return }
        do throws(Failure) {
            try sink.write(buffer)
            written.wrappingIncrement(by: events, ordering: .relaxed)
        } catch {
            let before = writeFailures.loadThenWrappingIncrement(by: events, ordering: .relaxed)
            if before == 0 || before / 10_000 != (before + events) / 10_000 {
                logger.error("cannot write exposure events; \(events) dropped: \(error)", metadata: ["eventsPath": "\(configuration.path)"])
            }
        }
    }

    static func microseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
    }
}

/// The events file, rotated by size: before a write would take it past `maxBytes`, `PATH.N-1`
/// becomes `PATH.N` (the oldest beyond `keep` is deleted), …, `PATH` becomes `PATH.1`, and a new
/// `PATH` is started.
final class RotatingFile: ExposureSink {
    let path: String
    let maxBytes: Int
    let keep: Int
    private var fd: Int32
    private var size: Int

    init(path: String, maxBytes: Int, keep: Int) throws(ExposureWriter.Failure) {
        self.path = path
        self.maxBytes = maxBytes
        self.keep = keep
        (fd, size) = try Self.open(path)
    }

    private static func open(_ path: String) throws(ExposureWriter.Failure) -> (Int32, Int) {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw ExposureWriter.Failure(description: "\(path): \(String(cString: strerror(errno)))") }
        var info = stat()
        fstat(fd, &info)
        return (fd, Int(info.st_size))
    }

    /// Appends whole lines, rotating between two lines whenever the next would take the file
    /// past `maxBytes` (a single line longer than that gets a file of its own).
    func write(_ bytes: [UInt8]) throws(ExposureWriter.Failure) {
        var start = 0
        while start < bytes.count {
            var end = bytes.count
            if size + (end - start) > maxBytes {
                // The last line end that still fits.
                end = min(bytes.count, start + max(0, maxBytes - size))
                while end > start && bytes[end - 1] != UInt8(ascii: "\n") { end -= 1 }
                if end == start {
                    if size > 0 {
                        try rotate()
                        continue
                    }
                    end = (bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count - 1) + 1
                }
            }
            try append(bytes, start..<end)
            start = end
        }
    }

    private func append(_ bytes: [UInt8], _ range: Range<Int>) throws(ExposureWriter.Failure) {
        var offset = range.lowerBound
        while offset < range.upperBound {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, range.upperBound - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ExposureWriter.Failure(description: "\(path): \(String(cString: strerror(errno)))")
            }
            offset += n
        }
        size += range.count
    }

    private func rotate() throws(ExposureWriter.Failure) {
        Glibc.close(fd)
        if keep > 0 {
            unlink("\(path).\(keep)")
            for i in stride(from: keep - 1, through: 1, by: -1) { rename("\(path).\(i)", "\(path).\(i + 1)") }
            rename(path, "\(path).1")
        } else {
            unlink(path)
        }
        (fd, size) = try Self.open(path)
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}
