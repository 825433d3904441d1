import Atomics
import Dispatch
import GuidonMetrics
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// guidond's I/O: event-loop threads, each serving its share of the connections, and the
/// listening socket, accepted on the first loop.
///
/// Purpose-built rather than a general networking framework: a request is a line and a reply a
/// line, so a loop needs one `recv`, one `send` and no allocation per read burst; what a
/// general pipeline adds per round trip shows up directly in a sidecar's latency.
final class Server: Sendable {
    let loops: [EventLoop]
    let group: LoopGroup
    private let acceptor: Acceptor

    /// `threads` loops serving `socket` (each loop's thread starts here). The first answers
    /// every connection until it is saturated with work a second core pays for (`LoopGroup`).
    init(
        threads: Int, socket: ListeningSocket, service: ServiceContext, logger: Logger, policy: LoopGroup.Policy = LoopGroup.Policy()
    ) throws(StartupError) {
        var loops: [EventLoop] = []
        for i in 0..<max(1, threads) {
            do throws(EventLoop.Failure) {
                loops.append(try EventLoop(name: "guidon-loop-\(i)"))
            } catch {
                throw StartupError(description: "cannot start the event loops: \(error)")
            }
        }
        self.loops = loops
        if let observability = service.observability, observability.loopsNeedCounters {
            let registry = observability.registry
            // The counters' layout for a new snapshot is built on the reload thread, not by the
            // first loop to take it (about a millisecond for 10,000 flags).
            service.store.beforePublish { _ = registry.layout(for: $0.snapshot) }
        }
        let configs = loops.map { _ in
            LoopConfig(store: service.store, counters: service.observability?.makeCounters(serving: service.store.current.snapshot))
        }
        group = LoopGroup(loops: loops, configs: configs, policy: policy)
        for loop in loops { loop.start() }
        service.store.onPublish { [loops] in
            for (loop, config) in zip(loops, configs) { loop.execute { config.refresh() } }
        }
        acceptor = Acceptor(socket: socket, group: group, service: service, logger: logger)
        do {
            try acceptor.start()
        } catch {
            for loop in loops { loop.stop() }
            throw error
        }
    }

    /// Stops accepting and closes the listening socket; returns once it is closed.
    func closeListener() {
        let closed = DispatchSemaphore(value: 0)
        acceptor.loop.execute { [acceptor] in
            acceptor.close()
            closed.signal()
        }
        closed.wait()
    }

    /// Asks every connection to answer what it has received, write it out and close; waits
    /// until all have closed or `timeout` has passed. Returns whether all closed.
    func drain(_ connections: Connections, timeout: Duration) -> Bool {
        connections.stopAdmitting()
        // Before the loops are told: a connection moving meanwhile drains when it arrives.
        group.draining.store(true, ordering: .relaxed)
        for loop in loops { loop.drainAll() }
        let deadline = ContinuousClock.now + timeout
        while connections.count > 0 {
            if ContinuousClock.now >= deadline { return false }
            usleep(2_000)
        }
        return true
    }

    /// Closes whatever is still open and stops the loops' threads.
    func stop() {
        for loop in loops { loop.stop() }
    }
}
