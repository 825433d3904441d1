/* A C client for guidond that measures round trips, one request at a time or pipelined.
 *
 *   cc -O2 -o rtt rtt.c
 *   ./rtt SOCKET [REQUESTS] [PIPELINE] [LINE]
 *
 * Sends LINE (default: an eval of new-checkout with a small context) REQUESTS times, PIPELINE
 * requests per write (default 1: wait for each reply before the next request), and prints the
 * mean, median and 99th percentile round trip, and the throughput. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s SOCKET [REQUESTS] [PIPELINE] [LINE]\n", argv[0]); return 2; }
    int n = argc > 2 ? atoi(argv[2]) : 100000;
    int depth = argc > 3 ? atoi(argv[3]) : 1;
    const char *line = argc > 4 ? argv[4]
        : "{\"op\":\"eval\",\"flag\":\"new-checkout\",\"context\":{\"targetingKey\":\"user-42\",\"tier\":\"gold\"}}";
    size_t len = strlen(line);
    char *batch = malloc((len + 1) * depth);
    for (int i = 0; i < depth; i++) { memcpy(batch + i * (len + 1), line, len); batch[i * (len + 1) + len] = '\n'; }

    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("connect"); return 1; }

    int rounds = n / depth;
    double *samples = malloc(sizeof(double) * rounds);
    static char buf[1 << 20];
    double start = now_us();
    for (int r = 0; r < rounds; r++) {
        double t0 = now_us();
        if (write(fd, batch, (len + 1) * depth) < 0) { perror("write"); return 1; }
        int lines = 0;
        while (lines < depth) {
            ssize_t got = read(fd, buf, sizeof buf);
            if (got <= 0) { fprintf(stderr, "connection closed\n"); return 1; }
            for (ssize_t i = 0; i < got; i++) lines += buf[i] == '\n';
        }
        samples[r] = now_us() - t0;
    }
    double total = now_us() - start;
    qsort(samples, rounds, sizeof(double), cmp);
    double sum = 0;
    for (int r = 0; r < rounds; r++) sum += samples[r];
    printf("%d requests, %d per write: round trip mean %.1f us, p50 %.1f us, p99 %.1f us; %.0f requests/s\n",
           rounds * depth, depth, sum / rounds, samples[rounds / 2], samples[rounds * 99 / 100],
           rounds * depth / (total / 1e6));
    return 0;
}
