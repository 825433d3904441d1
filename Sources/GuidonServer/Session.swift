import CLinux
import GuidonMetrics
import GuidonProtocol

#if canImport(Glibc)
import Glibc
#endif

/// The protocol over one connected socket: reads request lines, answers them, writes the
/// replies, and says what to wait for next. Its `Connection` owns it and registers the socket
/// with an event loop; this holds everything that changes per request, in one value, so that a
/// read burst is one access to the connection's state rather than one per field and line.
///
/// A read takes what the socket holds into the loop's scratch space and answers every complete
/// line straight from there (only an unfinished line, or lines held back, are copied); all the
/// lines of one read are answered from one configuration and their replies written with one
/// `send`. Replies that the socket does not take wait in `out`, and until they have gone
/// nothing more is read or answered: a client that stops reading its replies stops being
/// served, and its memory stays bounded (the reply budget, plus one read).
///
/// Each call that answers lines times itself for the latency histogram: from before the read
/// to after the replies' `send`, every line answered in it counted at that duration, since its
/// reply left with the others (two clock reads per read burst, whatever its size).
struct Session {
    /// What the connection waits for next.
    enum Next {
        /// More requests (`EPOLLIN`).
        case read
        /// Room in the socket for the replies that wait (`EPOLLOUT`).
        case write
        /// Nothing from the socket: replies the store owes (`deferredReplies`) come first.
        case pause
        /// Nothing: close the connection.
        case close
    }

    private let fd: Int32
    private var config: LoopConfig
    private let service: ServiceContext
    private var responder: Responder
    /// Received, not yet answered: lines held back until the replies before them are out,
    /// then the start of a line whose newline has not arrived.
    private var held: [UInt8] = []
    /// Replies; `out[sent...]` has not been written yet.
    private var out: [UInt8] = []
    private var sent = 0
    /// Answer what has arrived, write it out, then close (the daemon drains, the client
    /// half-closed, or a line was refused).
    private var finishing = false
    /// Whether a last line without a newline counts as a request (the client half-closed).
    private var answerUnterminatedLine = false
    /// A line was too long: nothing more is answered.
    private var refused = false
    /// Sending failed (the client is gone): close without further ado.
    private var broken = false

    /// Replies owed by the store (a Redis-backed `consume` or `usage`), oldest first, each with
    /// the replies of the lines answered after it: replies leave in request order, and the loop
    /// goes on answering (pipelining) while the store works.
    private var deferred: [DeferredSlot] = []
    /// Replies waiting behind `deferred`, in bytes.
    private var deferredBytes = 0
    private var nextDeferred: UInt64 = 0
    /// Asks the store for a deferred reply, which comes back as `deferredReady(_:_:_:)`.
    private let startDeferred: (_ slot: UInt64, _ deferral: QuotaDeferral) -> Void
    /// At most this many replies owed at once per connection; past it nothing more is answered
    /// until the oldest come back.
    private static let maxDeferred = 512

    private struct DeferredSlot {
        let slot: UInt64
        var reply: [UInt8]?
        var after: [UInt8] = []
    }

    /// Read and reply space kept between bursts; a bigger burst's is given back.
    private static let retainedBytes = 64 * 1024
    private static let newline = Int32(UInt8(ascii: "\n"))

    /// The loop's counters, when it counts: unretained, as `Responder`'s.
    private var counters: Unmanaged<LoopCounters>?

    init(
        fd: Int32, config: LoopConfig, service: ServiceContext,
        startDeferred: @escaping (_ slot: UInt64, _ deferral: QuotaDeferral) -> Void = { _, _ in }
    ) {
        self.fd = fd
        self.startDeferred = startDeferred
        self.config = config
        self.service = service
        responder = Responder(service: service, socket: fd, counters: config.counters)
        counters = config.counters.flatMap { $0.isCounting ? Unmanaged.passUnretained($0) : nil }
        out.reserveCapacity(4096)
    }

