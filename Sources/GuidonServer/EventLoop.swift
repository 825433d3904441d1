import CLinux
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// What an event loop delivers readiness to: a listening socket or a connection.
///
/// Called on the loop's thread only.
protocol EventLoopHandler: AnyObject {
    /// The file descriptor is ready (`events` is epoll's mask: `EPOLLIN`, `EPOLLOUT`, `EPOLLHUP`…).
    func ready(_ events: UInt32)
    /// The daemon is stopping: finish what has been received, then close.
    func drain()
    /// The loop is stopping: close now.
    func close()
}

/// One thread running epoll over its file descriptors, plus a queue of tasks other threads
/// hand it (new connections, `watch` events, watchdog probes, drain and stop requests).
///
/// Everything registered with a loop is touched only on the loop's thread; `execute` is the one
/// way in from elsewhere. Level-triggered: a handler that leaves bytes unread is told again.
///
/// `@unchecked Sendable`: the registry and the running flag are confined to the loop's thread;
/// the task queue is behind a lock.
final class EventLoop: @unchecked Sendable {
    let name: String
    private let epoll: Int32
    /// An eventfd: `execute` writes to it to wake `epoll_wait`.
    private let wakeup: Int32
    private let queue = NIOLockedValueBox(Queue())

    private struct Queue {
        var tasks: [@Sendable () -> Void] = []
        /// A wake-up is posted and not yet consumed: later tasks need no second one.
        var woken = false
    }

    // Loop thread only.
    private var handlers = HandlerTable()
    private var running = true
    private var thread: pthread_t?
    /// Reused by connections for their reads: a loop runs one handler at a time.
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    /// Called when the loop wakes after a window of `windowNanoseconds` has passed, with the
    /// CPU time its thread used in the window (handling events and tasks, in user space and in
    /// the kernel: time it was preempted or waited in `epoll_wait` is not counted), the window's
    /// length, how many events it handled, and in how many wake-ups. Set before `start`.
    var onWindow: ((_ busy: UInt64, _ elapsed: UInt64, _ events: Int, _ wakeups: Int) -> Void)?
    var windowNanoseconds: UInt64 = 20_000_000

