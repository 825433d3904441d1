import GuidonJSON
import NIOConcurrencyHelpers
import NIOCore

/// Where a `watch` connection's event loop leaves events for the stream's consumer, who takes
/// them one at a time (`next`), possibly with a deadline (the reconnection back-off).
///
/// Bounded: a consumer that stops reading loses nothing silently. Past `capacity` buffered
/// events, the mailbox drops the rest and tells the consumer `overflowed` once it catches up;
/// the stream then reconnects and resynchronises, as the daemon's own back-log limit would make
/// it do anyway.
final class WatchMailbox: Sendable {
    enum Item: Sendable {
        case event(JSONObject)
        /// The connection (of the current generation) closed.
        case closed
        /// Events were dropped: the consumer must resynchronise.
        case overflowed
        /// The client shut down.
        case terminated
        /// The waiting task was cancelled.
        case cancelled
        /// The deadline passed.
        case timedOut
    }

    private struct State {
        var items = CircularBuffer<Item>()
        var overflowed = false
        var terminated = false
        /// Items of other generations (earlier connections) are not wanted any more.
        var generation = 0
        var waiter: CheckedContinuation<Item, Never>?
        /// Tells a late timer of an earlier wait from the current one.
        var waits = 0
    }

    private let state = NIOLockedValueBox(State())
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Starts a new connection's generation: what earlier connections left is dropped.
    func begin(generation: Int) {
        state.withLockedValue {
            $0.generation = generation
            $0.items.removeAll()
            $0.overflowed = false
        }
    }

    func push(_ item: Item, generation: Int) {
        let waiter: CheckedContinuation<Item, Never>? = state.withLockedValue { state in
            guard generation == state.generation, !state.terminated, !state.overflowed else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            if state.items.count >= capacity, case .event = item {
                state.overflowed = true
                state.items.append(.overflowed)
            } else {
                state.items.append(item)
            }
            return nil
        }
        waiter?.resume(returning: item)
    }

    /// Ends the stream: the waiting consumer (and every later `next`) gets `terminated`.
    func terminate() {
        let waiter: CheckedContinuation<Item, Never>? = state.withLockedValue { state in
            state.terminated = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: .terminated)
    }

    var isTerminated: Bool { state.withLockedValue { $0.terminated } }

    /// The next item, or `timedOut` at `deadline` (a timer on `eventLoop`), or `cancelled`.
    /// One consumer at a time.
    func next(until deadline: NIODeadline? = nil, on eventLoop: any EventLoop) async -> Item {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Item, Never>) in
                let (ready, wait): (Item?, Int) = state.withLockedValue { state in
                    if state.terminated { return (.terminated, 0) }
                    if let item = state.items.popFirst() { return (item, 0) }
                    if Task.isCancelled { return (.cancelled, 0) }
                    precondition(state.waiter == nil, "one consumer at a time")
                    state.waiter = continuation
                    state.waits += 1
                    return (nil, state.waits)
                }
                if let ready {
                    continuation.resume(returning: ready)
                } else if let deadline {
                    eventLoop.scheduleTask(deadline: deadline) { self.wake(wait, with: .timedOut) }
                }
            }
        } onCancel: {
            let waiter: CheckedContinuation<Item, Never>? = state.withLockedValue { state in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: .cancelled)
        }
    }

    private func wake(_ wait: Int, with item: Item) {
        let waiter: CheckedContinuation<Item, Never>? = state.withLockedValue { state in
            guard state.waits == wait, let waiter = state.waiter else { return nil }
            state.waiter = nil
            return waiter
        }
        waiter?.resume(returning: item)
    }
}
