import CLinux
import GuidonQuota
import GuidonRESP

#if canImport(Glibc)
import Glibc
#endif

/// An event loop's own connection to the Redis store (`RESPLoopConnection`), watched by the
/// loop's epoll: a `consume` sent from the loop has its reply read, and its completion called,
/// on that loop, instead of on the pool's poll thread (which then had to wake the loop with
/// `EventLoop.execute`). Deadlines are kept by a `timerfd` on the same loop, armed for the
/// earliest one. One per loop thread, made on the first Redis-backed `consume` there
/// (`QuotaService.loopSender(on:store:)`), kept in thread-specific storage.
///
/// `@unchecked Sendable`: confined to its loop's thread.
final class QuotaLoopLink: EventLoopHandler, @unchecked Sendable {
    let loop: EventLoop
    let store: RedisQuotaStore
    let connection: RESPLoopConnection
    private let timer: Timer
    /// The socket registered with the loop (its number and `socketGeneration`), and how.
    private var registered: (fd: Int32, generation: Int, token: UInt64, events: UInt32)?
    /// When the timer is armed for (monotonic nanoseconds).
    private var armed: UInt64?
    private var closed = false

    /// The timerfd's handler (a loop names a handler by token, one per descriptor).
    private final class Timer: EventLoopHandler {
        let fd: Int32
        var token: UInt64 = 0
        weak var link: QuotaLoopLink?
        init(fd: Int32) { self.fd = fd }
        func ready(_ events: UInt32) {
            var expirations: UInt64 = 0
            _ = Glibc.read(fd, &expirations, 8)
            link?.timerFired()
        }
        func drain() {}
        func close() { link?.close() }
    }

    /// Registers a new link with `loop` (call on that loop); `nil` when a descriptor cannot be
    /// had (the pool answers then).
    static func make(on loop: EventLoop, store: RedisQuotaStore) -> QuotaLoopLink? {
        guard let connection = try? store.makeLoopConnection() else { return nil }
        let fd = timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK) | Int32(TFD_CLOEXEC))
        guard fd >= 0 else { return nil }
        let link = QuotaLoopLink(loop: loop, store: store, connection: connection, timer: Timer(fd: fd))
        guard let token = loop.register(fd, events: EPOLLIN.rawValue, handler: link.timer) else {
            Glibc.close(fd)
            return nil
        }
        link.timer.token = token
        link.timer.link = link
        connection.changed = { [unowned link] in link.sync() }
        return link
    }

    private init(loop: EventLoop, store: RedisQuotaStore, connection: RESPLoopConnection, timer: Timer) {
        self.loop = loop
        self.store = store
        self.connection = connection
        self.timer = timer
    }

    // MARK: - EventLoopHandler (the Redis socket)

    func ready(_ events: UInt32) {
        connection.handle(
            readable: events & EPOLLIN.rawValue != 0, writable: events & EPOLLOUT.rawValue != 0,
            failed: events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0)
    }

    func drain() {}

    /// The loop is stopping: fail what waits (`shutdown`) and let go of the descriptors.
    func close() {
        guard !closed else { return }
        closed = true
        connection.shutdown()
        if let registered { loop.remove(registered.fd, token: registered.token) }
        registered = nil
        loop.remove(timer.fd, token: timer.token)
        Glibc.close(timer.fd)
    }

    private func timerFired() {
        armed = nil
        connection.timePassed()
    }

    /// Brings the loop's registrations in line with the connection: its socket (which changes
    /// on reconnection), write interest, and the timer.
    private func sync() {
        guard !closed else { return }
        let fd = connection.fd
        let generation = connection.socketGeneration
        if let current = registered, current.fd != fd || current.generation != generation {
            // Closed already (the kernel dropped it from the epoll set): forget its token. A new
            // socket with the same number is not in the set yet (it is registered below), so the
            // `EPOLL_CTL_DEL` of `remove` finds nothing either way.
            loop.remove(current.fd, token: current.token)
            registered = nil
        }
        if fd >= 0 {
            let events = EPOLLIN.rawValue | (connection.wantsWrite ? EPOLLOUT.rawValue : 0)
            if let current = registered {
                if current.events != events {
                    loop.modify(fd, token: current.token, events: events)
                    registered = (fd, generation, current.token, events)
                }
            } else if let token = loop.register(fd, events: events, handler: self) {
                registered = (fd, generation, token, events)
            }
        }
        // Armed for the earliest deadline; a later one is left to the next firing (which
        // finds nothing due and re-arms), so a burst of commands costs one timerfd_settime.
        if let next = connection.nextDeadline, armed.map({ next < $0 }) ?? true {
            var spec = itimerspec()
            spec.it_value.tv_sec = Int(next / 1_000_000_000)
            spec.it_value.tv_nsec = Int(next % 1_000_000_000)
            timerfd_settime(timer.fd, Int32(TFD_TIMER_ABSTIME), &spec, nil)
            armed = next
        }
    }
}

extension QuotaService {
    /// This loop thread's link to `store` (made and registered on first use), or `nil` when it
    /// cannot be made (the store's own pool answers then). Thread-specific storage: one
    /// `pthread_getspecific` per request.
    func loopSender(on loop: EventLoop, store: RedisQuotaStore) -> QuotaLoopLink? {
        let key = QuotaLoopLinks.key
        if let raw = pthread_getspecific(key) {
            let link = Unmanaged<QuotaLoopLink>.fromOpaque(raw).takeUnretainedValue()
            if link.loop === loop && link.store === store { return link }
        }
        guard let link = QuotaLoopLink.make(on: loop, store: store) else { return nil }
        if let old = pthread_getspecific(key) { Unmanaged<QuotaLoopLink>.fromOpaque(old).release() }
        pthread_setspecific(key, Unmanaged.passRetained(link).toOpaque())
        return link
    }
}

/// The thread-specific key of `QuotaService.loopSender(on:store:)`; a thread's link is
/// released when the thread ends.
enum QuotaLoopLinks {
    static let key: pthread_key_t = {
        var key = pthread_key_t()
        let created = pthread_key_create(&key) { raw in
            if let raw { Unmanaged<AnyObject>.fromOpaque(raw).release() }
        }
        precondition(created == 0, "pthread_key_create: \(created)")
        return key
    }()
}