    private static let wakeToken: UInt64 = 0

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    init(name: String) throws(Failure) {
        self.name = name
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw Failure(description: "epoll_create1: \(errnoText())") }
        wakeup = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wakeup >= 0 else {
            let text = errnoText()
            Glibc.close(epoll)
            throw Failure(description: "eventfd: \(text)")
        }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = Self.wakeToken
        epoll_ctl(epoll, EPOLL_CTL_ADD, wakeup, &event)
    }

    deinit {
        Glibc.close(wakeup)
        Glibc.close(epoll)
        scratch.deallocate()
    }

    // MARK: - From any thread

    /// Runs `task` on the loop's thread, after the events being handled.
    func execute(_ task: @escaping @Sendable () -> Void) {
        let wake = queue.withLockedValue { queue -> Bool in
            queue.tasks.append(task)
            defer { queue.woken = true }
            return !queue.woken
        }
        if wake {
            var one: UInt64 = 1
            _ = Glibc.write(wakeup, &one, 8)
        }
    }

    /// Starts the loop's thread.
    func start() {
        let box = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { box in
            let loop = Unmanaged<EventLoop>.fromOpaque(box!).takeRetainedValue()
            _ = pthread_setname_np(pthread_self(), loop.name)
            loop.run()
            return nil
        }, box)
        precondition(created == 0, "cannot start the \(name) thread: \(created)")
        self.thread = thread
    }

    /// Asks every handler to drain (see `EventLoopHandler.drain`).
    func drainAll() {
        execute { [self] in
            for handler in handlers.all { handler.drain() }
        }
    }

    /// Closes every handler, stops the thread and waits for it. Call once, from another thread.
    func stop() {
        execute { [self] in
            for handler in handlers.all { handler.close() }
            running = false
        }
        if let thread { pthread_join(thread, nil) }
    }

    // MARK: - On the loop's thread

    /// Adds `fd` with interest `events`; the returned token names it in `modify`/`remove`.
    /// `nil` when epoll refuses it (out of memory, or over `max_user_watches`).
    func register(_ fd: Int32, events: UInt32, handler: any EventLoopHandler) -> UInt64? {
        let token = handlers.add(handler)
        var event = epoll_event()
        event.events = events
        event.data.u64 = token
        guard epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) == 0 else {
            handlers.remove(token)
            return nil
        }
        return token
    }

    func modify(_ fd: Int32, token: UInt64, events: UInt32) {
        var event = epoll_event()
        event.events = events
        event.data.u64 = token
        epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &event)
    }

    /// Forgets `fd` (call before closing it).
    func remove(_ fd: Int32, token: UInt64) {
        epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nil)
        handlers.remove(token)
    }

    private func run() {
        let capacity: Int32 = 64
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: Int(capacity))
        defer { events.deallocate() }
        let measuring = onWindow != nil
        var windowStart = measuring ? Self.monotonicNanoseconds() : 0
        var cpuStart = measuring ? Self.threadCPUNanoseconds() : 0
        var handled = 0, wakeups = 0
        while running {
            let count = epoll_wait(epoll, events, capacity, -1)
            if count < 0 {
                precondition(errno == EINTR, "epoll_wait failed: \(errnoText())")
                continue
            }
            var tasksDue = false
            for i in 0..<Int(count) {
                let token = events[i].data.u64
                if token == Self.wakeToken {
                    tasksDue = true
                } else {
                    // A handler closed earlier in this batch is gone: its events are dropped.
                    handlers[token]?.ready(events[i].events)
                    handled += 1
                }
            }
            if tasksDue { runTasks() }
            if measuring {
                // One clock read per wake-up (the vDSO's); the thread's CPU clock, a system
                // call, once per window.
                let now = Self.monotonicNanoseconds()
                wakeups += 1
                if now &- windowStart >= windowNanoseconds, let onWindow {
                    let cpu = Self.threadCPUNanoseconds()
                    onWindow(cpu &- cpuStart, now &- windowStart, handled, wakeups)
                    windowStart = now
                    cpuStart = cpu
                    handled = 0
                    wakeups = 0
                }
            }
        }
        // Tasks that came after the stop (a connection moving here): close what they opened.
        runTasks()
        for handler in handlers.all { handler.close() }
    }

    /// Calls `body` with every connection registered here (a copy of the list: `body` may
    /// move or close them).
    func forEachConnection(_ body: (Connection) -> Void) {
        for handler in handlers.all {
            if let connection = handler as? Connection { body(connection) }
        }
    }

    /// The calling thread's CPU time in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`).
    static func threadCPUNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }

    /// `CLOCK_MONOTONIC` in nanoseconds (the vDSO reads it without entering the kernel).
    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }

    private func runTasks() {
        var spent: UInt64 = 0
        _ = Glibc.read(wakeup, &spent, 8)
        let tasks = queue.withLockedValue { queue in
            queue.woken = false
            return queue.tasks.take()
        }
        for task in tasks { task() }
    }
}

/// The handlers registered with a loop, by token: a slot number plus that slot's generation,
/// so that a token outlives its handler harmlessly (events for it, later in a batch, find
/// nothing) and finding a handler is an array index rather than a hash lookup per event.
struct HandlerTable {
    private struct Slot {
        var handler: (any EventLoopHandler)?
        var generation: UInt32 = 0
    }

    private var slots: [Slot] = []
    private var free: [Int] = []

    /// A token for `handler`; never 0 (the wake-up's).
    mutating func add(_ handler: any EventLoopHandler) -> UInt64 {
        let index: Int
        if let reused = free.popLast() {
            index = reused
        } else {
            index = slots.count
            slots.append(Slot())
        }
        slots[index].generation &+= 1
        if slots[index].generation == 0 { slots[index].generation = 1 }
        slots[index].handler = handler
        return UInt64(slots[index].generation) << 32 | UInt64(index)
    }

    subscript(token: UInt64) -> (any EventLoopHandler)? {
        let index = Int(token & 0xffff_ffff)
        guard index < slots.count, slots[index].generation == UInt32(token >> 32) else { return nil }
        return slots[index].handler
    }

    mutating func remove(_ token: UInt64) {
        let index = Int(token & 0xffff_ffff)
        guard index < slots.count, slots[index].generation == UInt32(token >> 32), slots[index].handler != nil else { return }
        slots[index].handler = nil
        free.append(index)
    }

    /// Every handler (a copy: handlers may remove themselves meanwhile).
    var all: [any EventLoopHandler] { slots.compactMap(\.handler) }
}

extension Array {
    /// The elements, leaving the array empty (but keeping nothing: the caller owns them now).
    fileprivate mutating func take() -> [Element] {
        var taken: [Element] = []
        swap(&taken, &self)
        return taken
    }
}
