import CLinux
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// The embedded store's flusher: takes the stripes' journals, writes them, keeps its own copy
/// of the counts (the replica) to rewrite the snapshot from and to find expired windows,
/// without ever scanning the stripes under their locks.
///
/// `@unchecked Sendable`: everything but `control` is touched by one thread at a time: by
/// `start` (recovery) before the thread exists, then only by the flusher thread.
final class Flusher: @unchecked Sendable {
    private let configuration: EmbeddedQuotaStore.Configuration
    private let stripes: [Stripe]
    private let logger: Logger
    private let mask: Int
    private var files: QuotaStateFiles
    private var counters: [CounterKey: Counter] = [:]
    private var receipts: [ReceiptKey: Receipt] = [:]
    /// One empty journal per stripe, swapped in at each flush (keeps their capacity).
    private var spares: [[UInt8]]
    /// Records taken from the stripes and not yet written (kept across a failed write).
    private var pending: [UInt8] = []
    private var lastExpiry: Int64 = 0
    private var lastWriteError: UInt64 = 0
    private var suppressedWriteErrors = 0

    private struct Control {
        var stopping = false
        /// Flushes asked for (`flushNow`) and flushes done.
        var requested: UInt64 = 0
        var done: UInt64 = 0
    }
    private let control = NIOLockedValueBox(Control())
    /// An eventfd: `stop` and `flushNow` write to it to cut the wait short.
    private let wakeFD: Int32

    init(configuration: EmbeddedQuotaStore.Configuration, stripes: [Stripe], logger: Logger) {
        self.configuration = configuration
        self.stripes = stripes
        self.logger = logger
        mask = stripes.count - 1
        files = QuotaStateFiles(directory: configuration.stateDirectory)
        spares = stripes.map { _ in
            var spare: [UInt8] = []
            spare.reserveCapacity(16 * 1024)
            return spare
        }
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
    }

    deinit {
        files.close()
        if wakeFD >= 0 { close(wakeFD) }
    }

    // MARK: - Before the thread starts

    /// Reads the state directory into the replica and the stripes.
    func recover() throws(QuotaStoreError) {
        let start = EmbeddedQuotaStore.monotonicNanos()
        let cut = try files.open(
            sizeHint: { bytes in self.counters.reserveCapacity(bytes / 56) },
            apply: { self.apply($0) })
        if cut > 0 {
            logger.warning("quota log ended with \(cut) bytes of an incomplete write (cut off): counts written in the last moments before a crash are lost")
        }
        dropExpired(now: configuration.clock(), inStripes: false)
        let perStripe = counters.count / stripes.count + counters.count / (4 * stripes.count) + 16
        for stripe in stripes { stripe.state.withLockedValue { $0.counters.reserveCapacity(perStripe) } }
        for (key, counter) in counters {
            stripes[EmbeddedQuotaStore.stripeIndex(feature: key.feature, tenant: key.tenant) & mask].state.withLockedValue { $0.counters[key] = counter }
        }
        for (key, receipt) in receipts {
            stripes[EmbeddedQuotaStore.stripeIndex(feature: key.feature, tenant: key.tenant) & mask].state.withLockedValue { $0.receipts[key] = receipt }
        }
        let ms = Double(EmbeddedQuotaStore.monotonicNanos() - start) / 1e6
        logger.info("quota state read from \(configuration.stateDirectory): \(counters.count) counts, \(receipts.count) idempotency keys in \(ms) ms")
    }

    // MARK: - From other threads

    func stop() {
        control.withLockedValue { $0.stopping = true }
        wake()
    }

    /// Returns once a flush that started after this call has finished.
    func flushNow() {
        let ticket = control.withLockedValue { control -> UInt64 in
            control.requested &+= 1
            return control.requested
        }
        wake()
        while control.withLockedValue({ $0.done < ticket && !$0.stopping }) { usleep(1000) }
    }

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    // MARK: - On the flusher thread

