/* Health.Check round-trip benchmark over a unix socket: sequential latency, and C connections with P
 * calls in flight each (one thread per connection), reporting median/p99 latency and throughput.
 *   bench_rpc -s SOCK [-n SEQ_CALLS] [-c CONNS] [-p IN_FLIGHT] [-N CONC_CALLS] [--label NAME]
 *   bench_rpc --floor [-n CALLS]     (raw echo round trip: the kernel's share of every call)
 * Prints one "key=value" line per mode for bench/rpc/run.sh to collect. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "health.pb-c.h"
#include "ttrpc/addr.h"
#include "ttrpc/client.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int dial(const char *sock, struct ttrpc_client *c)
{
    struct ka_addr a;
    ka_err e;
    char uri[200];
    snprintf(uri, sizeof(uri), "unix://%s", sock);
    if (ka_addr_parse(uri, &a, &e) < 0)
        return -1;
    int fd = ka_addr_dial(&a, 1000, &e);
    if (fd < 0) {
        fprintf(stderr, "bench_rpc: %s\n", e.msg);
        return -1;
    }
    ttrpc_client_init(c, fd);
    return 0;
}

struct worker {
    const char *sock;
    int in_flight;
    size_t calls;
    uint64_t *lat; /* calls entries */
    int failed;
};

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    struct ttrpc_client c;
    Grpc__CheckRequest req = GRPC__CHECK_REQUEST__INIT;
    ka_err e;
    if (dial(w->sock, &c) < 0) {
        w->failed = 1;
        return NULL;
    }
    /* stream id -> send time; ids are 1,3,5... so index = id / 2 */
    uint64_t *sent = calloc(w->calls + 1, sizeof(uint64_t));
    size_t issued = 0, done = 0;
    while (done < w->calls) {
        while (issued < w->calls && issued - done < (size_t)w->in_flight) {
            uint32_t sid;
            uint64_t t = now_ns();
            if (ttrpc_client_queue(&c, "grpc.Health", "Check", &req.base, 0, &sid, &e) < 0) {
                w->failed = 1;
                goto out;
            }
            sent[sid / 2] = t;
            issued++;
        }
        if (ttrpc_client_flush(&c, &e) < 0) { /* the refilled window leaves in one write */
            w->failed = 1;
            goto out;
        }
        struct ttrpc_result res;
        if (ttrpc_client_recv(&c, &res, 10000, &e) < 0 || res.code != 0) {
            fprintf(stderr, "bench_rpc: %s\n", e.msg);
            w->failed = 1;
            goto out;
        }
        w->lat[done++] = now_ns() - sent[res.stream / 2];
        ttrpc_result_free(&res);
    }
out:
    free(sent);
    ttrpc_client_close(&c);
    return NULL;
}

static void report(const char *label, const char *mode, uint64_t *lat, size_t n, uint64_t elapsed_ns)
{
    double sum = 0;
    qsort(lat, n, sizeof(*lat), cmp_u64);
    for (size_t i = 0; i < n; i++)
        sum += (double)lat[i];
    printf("label=%s mode=%s calls=%zu median_us=%.2f mean_us=%.2f p99_us=%.2f throughput_rps=%.0f\n", label,
           mode, n, lat[n / 2] / 1e3, sum / (double)n / 1e3, lat[(n * 99) / 100] / 1e3,
           n / (elapsed_ns / 1e9));
    fflush(stdout);
}

/* The machine's floor: the same-sized request/reply bytes bounced by a trivial blocking echo process over a
 * unix socket pair, i.e. the kernel round trip any server pays before doing any work. */
static int floor_run(size_t n)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        char b[256];
        close(sv[0]);
        for (;;) {
            ssize_t r = read(sv[1], b, sizeof(b));
            if (r <= 0 || write(sv[1], b, 16) != 16) /* a Health.Check reply frame is 16 bytes */
                _exit(0);
        }
    }
    close(sv[1]);
    uint64_t *lat = calloc(n, sizeof(uint64_t));
    char req[40] = {0}, rep[64];
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        uint64_t t = now_ns();
        if (write(sv[0], req, sizeof(req)) != (ssize_t)sizeof(req) || read(sv[0], rep, sizeof(rep)) <= 0)
            return -1;
        lat[i] = now_ns() - t;
    }
    report("echo-floor", "sequential", lat, n, now_ns() - t0);
    close(sv[0]);
    waitpid(pid, NULL, 0);
    free(lat);
    return 0;
}

int main(int argc, char **argv)
{
    const char *sock = NULL, *label = "server";
    size_t seq = 20000, conc = 200000;
    int conns = 8, in_flight = 16;
    static const struct option opts[] = {
        {"label", required_argument, NULL, 'L'}, {"floor", no_argument, NULL, 'F'}, {NULL, 0, NULL, 0}};
    bool floor_only = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "s:n:c:p:N:", opts, NULL)) != -1) {
        switch (opt) {
        case 's':
            sock = optarg;
            break;
        case 'n':
            seq = strtoul(optarg, NULL, 10);
            break;
        case 'c':
            conns = atoi(optarg);
            break;
        case 'p':
            in_flight = atoi(optarg);
            break;
        case 'N':
            conc = strtoul(optarg, NULL, 10);
            break;
        case 'L':
            label = optarg;
            break;
        case 'F':
            floor_only = true;
            break;
        default:
            return 2;
        }
    }
    if (floor_only)
        return floor_run(seq) < 0 ? 1 : 0;
    if (!sock || conns < 1 || in_flight < 1 || seq < 100 || conc < 100) {
        fprintf(stderr,
                "usage: bench_rpc -s SOCK [-n SEQ] [-c CONNS] [-p IN_FLIGHT] [-N CONC] [--label L]\n");
        return 2;
    }

    /* sequential: one call at a time on one connection */
    struct worker w = {.sock = sock, .in_flight = 1, .calls = seq, .lat = calloc(seq, sizeof(uint64_t))};
    uint64_t t0 = now_ns();
    run_worker(&w);
    if (w.failed)
        return 1;
    report(label, "sequential", w.lat, seq, now_ns() - t0);
    free(w.lat);

    /* concurrent: conns connections x in_flight pipelined calls */
    size_t per = conc / (size_t)conns;
    struct worker *ws = calloc((size_t)conns, sizeof(*ws));
    pthread_t *th = calloc((size_t)conns, sizeof(*th));
    uint64_t *all = calloc(per * (size_t)conns, sizeof(uint64_t));
    t0 = now_ns();
    for (int i = 0; i < conns; i++) {
        ws[i] =
            (struct worker){.sock = sock, .in_flight = in_flight, .calls = per, .lat = all + per * (size_t)i};
        pthread_create(&th[i], NULL, run_worker, &ws[i]);
    }
    int failed = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(th[i], NULL);
        failed |= ws[i].failed;
    }
    uint64_t elapsed = now_ns() - t0;
    if (failed)
        return 1;
    char mode[64];
    snprintf(mode, sizeof(mode), "%dx%d", conns, in_flight);
    report(label, mode, all, per * (size_t)conns, elapsed);
    free(all);
    free(ws);
    free(th);
    return 0;
}