    /// The connection moved to another loop: answer from that loop's configuration reference
    /// and count into its counters.
    mutating func rehome(_ config: LoopConfig) {
        self.config = config
        responder.rehome(counters: config.counters)
        counters = config.counters.flatMap { $0.isCounting ? Unmanaged.passUnretained($0) : nil }
    }

    /// The monotonic clock in nanoseconds, when counting (else 0: no clock read).
    @inline(__always)
    private func startTiming() -> UInt64 {
        counters == nil ? 0 : Self.monotonicNanoseconds()
    }

    /// Counts the lines answered since `started`.
    @inline(__always)
    private mutating func stopTiming(_ started: UInt64) {
        guard let counters, responder.answered > 0 else { return }
        let elapsed = Self.monotonicNanoseconds() &- started
        counters._withUnsafeGuaranteedRef { $0.answered(responder.answered, nanoseconds: elapsed) }
        responder.answered = 0
    }

    /// `CLOCK_MONOTONIC` (the vDSO reads it without entering the kernel).
    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }

    /// Bytes written by the session and not yet taken by the socket.
    var waiting: Int { out.count - sent }

    /// Too many replies are owed by the store: answer nothing more until some come back.
    private var deferredFull: Bool {
        !deferred.isEmpty && (deferred.count >= Self.maxDeferred || deferredBytes >= service.replyBudget)
    }

    /// The store's reply for `slot` (on the loop): it and whatever waited behind it are queued
    /// for writing once every older one has come too.
    mutating func deferredReady(_ slot: UInt64, _ reply: [UInt8], subscribe: () -> Void) -> Next {
        guard let index = deferred.firstIndex(where: { $0.slot == slot }) else { return advance(subscribe: subscribe) }
        deferred[index].reply = reply
        while let first = deferred.first, let ready = first.reply {
            out += ready
            out += first.after
            deferredBytes -= first.after.count
            deferred.removeFirst()
        }
        return advance(subscribe: subscribe)
    }

    /// The socket is readable: reads once into `scratch` and answers what came.
    /// `subscribe` is called for a `watch` request.
    mutating func readable(into scratch: UnsafeMutableRawBufferPointer, subscribe: () -> Void) -> Next {
        let started = startTiming()
        defer { stopTiming(started) }
        let count = recv(fd, scratch.baseAddress, scratch.count, 0)
        if count > 0 {
            let received = UnsafeRawBufferPointer(rebasing: scratch[0..<count])
            if held.isEmpty {
                let used = answerLines(in: received, subscribe: subscribe)
                if !broken && !refused && used < count {
                    held.append(contentsOf: UnsafeRawBufferPointer(rebasing: received[used...]))
                }
            } else if !refused {
                held.append(contentsOf: received)
            }
        } else if count == 0 {
            // The client will send nothing more: answer what came, then hang up.
            finishing = true
            answerUnterminatedLine = true
        } else if errno != EAGAIN && errno != EINTR {
            return .close
        }
        return proceed(subscribe: subscribe)
    }

    /// The daemon is stopping: answer what has arrived, write it out, then close.
    mutating func drain(subscribe: () -> Void) -> Next {
        finishing = true
        return advance(subscribe: subscribe)
    }

    /// Queues one `watch` event and writes what it can.
    mutating func push(_ event: [UInt8], subscribe: () -> Void) -> Next {
        if !deferred.isEmpty {
            // Behind the replies still owed: events follow the replies of requests sent before them.
            deferred[deferred.count - 1].after += event
            deferredBytes += event.count
            return .pause
        }
        let idle = waiting == 0
        out.append(contentsOf: event)
        return idle ? advance(subscribe: subscribe) : .write
    }

    /// Writes what waits, answers held lines, and decides what to wait for next.
    mutating func advance(subscribe: () -> Void) -> Next {
        let started = startTiming()
        defer { stopTiming(started) }
        return proceed(subscribe: subscribe)
    }

    private mutating func proceed(subscribe: () -> Void) -> Next {
        while !broken {
            switch flush() {
            case .done: break
            case .blocked: return .write
            case .failed: return .close
            }
            // Nothing waits to be written.
            if deferredFull { return .pause }
            if !refused && held.withUnsafeBytes({ $0.count > 0 && memchr($0.baseAddress!, Self.newline, $0.count) != nil }) {
                var pending: [UInt8] = []
                swap(&pending, &held)
                let used = pending.withUnsafeBytes { answerLines(in: $0, subscribe: subscribe) }
                pending.removeFirst(min(used, pending.count))
                if pending.isEmpty && pending.capacity > Self.retainedBytes { pending = [] }
                swap(&pending, &held)
                continue
            }
            guard finishing else {
                if held.count > service.maxLineBytes {
                    tooLarge()
                    held = []
                    continue
                }
                return .read
            }
            if !deferred.isEmpty { return .pause }
            if answerUnterminatedLine && !refused && !held.isEmpty {
                answerUnterminatedLine = false
                var last: [UInt8] = []
                swap(&last, &held)
                config.withCurrent { config in
                    last.withUnsafeBytes { answer($0, config: config, subscribe: subscribe) }
                }
                continue
            }
            return .close
        }
        return .close
    }

    // MARK: - Answering

    /// Answers the complete lines in `bytes` in order, all from one configuration, writing the
    /// replies out whenever they reach the reply budget; stops early when the socket does not
    /// take them. Returns how many bytes were used.
    private mutating func answerLines(in bytes: UnsafeRawBufferPointer, subscribe: () -> Void) -> Int {
        config.withCurrent { answerLines(in: bytes, config: $0, subscribe: subscribe) }
    }

    private mutating func answerLines(in bytes: UnsafeRawBufferPointer, config: ServedConfig, subscribe: () -> Void) -> Int {
        guard let base = bytes.baseAddress else { return 0 }
        var start = 0
        while let found = memchr(base + start, Self.newline, bytes.count - start) {
            if deferredFull { return start }
            if waiting >= service.replyBudget && deferred.isEmpty {
                switch flush() {
                case .done: break
                case .blocked: return start
                case .failed:
                    broken = true
                    return start
                }
            }
            let end = base.distance(to: UnsafeRawPointer(found))
            if end - start > service.maxLineBytes {
                tooLarge()
                return bytes.count
            }
            answer(UnsafeRawBufferPointer(rebasing: bytes[start..<end]), config: config, subscribe: subscribe)
            start = end + 1
        }
        if bytes.count - start > service.maxLineBytes {
            tooLarge()
            return bytes.count
        }
        return start
    }

    private mutating func answer(_ line: UnsafeRawBufferPointer, config: ServedConfig, subscribe: () -> Void) {
        let deferral: QuotaDeferral?
        if deferred.isEmpty {
            deferral = responder.answer(line, config: config, into: &out, subscribe: subscribe)
        } else {
            let last = deferred.count - 1
            let before = deferred[last].after.count
            deferral = responder.answer(line, config: config, into: &deferred[last].after, subscribe: subscribe)
            deferredBytes += deferred[last].after.count - before
        }
        if let deferral {
            nextDeferred &+= 1
            deferred.append(DeferredSlot(slot: nextDeferred))
            startDeferred(nextDeferred, deferral)
        }
    }

    /// A line longer than the limit: say so, and close once that is written. (The caller
    /// drops the held bytes.)
    private mutating func tooLarge() {
        refused = true
        finishing = true
        let error = RequestError(code: .tooLarge, message: "request line longer than \(service.maxLineBytes) bytes; closing the connection")
        if deferred.isEmpty {
            responder.refuse(error, into: &out)
        } else {
            responder.refuse(error, into: &deferred[deferred.count - 1].after)
        }
    }

    // MARK: - Writing

    private enum Flush {
        case done, blocked, failed
    }

    /// Writes the waiting replies: `.done` once none wait, `.blocked` while the socket is full.
    private mutating func flush() -> Flush {
        while sent < out.count {
            let offset = sent
            let written = out.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if written >= 0 {
                sent += written
            } else if errno == EINTR {
                continue
            } else {
                return errno == EAGAIN ? .blocked : .failed
            }
        }
        out.removeAll(keepingCapacity: out.capacity <= Self.retainedBytes)
        sent = 0
        return .done
    }
}
