import Foundation
import GuidonQuota
import Logging
import Testing

/// A scratch directory under /tmp (short, so socket paths fit), removed by `remove()`.
struct ScratchDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/guidon-quota-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp failed") }
        path = String(cString: made)
    }

    init(existing path: String) { self.path = path }

    func file(_ name: String) -> String { "\(path)/\(name)" }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

let quietLogger = Logger(label: "guidon.quota.test") { _ in SwiftLogNoOpLogHandler() }

/// A clock tests move by hand.
final class ManualClock: Sendable {
    private let value: Mutex<Int64>
    init(_ start: Int64) { value = Mutex(start) }
    var now: Int64 { value.withLock { $0 } }
    func set(_ t: Int64) { value.withLock { $0 = t } }
    var function: @Sendable () -> Int64 { { self.now } }
}

import Synchronization

/// Runs `body(i)` on `count` threads started together; returns the results in order.
func onThreads<T: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) -> T) -> [T] {
    let results = Mutex([T?](repeating: nil, count: count))
    let group = DispatchGroup()
    let start = DispatchSemaphore(value: 0)
    var threads: [Thread] = []
    for i in 0..<count {
        group.enter()
        let thread = Thread {
            start.wait()
            let value = body(i)
            results.withLock { $0[i] = value }
            group.leave()
        }
        thread.stackSize = 1 << 20
        threads.append(thread)
        thread.start()
    }
    for _ in 0..<count { start.signal() }
    group.wait()
    return results.withLock { $0.map { $0! } }
}

/// A `consume` with the usual defaults.
func consumeRequest(
    _ limits: [QuotaLimit], tenant: String = "t1", user: String? = "u1", feature: String = "video", amount: Int64 = 1,
    key: String? = nil, now: Int64, zone: TimeZoneRules = .utc
) -> QuotaRequest {
    QuotaRequest(subject: QuotaSubject(feature: feature, tenant: tenant, user: user), limits: limits, zone: zone, amount: amount,
                 idempotencyKey: key, now: now)
}

/// A synchronous wrapper for any store's `consume`.
func consume(_ store: any QuotaStore, _ request: QuotaRequest) throws -> QuotaAnswer {
    let box = Mutex<Result<QuotaAnswer, QuotaStoreError>?>(nil)
    let done = DispatchSemaphore(value: 0)
    store.consume(request) { result in
        box.withLock { $0 = result }
        done.signal()
    }
    guard done.wait(timeout: .now() + 10) == .success else { throw TestFailure("no answer within 10 s") }
    return try box.withLock { $0! }.get()
}

func usage(_ store: any QuotaStore, _ request: QuotaUsageRequest) throws -> [QuotaLimitStatus] {
    let box = Mutex<Result<[QuotaLimitStatus], QuotaStoreError>?>(nil)
    let done = DispatchSemaphore(value: 0)
    store.usage(request) { result in
        box.withLock { $0 = result }
        done.signal()
    }
    guard done.wait(timeout: .now() + 10) == .success else { throw TestFailure("no answer within 10 s") }
    return try box.withLock { $0! }.get()
}

func reset(_ store: any QuotaStore, _ subject: QuotaSubject) throws -> Int {
    let box = Mutex<Result<Int, QuotaStoreError>?>(nil)
    let done = DispatchSemaphore(value: 0)
    store.reset(subject) { result in
        box.withLock { $0 = result }
        done.signal()
    }
    guard done.wait(timeout: .now() + 10) == .success else { throw TestFailure("no answer within 10 s") }
    return try box.withLock { $0! }.get()
}

/// Unix seconds of 2026-06-15T12:00:00Z, a Monday.
let june15: Int64 = 1_781_524_800
