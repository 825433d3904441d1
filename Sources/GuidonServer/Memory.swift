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

    /// Hands freed heap memory back to the kernel (after a reload dropped the old snapshot).
    static func returnFreedMemory() {
        _ = malloc_trim(0)
    }
}
