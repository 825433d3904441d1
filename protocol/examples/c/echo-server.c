/* A baseline for rtt.c and guidon-bench --socket: a minimal Unix-socket server that answers
 * every request line with one fixed reply line (no parsing, no JSON). What guidond's round trip
 * and throughput are compared against.
 *
 * Default: one connection at a time, the server blocked in read(2).
 * --epoll: one thread, one epoll_wait(2) over the listener and every connection (as Redis does):
 * the cheapest way one thread can serve many connections. Its reply also carries "ok" and
 * "configVersion", so guidon-bench accepts it as a daemon to attach to.
 *
 * NS (optional, after the mode): burn NS nanoseconds of user CPU per request line, a stand-in
 * for a real server's work (how docs/PERFORMANCE.md compares epoll with uring-echo.c).
 *
 *   cc -O2 -o echo-server echo-server.c && ./echo-server SOCKET [--epoll] [NS] */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <stdlib.h>
#include <time.h>
static double spin_iters;
static void burn(double iters) { for (long i = (long)iters; i > 0; i--) __asm__ volatile("" ::: "memory"); }
static double now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static double calibrate(double ns) {
    double best = 1e30;
    for (int k = 0; k < 5; k++) { double t0 = now_ns(); burn(1e7); double t = now_ns() - t0; if (t < best) best = t; }
    return ns * 1e7 / best;
}

static const char reply[] =
    "{\"ok\":true,\"configVersion\":\"echo\",\"flag\":\"new-checkout\",\"value\":true,\"variant\":\"on\",\"reason\":\"TARGETING_MATCH\"}\n";
static char in[1 << 20], out[1 << 22];

/* Answers the complete lines in one read; returns 0 when the connection is done. */
static int answer(int fd) {
    ssize_t got = read(fd, in, sizeof in);
    if (got <= 0) return 0;
    size_t n = 0;
    for (ssize_t i = 0; i < got; i++)
        if (in[i] == '\n' && n + sizeof reply < sizeof out) { memcpy(out + n, reply, sizeof reply - 1); n += sizeof reply - 1; if (spin_iters > 0) burn(spin_iters); }
    for (size_t done = 0; done < n;) {  /* a full socket buffer: wait for room (tiny replies, rare) */
        ssize_t w = write(fd, out + done, n - done);
        if (w < 0) return 0;
        done += (size_t)w;
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s SOCKET [--epoll] [NS]\n", argv[0]); return 2; }
    int use_epoll = argc > 2 && strcmp(argv[2], "--epoll") == 0;
    if (argc > 3) spin_iters = calibrate(atof(argv[3]));
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
    unlink(argv[1]);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 128) != 0) { perror("bind"); return 1; }
    if (!use_epoll) {
        for (;;) {
            int fd = accept(lfd, NULL, NULL);
            if (fd < 0) continue;
            while (answer(fd)) {}
            close(fd);
        }
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event ready[256];
    for (;;) {
        int count = epoll_wait(ep, ready, 256, -1);
        for (int i = 0; i < count; i++) {
            int fd = ready[i].data.fd;
            if (fd == lfd) {
                int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0) continue;
                struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
            } else if (!answer(fd)) {
                close(fd);  /* also leaves the epoll set */
            }
        }
    }
}
