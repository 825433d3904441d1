// Counts heap allocations by interposing the allocator entry points in the executable and
// forwarding to glibc's internal implementations. The symbols defined here take precedence
// over libc's for every shared library the benchmark loads (the Swift runtime included).

#include "CAllocCounter.h"

#include <errno.h>
#include <stddef.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

static _Atomic uint64_t allocations = 0;
// The executable's own TLS lives in every thread's static TLS block, set up before the thread
// runs any code, so reading it from inside malloc is safe.
static _Thread_local uint64_t thread_allocations __attribute__((tls_model("initial-exec"))) = 0;

uint64_t guidon_alloc_count(void) { return allocations; }

uint64_t guidon_thread_alloc_count(void) { return thread_allocations; }

// Sanitizers bring allocators of their own; interposing them as well crashes the process
// (seen with ThreadSanitizer in the test bundle, which links guidon-bench). Count nothing then.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define GUIDON_ALLOC_COUNTER_DISABLED 1
#endif
#endif

#ifdef GUIDON_ALLOC_COUNTER_DISABLED

int guidon_alloc_counting(void) { return 0; }

#else

int guidon_alloc_counting(void) { return 1; }

void *malloc(size_t size) {
    allocations++;
    thread_allocations++;
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    allocations++;
    thread_allocations++;
    return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size) {
    allocations++;
    thread_allocations++;
    return __libc_realloc(pointer, size);
}

void *memalign(size_t alignment, size_t size) {
    allocations++;
    thread_allocations++;
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    allocations++;
    thread_allocations++;
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **result, size_t alignment, size_t size) {
    allocations++;
    thread_allocations++;
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    void *pointer = __libc_memalign(alignment, size);
    if (pointer == NULL) return ENOMEM;
    *result = pointer;
    return 0;
}

#endif
