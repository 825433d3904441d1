/* uring-echo: the io_uring twin of protocol/examples/c/echo-server.c --epoll.
 *
 * One thread, one io_uring, raw syscalls (io_uring_setup / io_uring_enter / io_uring_register
 * and mmap; no liburing). For every request line received on a Unix stream connection it sends
 * one fixed reply line (the same 110-byte reply echo-server.c sends), so /tmp/many can drive it.
 *
 *   cc -O2 -o uring-echo uring-echo.c && ./uring-echo SOCKET [OPTIONS]
 *   /tmp/many SOCKET 16 1000000          # many.c from protocol/examples/c
 *   (measured fastest on the 2-core 6.18 VM: --best; with no flags at all it is ~2x slower than
 *   epoll, because completions then arrive as signal-style task_work interrupts)
 *
 * OPTIONS (all off by default; --best = --defer --fixed --multishot --regring):
 *   --single     IORING_SETUP_SINGLE_ISSUER
 *   --coop       IORING_SETUP_COOP_TASKRUN (completions are not delivered by interrupting us)
 *   --defer      IORING_SETUP_DEFER_TASKRUN (+SINGLE_ISSUER): completion work runs only inside
 *                our io_uring_enter(GETEVENTS)
 *   --fixed      registered (fixed) files: the listener is registered, accept installs each
 *                connection straight into the fixed table (IORING_FILE_INDEX_ALLOC), recv/send
 *                use IOSQE_FIXED_FILE, close is IORING_OP_CLOSE on the slot
 *   --multishot  one multishot RECV per connection over a provided-buffer ring
 *                (IORING_REGISTER_PBUF_RING), re-armed only when the kernel drops it
 *                (default: one single-shot RECV into a per-connection buffer, re-queued
 *                after every completion)
 *   --pollfirst  IORING_RECVSEND_POLL_FIRST on single-shot RECVs (skip the doomed first try)
 *   --regring    register the ring fd (IORING_ENTER_REGISTERED_RING)
 *   --spin NS    burn NS ns of user CPU per request line (stand-in for a real server's work)
 *
 * Loop: multishot ACCEPT; per connection one RECV outstanding; each RECV completion counts the
 * '\n's and queues one SEND (MSG_WAITALL, IOSQE_CQE_SKIP_SUCCESS: no CQE unless it fails) of
 * that many replies from a constant buffer, plus the next RECV in single-shot mode. Everything
 * queued while draining the CQ goes to the kernel in the next io_uring_enter(to_submit,
 * min_complete=1, GETEVENTS): one system call per batch. Partial lines are carried over only
 * in the sense that a request split across reads is answered when its '\n' arrives. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

static const char reply[] =
    "{\"ok\":true,\"configVersion\":\"echo\",\"flag\":\"new-checkout\",\"value\":true,\"variant\":\"on\",\"reason\":\"TARGETING_MATCH\"}\n";
#define RLEN (sizeof reply - 1)
#define MAXREP 512                 /* replies per SEND */
static char out[MAXREP * RLEN];

#define ENTRIES 1024
#define MAXCONN 4096
#define BUFSZ 4096
#define NBUF 512                   /* provided buffers (power of two) */
#define BGID 1

enum { T_ACCEPT = 1, T_RECV, T_SEND, T_CLOSE };
#define UD(t, c) (((uint64_t)(t) << 32) | (uint32_t)(c))

static int ring_fd, enter_fd;
static unsigned enter_flags;
static unsigned *sq_tail, *sq_head, sq_mask, *cq_head, *cq_tail, cq_mask;
static struct io_uring_sqe *sqes;
static struct io_uring_cqe *cqes;
static unsigned sq_local_tail, pending;
static int o_fixed, o_multishot, o_pollfirst;
static int lfd_target;             /* listener: fd, or fixed slot 0 */
static struct io_uring_buf_ring *br;
static char *bufs;                 /* NBUF * BUFSZ for the buffer ring */
static char (*cbuf)[BUFSZ];        /* per-connection buffers for single-shot RECV */
static unsigned short br_tail;
static double spin_iters;          /* calibrated loop iterations per request (--spin) */

static void burn(double iters) { for (long i = (long)iters; i > 0; i--) __asm__ volatile("" ::: "memory"); }
static double now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static double calibrate(double ns) {  /* iterations that take ns nanoseconds */
    double best = 1e30;
    for (int k = 0; k < 5; k++) { double t0 = now_ns(); burn(1e7); double t = now_ns() - t0; if (t < best) best = t; }
    return ns * 1e7 / best;
}

static int sys_setup(unsigned n, struct io_uring_params *p) { return (int)syscall(__NR_io_uring_setup, n, p); }
static int sys_enter(unsigned sub, unsigned minc, unsigned fl) {
    return (int)syscall(__NR_io_uring_enter, enter_fd, sub, minc, fl | enter_flags, NULL, 0);
}
static int sys_register(unsigned op, void *arg, unsigned n) { return (int)syscall(__NR_io_uring_register, ring_fd, op, arg, n); }

