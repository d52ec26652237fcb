/* GetMetrics rendering on a fake /proc tree; the iptables child runner on a real event loop; guest
 * control helpers (probe address format, time validation). */
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest/iptables.h"
#include "guest/metrics.h"
#include "guest/sysctl_guest.h"
#include "loop/loop.h"
#include "util/fs.h"
#include "util/log.h"
#include "unit.h"

static char g_dir[128];

static const char *path(const char *rel)
{
    static char bufs[4][PATH_MAX];
    static int i;
    char *b = bufs[i++ % 4];
    snprintf(b, PATH_MAX, "%s/%s", g_dir, rel);
    return b;
}

static void put(const char *rel, const char *text)
{
    ka_err e;
    if (fs_create_file(path(rel), text, (size_t)-1, 0644, &e) < 0)
        printf("# %s\n", e.msg);
}

static void make_dirs(const char *root)
{
    snprintf(g_dir, sizeof(g_dir), "%s", root);
    ka_err e;
    fs_mkdir_p(path("self/fd"), 0755, &e);
    fs_mkdir_p(path("net"), 0755, &e);
}

static void cleanup_dir(void)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        printf("# cleanup failed\n");
}

/* A complete fake /proc. utime + stime = 4 s whatever the clock tick. */
static void fake_proc(void)
{
    char tmpl[] = "/tmp/ka-metrics-XXXXXX";
    make_dirs(mkdtemp(tmpl));
    long tck = sysconf(_SC_CLK_TCK);
    char stat[512];
    snprintf(
        stat, sizeof(stat),
        "1234 (ka (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 %ld %ld 5 7 20 0 3 0 12345 104857600 2560 "
        "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
        3 * tck, tck);
    put("self/stat", stat);
    put("self/status", "Name:\tkata-agent\nVmPeak:\t    1000 kB\nVmRSS:\t     800 kB\nThreads:\t3\n"
                       "voluntary_ctxt_switches:\t42\n");
    put("self/io", "rchar: 10\nwchar: 20\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 0\n"
                   "cancelled_write_bytes: 0\n");
    for (int i = 0; i < 4; i++) {
        char n[32];
        snprintf(n, sizeof(n), "self/fd/%d", i);
        put(n, "");
    }
    put("loadavg", "0.50 1.25 0.07 2/345 6789\n");
    put("stat", "cpu  100 2 30 4000 5 0 6 0 0 0\ncpu0 50 1 15 2000 2 0 3 0 0 0\ncpu2 50 1 15 2000 3 0 3\n"
                "intr 123 4 5\nctxt 999\n");
    put("vmstat", "nr_free_pages 1234\npgfault 99\nbogus\n");
    put("net/dev",
        "Inter-|   Receive                            |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes ...\n"
        "    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0 "
        "    0       0          0\n"
        "  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"
        "we\"i\\rd: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"
        "  short: 1 2 3\n");
    put("diskstats", "   8       0 sda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n"
                     "   7       0 loop0 1 2 3 4 5 6 7 8 9 10 11\n"
                     "   7       1 broken 1 2\n");
    put("meminfo",
        "MemTotal:       1000 kB\nMemFree:  garbage\nHugePages_Total:       2\nDirectMap2M:    2048 kB\n"
        "Active(anon):     10 kB\n");
}

static char *render(uint64_t count)
{
    char *out = NULL;
    size_t len = 0;
    ka_err e;
    if (metrics_render(g_dir, count, &out, &len, &e) < 0) {
        printf("# %s\n", e.msg);
        return NULL;
    }
    CHECK_INT(len, strlen(out));
    return out;
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    printf("# missing line: %s\n", line);
    return false;
}

