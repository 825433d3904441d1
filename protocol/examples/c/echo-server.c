/* The baseline for rtt.c: a minimal single-threaded Unix-socket server that answers every
 * received chunk with a fixed reply line per request line (no parsing, no JSON). What guidond's
 * round trip is compared against. By default it blocks in read(2); with --epoll it waits in
 * epoll_wait(2) on a non-blocking socket first, as an event loop (and guidond) does.
 *
 *   cc -O2 -o echo-server echo-server.c && ./echo-server SOCKET [--epoll] */
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s SOCKET [--epoll]\n", argv[0]); return 2; }
    int use_epoll = argc > 2 && strcmp(argv[2], "--epoll") == 0;
    static const char reply[] =
        "{\"flag\":\"new-checkout\",\"value\":true,\"variant\":\"on\",\"reason\":\"TARGETING_MATCH\",\"metadata\":{}}\n";
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
    unlink(argv[1]);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 16) != 0) { perror("bind"); return 1; }
    static char in[1 << 20], out[1 << 22];
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) continue;
        int ep = -1;
        if (use_epoll) {
            fcntl(fd, F_SETFL, O_NONBLOCK);
            ep = epoll_create1(0);
            struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
        ssize_t got;
        for (;;) {
            if (use_epoll) {
                struct epoll_event ev;
                if (epoll_wait(ep, &ev, 1, -1) < 1) continue;
            }
            if ((got = read(fd, in, sizeof in)) <= 0) break;
            size_t n = 0;
            for (ssize_t i = 0; i < got; i++)
                if (in[i] == '\n' && n + sizeof reply < sizeof out) { memcpy(out + n, reply, sizeof reply - 1); n += sizeof reply - 1; }
            if (n && write(fd, out, n) < 0) break;
        }
        if (ep >= 0) close(ep);
        close(fd);
    }
}