static void flush(void) {
    __atomic_store_n(sq_tail, sq_local_tail, __ATOMIC_RELEASE);
    while (pending) {
        int r = sys_enter(pending, 0, 0);
        if (r < 0) { if (errno == EINTR) continue; perror("io_uring_enter"); exit(1); }
        pending -= (unsigned)r;
    }
}

static struct io_uring_sqe *get_sqe(void) {
    if (sq_local_tail - __atomic_load_n(sq_head, __ATOMIC_ACQUIRE) >= ENTRIES) flush();
    struct io_uring_sqe *s = &sqes[sq_local_tail & sq_mask];
    memset(s, 0, sizeof *s);
    sq_local_tail++; pending++;
    return s;
}

static void q_accept(void) {
    struct io_uring_sqe *s = get_sqe();
    s->opcode = IORING_OP_ACCEPT;
    s->fd = lfd_target;
    s->ioprio = IORING_ACCEPT_MULTISHOT;
    if (o_fixed) { s->flags = IOSQE_FIXED_FILE; s->file_index = IORING_FILE_INDEX_ALLOC; }
    s->user_data = UD(T_ACCEPT, 0);
}

static void q_recv(int c) {
    struct io_uring_sqe *s = get_sqe();
    s->opcode = IORING_OP_RECV;
    s->fd = c;
    if (o_fixed) s->flags |= IOSQE_FIXED_FILE;
    if (o_multishot) {
        s->ioprio = IORING_RECV_MULTISHOT;
        s->flags |= IOSQE_BUFFER_SELECT;
        s->buf_group = BGID;
    } else {
        s->addr = (uintptr_t)cbuf[c];
        s->len = BUFSZ;
        if (o_pollfirst) s->ioprio = IORING_RECVSEND_POLL_FIRST;
    }
    s->user_data = UD(T_RECV, c);
}

static void q_send(int c, size_t n) {
    while (n) {
        size_t k = n < MAXREP ? n : MAXREP;
        struct io_uring_sqe *s = get_sqe();
        s->opcode = IORING_OP_SEND;
        s->fd = c;
        s->flags = IOSQE_CQE_SKIP_SUCCESS | (o_fixed ? IOSQE_FIXED_FILE : 0);
        s->addr = (uintptr_t)out;
        s->len = (unsigned)(k * RLEN);
        s->msg_flags = MSG_WAITALL | MSG_NOSIGNAL;
        s->user_data = UD(T_SEND, c);
        n -= k;
    }
}

static void q_close(int c) {
    if (!o_fixed) { close(c); return; }
    struct io_uring_sqe *s = get_sqe();
    s->opcode = IORING_OP_CLOSE;
    s->file_index = (unsigned)c + 1;
    s->flags = IOSQE_CQE_SKIP_SUCCESS;
    s->user_data = UD(T_CLOSE, c);
}

static void recycle(unsigned bid) {
    struct io_uring_buf *b = &br->bufs[br_tail & (NBUF - 1)];
    b->addr = (uintptr_t)(bufs + (size_t)bid * BUFSZ);
    b->len = BUFSZ;
    b->bid = (unsigned short)bid;
    br_tail++;
    __atomic_store_n(&br->tail, br_tail, __ATOMIC_RELEASE);
}