TEST(agent_process)
{
    fake_proc();
    char *t = render(7);
    char line[128];
    CHECK(t != NULL);
    if (!t)
        return;
    CHECK(has_line(t, "# HELP kata_agent_scrape_count Metrics scrape count"));
    CHECK(has_line(t, "# TYPE kata_agent_scrape_count counter"));
    CHECK(has_line(t, "kata_agent_scrape_count 7"));
    CHECK(has_line(t, "kata_agent_threads 3"));
    CHECK(has_line(t, "kata_agent_fds 3"));
    CHECK(has_line(t, "kata_agent_total_time 4"));
    CHECK(has_line(t, "kata_agent_total_vm 104857600"));
    snprintf(line, sizeof(line), "kata_agent_total_rss %ld", 2560L * sysconf(_SC_PAGESIZE));
    CHECK(has_line(t, line));
    CHECK(has_line(t, "kata_agent_proc_stat{item=\"cutime\"} 5"));
    CHECK(has_line(t, "kata_agent_proc_stat{item=\"cstime\"} 7"));
    CHECK(has_line(t, "kata_agent_proc_status{item=\"vmpeak\"} 1000"));
    CHECK(has_line(t, "kata_agent_proc_status{item=\"vmrss\"} 800"));
    CHECK(has_line(t, "kata_agent_proc_status{item=\"vmswap\"} 0"));
    CHECK(has_line(t, "kata_agent_proc_status{item=\"voluntary_ctxt_switches\"} 42"));
    CHECK(has_line(t, "kata_agent_io_stat{item=\"read_bytes\"} 4096"));
    CHECK(has_line(t, "# TYPE kata_agent_io_stat gauge"));
    free(t);
    cleanup_dir();
}

TEST(guest_system)
{
    fake_proc();
    char *t = render(1);
    char line[160];
    long tck = sysconf(_SC_CLK_TCK);
    CHECK(t != NULL);
    if (!t)
        return;
    CHECK(has_line(t, "# HELP kata_guest_load Guest system load."));
    CHECK(has_line(t, "kata_guest_load{item=\"load1\"} 0.5"));
    CHECK(has_line(t, "kata_guest_load{item=\"load5\"} 1.25"));
    CHECK(has_line(t, "kata_guest_load{item=\"load15\"} 0.07"));
    CHECK(has_line(t, "kata_guest_tasks{item=\"cur\"} 2"));
    CHECK(has_line(t, "kata_guest_tasks{item=\"max\"} 345"));
    snprintf(line, sizeof(line), "kata_guest_cpu_time{cpu=\"total\",item=\"user\"} %ld", 100 * 1000 / tck);
    CHECK(has_line(t, line));
    snprintf(line, sizeof(line), "kata_guest_cpu_time{cpu=\"2\",item=\"softirq\"} %ld", 3 * 1000 / tck);
    CHECK(has_line(t, line));
    CHECK(has_line(t, "kata_guest_cpu_time{cpu=\"2\",item=\"guest_nice\"} 0")); /* a short line: 0 */
    CHECK(strstr(t, "cpu=\"1\"") == NULL); /* labels are the CPUs' numbers */
    CHECK(has_line(t, "kata_guest_vm_stat{item=\"nr_free_pages\"} 1234"));
    CHECK(has_line(t, "kata_guest_vm_stat{item=\"pgfault\"} 99"));
    CHECK(strstr(t, "bogus") == NULL);
    CHECK(has_line(t, "kata_guest_netdev_stat{interface=\"lo\",item=\"recv_bytes\"} 1000"));
    CHECK(has_line(t, "kata_guest_netdev_stat{interface=\"eth0\",item=\"sent_compressed\"} 16"));
    CHECK(has_line(t, "kata_guest_netdev_stat{interface=\"eth0\",item=\"recv_multicast\"} 8"));
    CHECK(has_line(t, "kata_guest_netdev_stat{interface=\"we\\\"i\\\\rd\",item=\"sent_colls\"} 14"));
    CHECK(strstr(t, "short") == NULL);
    CHECK(has_line(t, "kata_guest_diskstat{disk=\"sda\",item=\"time_flushing\"} 17"));
    CHECK(has_line(t, "kata_guest_diskstat{disk=\"sda\",item=\"weighted_time_in_progress\"} 11"));
    CHECK(has_line(t, "kata_guest_diskstat{disk=\"loop0\",item=\"in_progress\"} 9"));
    CHECK(has_line(t, "kata_guest_diskstat{disk=\"loop0\",item=\"discards\"} 0"));
    CHECK(strstr(t, "broken") == NULL);
    CHECK(has_line(t, "kata_guest_meminfo{item=\"mem_total\"} 1024000"));
    CHECK(has_line(t, "kata_guest_meminfo{item=\"mem_free\"} 0"));
    CHECK(has_line(t, "kata_guest_meminfo{item=\"hugepages_total\"} 2"));
    CHECK(has_line(t, "kata_guest_meminfo{item=\"direct_map_2M\"} 2097152"));
    CHECK(has_line(t, "kata_guest_meminfo{item=\"active_anon\"} 10240"));
    CHECK(has_line(t, "kata_guest_meminfo{item=\"k_reclaimable\"} 0"));
    free(t);
    cleanup_dir();
}