    func run() {
        let (seconds, attoseconds) = configuration.flushInterval.components
        let intervalMs = Int32(max(1, min(Int64(60_000), seconds * 1000 + attoseconds / 1_000_000_000_000_000)))
        while true {
            var fds = pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)
            _ = poll(&fds, 1, intervalMs)
            var value: UInt64 = 0
            _ = read(wakeFD, &value, 8)
            let (stopping, requested) = control.withLockedValue { ($0.stopping, $0.requested) }
            flush()
            let now = configuration.clock()
            if now - lastExpiry >= 5 || stopping {
                dropExpired(now: now, inStripes: true)
                lastExpiry = now
            }
            if stopping || (files.logBytes >= configuration.compactAfterBytes && files.logBytes >= files.snapshotBytes) {
                compact()
            }
            control.withLockedValue { $0.done = max($0.done, requested) }
            if stopping {
                files.close()
                return
            }
        }
    }

    /// Takes every stripe's journal and writes them as one frame.
    private func flush() {
        let before = pending.count
        for i in stripes.indices {
            stripes[i].state.withLockedValue { state in
                swap(&state.journal, &spares[i])
                state.generation &+= 1
            }
            pending += spares[i]
            spares[i].removeAll(keepingCapacity: true)
        }
        guard !pending.isEmpty else { return }
        do throws(QuotaStoreError) {
            try files.append(pending, sync: configuration.sync)
        } catch {
            reportWriteError(error)
            return
        }
        // Apply to the replica only what is now in the log (the whole pending buffer).
        _ = before
        pending.withUnsafeBytes { raw in
            var reader = QuotaRecordReader(raw)
            while let record = try? reader.next() { apply(record) }
        }
        pending.removeAll(keepingCapacity: pending.count <= 1 << 20)
    }

    /// Rewrites the snapshot from the replica and empties the log.
    private func compact() {
        var payload: [UInt8] = []
        payload.reserveCapacity((counters.count + receipts.count) * 64)
        for (key, counter) in counters { QuotaRecord.appendCounter(key, counter, to: &payload) }
        for (key, receipt) in receipts { QuotaRecord.appendReceipt(key, receipt, to: &payload) }
        do throws(QuotaStoreError) {
            try files.writeSnapshot(payload)
        } catch {
            reportWriteError(error)
        }
    }

    private func reportWriteError(_ error: QuotaStoreError) {
        // At most one line every 10 s: a full disk would otherwise log five lines a second.
        let now = EmbeddedQuotaStore.monotonicNanos()
        if now - lastWriteError >= 10_000_000_000 || lastWriteError == 0 {
            let suppressed = suppressedWriteErrors
            logger.error("quota counts not written (kept in memory, retried): \(error.message)\(suppressed > 0 ? " (\(suppressed) more since the last report)" : "")")
            lastWriteError = now
            suppressedWriteErrors = 0
        } else {
            suppressedWriteErrors += 1
        }
    }

    private func apply(_ record: QuotaRecord) {
        switch record {
        case .counter(let key, let counter):
            counters[key] = counter
        case .receipt(let key, let receipt):
            receipts[key] = receipt
        case .reset(let feature, let tenant, let user):
            for key in counters.keys where key.matches(feature: feature, tenant: tenant, user: user) {
                counters.removeValue(forKey: key)
            }
        }
    }

    /// Drops windows that ended `expiryGrace` ago and idempotency keys past their 24 hours (and
    /// the oldest past `maxReceipts`), from the replica and, when running, from the stripes.
    private func dropExpired(now: Int64, inStripes: Bool) {
        var doomedCounters: [CounterKey] = []
        for (key, counter) in counters where counter.resetAt + configuration.expiryGrace <= now { doomedCounters.append(key) }
        var doomedReceipts: [ReceiptKey] = []
        for (key, receipt) in receipts where receipt.expiresAt <= now { doomedReceipts.append(key) }
        let excess = receipts.count - doomedReceipts.count - configuration.maxReceipts
        if excess > 0 {
            let live = receipts.filter { $0.value.expiresAt > now }.sorted { $0.value.expiresAt < $1.value.expiresAt }
            doomedReceipts += live.prefix(excess).map(\.key)
            logger.warning("quota: more than \(configuration.maxReceipts) idempotency keys; the \(excess) oldest are forgotten early")
        }
        guard !doomedCounters.isEmpty || !doomedReceipts.isEmpty else { return }
        for key in doomedCounters { counters.removeValue(forKey: key) }
        for key in doomedReceipts { receipts.removeValue(forKey: key) }
        guard inStripes else { return }
        var byStripe = [([CounterKey], [ReceiptKey])](repeating: ([], []), count: stripes.count)
        for key in doomedCounters { byStripe[EmbeddedQuotaStore.stripeIndex(feature: key.feature, tenant: key.tenant) & mask].0.append(key) }
        for key in doomedReceipts { byStripe[EmbeddedQuotaStore.stripeIndex(feature: key.feature, tenant: key.tenant) & mask].1.append(key) }
        for (i, (counterKeys, receiptKeys)) in byStripe.enumerated() where !counterKeys.isEmpty || !receiptKeys.isEmpty {
            stripes[i].state.withLockedValue { state in
                for key in counterKeys { state.counters.removeValue(forKey: key) }
                for key in receiptKeys { state.receipts.removeValue(forKey: key) }
            }
        }
    }
}

extension EmbeddedQuotaStore {
    static func monotonicNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