static size_t lines(const char *p, int n) {
    size_t k = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++) k++;
    if (spin_iters > 0) burn(spin_iters * (double)k);
    return k;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s SOCKET [--single] [--coop] [--defer] [--fixed] [--multishot] [--pollfirst] [--regring] [--best] [--spin NS]\n", argv[0]); return 2; }
    unsigned setup_flags = 0; int o_regring = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--single")) setup_flags |= IORING_SETUP_SINGLE_ISSUER;
        else if (!strcmp(a, "--coop")) setup_flags |= IORING_SETUP_COOP_TASKRUN;
        else if (!strcmp(a, "--defer")) setup_flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
        else if (!strcmp(a, "--fixed")) o_fixed = 1;
        else if (!strcmp(a, "--multishot")) o_multishot = 1;
        else if (!strcmp(a, "--pollfirst")) o_pollfirst = 1;
        else if (!strcmp(a, "--regring")) o_regring = 1;
        else if (!strcmp(a, "--spin") && i + 1 < argc) spin_iters = calibrate(atof(argv[++i]));
        else if (!strcmp(a, "--best")) { setup_flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN; o_fixed = o_multishot = o_regring = 1; }
        else { fprintf(stderr, "unknown option %s\n", a); return 2; }
    }
    for (size_t i = 0; i < MAXREP; i++) memcpy(out + i * RLEN, reply, RLEN);

    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
    unlink(argv[1]);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 128) != 0) { perror("bind"); return 1; }

    struct io_uring_params p = {.flags = setup_flags | IORING_SETUP_CQSIZE, .cq_entries = 4 * ENTRIES};
    ring_fd = enter_fd = sys_setup(ENTRIES, &p);
    if (ring_fd < 0) { perror("io_uring_setup"); return 1; }
    if (!(p.features & IORING_FEAT_SINGLE_MMAP)) { fprintf(stderr, "needs IORING_FEAT_SINGLE_MMAP\n"); return 1; }
    size_t sq_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    size_t rsz = sq_sz > cq_sz ? sq_sz : cq_sz;
    char *rp = mmap(NULL, rsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQ_RING);
    sqes = mmap(NULL, p.sq_entries * sizeof *sqes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQES);
    if (rp == MAP_FAILED || sqes == MAP_FAILED) { perror("mmap"); return 1; }
    sq_head = (unsigned *)(rp + p.sq_off.head); sq_tail = (unsigned *)(rp + p.sq_off.tail);
    sq_mask = *(unsigned *)(rp + p.sq_off.ring_mask);
    unsigned *sq_array = (unsigned *)(rp + p.sq_off.array);
    for (unsigned i = 0; i < p.sq_entries; i++) sq_array[i] = i;  /* identity: never touched again */
    cq_head = (unsigned *)(rp + p.cq_off.head); cq_tail = (unsigned *)(rp + p.cq_off.tail);
    cq_mask = *(unsigned *)(rp + p.cq_off.ring_mask);
    cqes = (struct io_uring_cqe *)(rp + p.cq_off.cqes);
    sq_local_tail = *sq_tail;

    if (o_regring) {
        struct io_uring_rsrc_update up = {.offset = -1U, .data = (uint64_t)ring_fd};
        if (sys_register(IORING_REGISTER_RING_FDS, &up, 1) != 1) { perror("register ring fd"); return 1; }
        enter_fd = (int)up.offset; enter_flags = IORING_ENTER_REGISTERED_RING;
    }
    lfd_target = lfd;
    if (o_fixed) {  /* slot 0 = listener, the rest free for accepted connections */
        int *fds = malloc(MAXCONN * sizeof *fds);
        for (int i = 0; i < MAXCONN; i++) fds[i] = -1;
        fds[0] = lfd;
        if (sys_register(IORING_REGISTER_FILES, fds, MAXCONN) != 0) { perror("register files"); return 1; }
        struct io_uring_file_index_range range = {.off = 1, .len = MAXCONN - 1};
        if (sys_register(IORING_REGISTER_FILE_ALLOC_RANGE, &range, 0) != 0) { perror("file alloc range"); return 1; }
        lfd_target = 0;
    }
    if (o_multishot) {
        br = mmap(NULL, NBUF * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        bufs = mmap(NULL, (size_t)NBUF * BUFSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        struct io_uring_buf_reg reg = {.ring_addr = (uintptr_t)br, .ring_entries = NBUF, .bgid = BGID};
        if (sys_register(IORING_REGISTER_PBUF_RING, &reg, 1) != 0) { perror("register pbuf ring"); return 1; }
        for (unsigned i = 0; i < NBUF; i++) recycle(i);
    } else {
        cbuf = calloc(MAXCONN + 64, BUFSZ);  /* indexed by fd or fixed slot */
    }
    fprintf(stderr, "uring-echo: flags=%#x fixed=%d multishot=%d pollfirst=%d regring=%d\n",
            setup_flags, o_fixed, o_multishot, o_pollfirst, o_regring);

    q_accept();
    for (;;) {
        __atomic_store_n(sq_tail, sq_local_tail, __ATOMIC_RELEASE);
        int r = sys_enter(pending, 1, IORING_ENTER_GETEVENTS);
        if (r < 0) { if (errno == EINTR || errno == EAGAIN || errno == EBUSY) continue; perror("io_uring_enter"); return 1; }
        pending -= (unsigned)r;
        unsigned head = *cq_head, tail = __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE);
        for (; head != tail; head++) {
            struct io_uring_cqe *cqe = &cqes[head & cq_mask];
            int type = (int)(cqe->user_data >> 32), c = (int)(uint32_t)cqe->user_data, res = cqe->res;
            unsigned fl = cqe->flags;
            switch (type) {
            case T_ACCEPT:
                if (res >= 0) {
                    if (!o_fixed && res >= MAXCONN) { close(res); }
                    else q_recv(res);
                } else if (res != -EINTR && res != -ECONNABORTED) fprintf(stderr, "accept: %s\n", strerror(-res));
                if (!(fl & IORING_CQE_F_MORE)) q_accept();
                break;
            case T_RECV:
                if (res <= 0) {
                    if (res == -ENOBUFS) { q_recv(c); break; }  /* buffer ring ran dry: re-arm */
                    q_close(c);                               /* EOF or error */
                    break;
                }
                if (o_multishot) {
                    unsigned bid = fl >> IORING_CQE_BUFFER_SHIFT;
                    q_send(c, lines(bufs + (size_t)bid * BUFSZ, res));
                    recycle(bid);
                    if (!(fl & IORING_CQE_F_MORE)) q_recv(c);
                } else {
                    q_send(c, lines(cbuf[c], res));
                    q_recv(c);
                }
                break;
            case T_SEND:  /* only failures post a CQE; the recv side sees the close */
                if (res != -EPIPE && res != -ECONNRESET) fprintf(stderr, "send: %s\n", strerror(-res));
                break;
            case T_CLOSE:
                if (res < 0) fprintf(stderr, "close: %s\n", strerror(-res));
                break;
            }
        }
        __atomic_store_n(cq_head, head, __ATOMIC_RELEASE);
    }
}