/* Families in name order with HELP then TYPE first; samples sorted by labels. */
TEST(ordering)
{
    fake_proc();
    char *t = render(1);
    CHECK(t != NULL);
    if (!t)
        return;
    static const char *const fams[] = {
        "kata_agent_fds",          "kata_agent_io_stat",     "kata_agent_proc_stat", "kata_agent_proc_status",
        "kata_agent_scrape_count", "kata_agent_threads",     "kata_agent_total_rss", "kata_agent_total_time",
        "kata_agent_total_vm",     "kata_guest_cpu_time",    "kata_guest_diskstat",  "kata_guest_load",
        "kata_guest_meminfo",      "kata_guest_netdev_stat", "kata_guest_tasks",     "kata_guest_vm_stat"};
    const char *prev = t;
    for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
        char help[96];
        snprintf(help, sizeof(help), "# HELP %s ", fams[i]);
        const char *p = strstr(t, help);
        CHECK(p != NULL && p >= prev);
        if (p) {
            const char *nl = strchr(p, '\n');
            char type[96];
            snprintf(type, sizeof(type), "# TYPE %s ", fams[i]);
            CHECK(nl && strncmp(nl + 1, type, strlen(type)) == 0);
            prev = p;
        }
    }
    const char *c0 = strstr(t, "cpu=\"0\""), *c2 = strstr(t, "cpu=\"2\""), *ct = strstr(t, "cpu=\"total\"");
    CHECK(c0 && c2 && ct && c0 < c2 && c2 < ct);
    const char *a = strstr(t, "item=\"cstime\""), *b = strstr(t, "item=\"utime\"");
    CHECK(a && b && a < b);
    CHECK(t[strlen(t) - 1] == '\n');
    free(t);
    cleanup_dir();
}

/* Missing sources are skipped (their families are not printed); a truncated stat line too. */
TEST(missing_and_truncated_sources)
{
    char tmpl[] = "/tmp/ka-metrics-XXXXXX";
    make_dirs(mkdtemp(tmpl));
    put("self/stat", "1 (x) S 1 2 3\n");
    put("loadavg", "garbage\n");
    put("meminfo", "");
    char *t = render(2);
    CHECK(t != NULL);
    if (t) {
        CHECK(has_line(t, "kata_agent_scrape_count 2"));
        CHECK(strstr(t, "kata_agent_total_vm") == NULL);
        CHECK(strstr(t, "kata_agent_io_stat") == NULL);
        CHECK(strstr(t, "kata_guest_load") == NULL);
        CHECK(strstr(t, "kata_guest_netdev_stat") == NULL);
        CHECK(has_line(t, "kata_guest_meminfo{item=\"mem_total\"} 0")); /* every item, as upstream */
        free(t);
    }
    cleanup_dir();
    /* no /proc at all */
    char *out = NULL;
    size_t len = 0;
    ka_err e;
    CHECK(metrics_render("/nonexistent-proc", 1, &out, &len, &e) == 0);
    CHECK(out && strcmp(out, "# HELP kata_agent_scrape_count Metrics scrape count\n"
                             "# TYPE kata_agent_scrape_count counter\nkata_agent_scrape_count 1\n") == 0);
    free(out);
}

