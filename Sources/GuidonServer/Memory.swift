import CMalloc

#if canImport(Glibc)
import Glibc
#endif

/// glibc malloc settings for a long-running daemon whose reloads build and drop large snapshots.
enum Memory {
    /// Limits glibc to `count` malloc arenas, unless `MALLOC_ARENA_MAX` is set in the environment.
    ///
    /// By default glibc gives threads their own arenas (up to eight per core) and keeps what a
    /// reload freed in the reload thread's arena, so peak RSS grows with every thread that ever
    /// compiled a snapshot. Call before starting threads.
    static func limitArenas(to count: Int32) {
        guard getenv("MALLOC_ARENA_MAX") == nil else { return }
        _ = mallopt(M_ARENA_MAX, count)
    }

    /// Turns glibc's fast bins off, unless `GLIBC_TUNABLES` sets `glibc.malloc.mxfast`.
    ///
    /// A compile frees each flag's parsed definition while it allocates the compiled flag. With
    /// fast bins, the small chunks freed pile up there and glibc coalesces them in bulk
    /// (`malloc_consolidate`) each time a larger free merges into the growing free space, then
    /// carves new small chunks out of it the slow way: about a fifth of a full compile's CPU
    /// time. Without them, a small free that misses the per-thread cache is coalesced at once.
    static func disableFastBins() {
        if let tunables = getenv("GLIBC_TUNABLES"), String(cString: tunables).contains("glibc.malloc.mxfast") { return }
        _ = mallopt(M_MXFAST, 0)
    }

    /// Hands freed heap memory back to the kernel (after a reload dropped the old snapshot).
    static func returnFreedMemory() {
        _ = malloc_trim(0)
    }
}
