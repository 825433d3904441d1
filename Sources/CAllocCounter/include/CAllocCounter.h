#ifndef GUIDON_ALLOC_COUNTER_H
#define GUIDON_ALLOC_COUNTER_H

#include <stdint.h>

/// Number of heap allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc,
/// memalign) made by the process since it started. Linked only into guidon-bench.
uint64_t guidon_alloc_count(void);

/// Number of heap allocations made by the calling thread (for tests that run beside others).
uint64_t guidon_thread_alloc_count(void);

/// 1 when allocations are counted; 0 in sanitizer builds, which keep their own allocator.
int guidon_alloc_counting(void);

#endif