/* Huge inputs: samples per family are capped, and the text never exceeds METRICS_MAX. */
TEST(bounded_output)
{
    char tmpl[] = "/tmp/ka-metrics-XXXXXX";
    make_dirs(mkdtemp(tmpl));
    size_t n = 40000, cap = n * 64 + 1;
    char *vm = malloc(cap), *p = vm;
    for (size_t i = 0; i < n; i++)
        p += snprintf(p, cap - (size_t)(p - vm), "some_rather_long_vmstat_key_number_%zu %zu\n", i, i);
    put("vmstat", vm);
    free(vm);
    char *t = NULL;
    size_t len = 0;
    ka_err e;
    int rc = metrics_render(g_dir, 1, &t, &len, &e);
    CHECK_INT(rc, 0);
    if (t) {
        size_t lines = 0;
        for (const char *q = t; (q = strstr(q, "kata_guest_vm_stat{")); q++)
            lines++;
        CHECK_INT(lines, METRICS_FAMILY_MAX);
        CHECK(len <= METRICS_MAX);
        free(t);
    }
    /* 16 items per interface: 32768 samples of long names would be > 4 MiB */
    n = 2000;
    cap = n * 200 + 256;
    char *nd = malloc(cap);
    p = nd + snprintf(nd, cap, "h1\nh2\n");
    for (size_t i = 0; i < n; i++)
        p += snprintf(p, cap - (size_t)(p - nd),
                      "an_interface_with_a_long_name_%zu: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", i);
    put("net/dev", nd);
    free(nd);
    t = NULL;
    rc = metrics_render(g_dir, 1, &t, &len, &e);
    CHECK_INT(rc, -1);
    CHECK_INT(e.status, KA_RESOURCE_EXHAUSTED);
    CHECK(t == NULL);
    cleanup_dir();
}

/* ---- guest control helpers ---- */

TEST(probe_format)
{
    char b[32];
    guest_probe_format(0x1A0000000ull, b, sizeof(b));
    CHECK_STR(b, "0x1A0000000");
    guest_probe_format(0, b, sizeof(b));
    CHECK_STR(b, "0x0");
    guest_probe_format(UINT64_MAX, b, sizeof(b));
    CHECK_STR(b, "0xFFFFFFFFFFFFFFFF");
    guest_probe_format(0xabcdef, b, sizeof(b));
    CHECK_STR(b, "0xABCDEF");
}

TEST(time_validation)
{
    ka_err e;
    CHECK_INT(guest_set_time_check(1700000000, 0, &e), 0);
    CHECK_INT(guest_set_time_check(1700000000, 999999, &e), 0);
    CHECK_INT(guest_set_time_check(0, 1, &e), 0);
    CHECK_INT(guest_set_time_check(0, 0, &e), -1);
    CHECK_INT(e.status, KA_INVALID_ARGUMENT);
    CHECK_INT(guest_set_time_check(1700000000, 1000000, &e), -1);
    CHECK_INT(guest_set_time_check(1700000000, -1, &e), -1);
    CHECK_INT(guest_set_time_check(-1, 0, &e), -1);
    CHECK_INT(guest_set_time_check(GUEST_TIME_SEC_MAX, 0, &e), -1);
    CHECK_INT(guest_set_time_check(GUEST_TIME_SEC_MAX - 1, 0, &e), 0);
    CHECK_INT(guest_set_time_check(INT64_MAX, 0, &e), -1);
}

TEST(reseed_rejects_empty)
{
    ka_err e;
    CHECK_INT(guest_reseed_random("/dev/null", (const uint8_t *)"", 0, &e), -1);
    CHECK_STR(e.msg, "missing entropy data");
    CHECK_INT(guest_reseed_random("/nonexistent", (const uint8_t *)"x", 1, &e), -1);
    CHECK_INT(e.status, KA_INTERNAL);
}

/* ---- the iptables runner on a real loop ---- */

struct result {
    int calls;
    bool failed;
    ka_err err;
    char *out;
    size_t len;
};

static void on_done(void *arg, const ka_err *err, const uint8_t *out, size_t len)
{
    struct result *r = arg;
    r->calls++;
    r->failed = err != NULL;
    if (err)
        r->err = *err;
    r->out = malloc(len + 1);
    if (len)
        memcpy(r->out, out, len);
    r->out[len] = '\0';
    r->len = len;
}

static bool run(struct loop *l, char *const argv[], const void *in, size_t in_len, struct result *r)
{
    ka_err e;
    *r = (struct result){0};
    struct ipt_job *j = ipt_run_async(l, argv, in, in_len, on_done, r, &e);
    if (!j) {
        printf("# %s\n", e.msg);
        return false;
    }
    CHECK_INT(r->calls, 0); /* never from the starting function */
    uint64_t deadline = loop_now_ns() + 20ull * 1000000000ull;
    while (r->calls == 0 && loop_now_ns() < deadline)
        if (loop_run_once(l, 50, &e) < 0)
            return false;
    return r->calls == 1;
}

TEST(runner)
{
    ka_err e;
    struct loop *l = loop_new(&e);
    CHECK(l && loop_children_init(l, &e) == 0);
    if (!l)
        return;
    struct result r;
    size_t big = 3u << 20;
    char *data = malloc(big);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)('a' + i % 26);

    char *cat[] = {"/bin/cat", NULL};
    CHECK(run(l, cat, data, big, &r)); /* 3 MiB through a 64 KiB pipe both ways */
    CHECK(!r.failed && r.len == big && memcmp(r.out, data, big) == 0);
    free(r.out);

    char *noread[] = {"/bin/sh", "-c", "echo done", NULL};
    CHECK(run(l, noread, data, big, &r)); /* never reads stdin: EPIPE, not a failure */
    CHECK(!r.failed);
    CHECK_STR(r.out, "done\n");
    free(r.out);

    char *fail[] = {"/bin/sh", "-c", "echo partial; echo 'it broke' >&2; echo again >&2; exit 2", NULL};
    CHECK(run(l, fail, NULL, 0, &r));
    CHECK(r.failed);
    CHECK_INT(r.err.status, KA_INTERNAL);
    CHECK_STR(r.err.msg, "/bin/sh failed (exit status 2): it broke; again");
    free(r.out);

    char *missing[] = {"/nonexistent/iptables-save", NULL};
    CHECK(run(l, missing, NULL, 0, &r));
    CHECK_STR(r.err.msg,
              "/nonexistent/iptables-save failed (exit status 127): exec /nonexistent/iptables-save: "
              "No such file or directory");
    free(r.out);

    char *flood[] = {"/bin/sh", "-c", "exec head -c 5000000 /dev/zero", NULL};
    CHECK(run(l, flood, NULL, 0, &r));
    CHECK(r.failed);
    CHECK_INT(r.err.status, KA_RESOURCE_EXHAUSTED);
    free(r.out);

    /* cancelled while running: nothing is called, the child is killed */
    char *slow[] = {"/bin/sleep", "30", NULL};
    struct result rc = {0};
    struct ipt_job *j = ipt_run_async(l, slow, NULL, 0, on_done, &rc, &e);
    CHECK(j != NULL);
    ipt_cancel(j);
    for (int i = 0; i < 5; i++)
        loop_run_once(l, 20, &e);
    CHECK_INT(rc.calls, 0);

    char bin[64];
    if (access("/usr/sbin/iptables-save", X_OK) == 0 || access("/sbin/iptables-save", X_OK) == 0) {
        CHECK_INT(ipt_binary(true, true, bin, sizeof(bin), &e), 0);
        CHECK(strstr(bin, "/ip6tables-restore") != NULL);
        CHECK_INT(ipt_binary(false, true, bin, sizeof(bin), &e), 0);
        CHECK(strstr(bin, "sbin/iptables-restore") != NULL);
    }
    free(data);
    loop_free(l);
}

TEST(main_setup)
{
    signal(SIGPIPE, SIG_IGN); /* as the agent */
    ka_log_set_fd(STDERR_FILENO);
}

RUN(main_setup, agent_process, guest_system, ordering, missing_and_truncated_sources, bounded_output,
    probe_format, time_validation, reseed_rejects_empty, runner)
