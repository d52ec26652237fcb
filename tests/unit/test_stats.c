/* Unit tests for src/runtime/stats.c (parsers of sample cgroup v1/v2 and procfs files, cpusets, remount
 * options, the virtio-fs scan child) and src/runtime/oom_watch.c (the v2 inotify and v1 eventfd watches on
 * fake cgroup directories). Both .c files are included so that their static helpers can be tested. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/runtime/oom_watch.c"
#undef SUB
#include "../../src/runtime/stats.c"
#include "runtime/oom_queue.h"
#include "unit.h"

#define NEED(x)                                                                                              \
    do {                                                                                                     \
        if (!(x)) {                                                                                          \
            CHECK(x);                                                                                        \
            return;                                                                                          \
        }                                                                                                    \
    } while (0)

static char tmpdir[64];

static const char *tmp(const char *name)
{
    static char bufs[8][PATH_MAX];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, PATH_MAX, "%s/%s", tmpdir, name);
    return b;
}

/* Replace a file's content (open with O_TRUNC, one write: an inotify IN_MODIFY). */
static void put(const char *name, const char *text)
{
    FILE *f = fopen(tmp(name), "w");
    if (!f) {
        CHECK(f != NULL);
        return;
    }
    fputs(text, f);
    fclose(f);
}

/* ---- samples ---- */

static const char memory_stat_v1[] = "cache 4096\n"
                                     "rss 1052672\n"
                                     "rss_huge 0\n"
                                     "shmem 0\n"
                                     "mapped_file 0\n"
                                     "hierarchical_memory_limit 33554432\n"
                                     "total_cache 8192\n"
                                     "total_rss 1052672\n";

static const char cpu_stat_v2[] = "usage_usec 1500\n"
                                  "user_usec 1000\n"
                                  "system_usec 500\n"
                                  "nr_periods 10\n"
                                  "nr_throttled 2\n"
                                  "throttled_usec 7\n";

static const char sample_blkio[] = "8:0 Read 4096\n"
                                   "8:0 Write 8192\n"
                                   "8:0 Sync 12288\n"
                                   "8:0 Async 0\n"
                                   "8:0 Discard 0\n"
                                   "8:0 Total 12288\n"
                                   "253:1 Read 1\n"
                                   "Total 12289\n";

static const char net_dev[] =
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls "
    "carrier compressed\n"
    "    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0 "
    " "
    "     0          0\n"
    "  eth0: 123456789 1000 3 4 0 0 0 7 987654321 2000 5 6 0 0 0 0\n";

/* ---- parsers ---- */

TEST(kv_lookup)
{
    uint64_t v = 0;
    CHECK(stats_kv(memory_stat_v1, "cache", &v));
    CHECK_INT(v, 4096); /* not total_cache */
    CHECK(stats_kv(memory_stat_v1, "total_cache", &v));
    CHECK_INT(v, 8192);
    CHECK(stats_kv(memory_stat_v1, "total_rss", &v));
    CHECK_INT(v, 1052672);
    CHECK(!stats_kv(memory_stat_v1, "swap", &v));
    CHECK(!stats_kv(memory_stat_v1, "rss_hug", &v));
    CHECK(stats_kv(cpu_stat_v2, "throttled_usec", &v));
    CHECK_INT(v, 7);
    CHECK(!stats_kv("", "x", &v));
    CHECK(!stats_kv("oom_kill abc\n", "oom_kill", &v));
    CHECK(stats_kv("oom_kill_disable 0\nunder_oom 0\noom_kill 3", "oom_kill", &v));
    CHECK_INT(v, 3);
}

TEST(number_or_max)
{
    CHECK_INT(stats_u64_or_max("max\n", 7), 7);
    CHECK_INT(stats_u64_or_max("-1\n", 7), 7);
    CHECK_INT(stats_u64_or_max("123\n", 7), 123);
    CHECK_INT(stats_u64_or_max("9223372036854771712\n", 0), 9223372036854771712ULL);
    CHECK_INT(stats_u64_or_max("junk", 7), 0);
    CHECK_INT(stats_u64_or_max("", 7), 0);
}

TEST(number_lists)
{
    uint64_t *v = NULL;
    size_t n = 0;
    NEED(stats_u64_list("11 22 33 \n", 100, &v, &n) == 0);
    CHECK_INT(n, 3);
    CHECK(n == 3 && v[0] == 11 && v[1] == 22 && v[2] == 33);
    free(v);
    NEED(stats_u64_list("1 2 3 4 5", 2, &v, &n) == 0);
    CHECK_INT(n, 2);
    free(v);
    NEED(stats_u64_list("\n", 2, &v, &n) == 0);
    CHECK_INT(n, 0);
    free(v);
}

TEST(kv_all_map)
{
    char **k = NULL;
    uint64_t *v = NULL;
    size_t n = 0;
    NEED(stats_kv_all(memory_stat_v1, 100, &k, &v, &n) == 0);
    CHECK_INT(n, 8);
    CHECK_STR(k[0], "cache");
    CHECK_INT(v[0], 4096);
    CHECK_STR(k[7], "total_rss");
    stats_kv_free(k, v, n);
    NEED(stats_kv_all("a 1\nbroken\n\nb x\nc 3\n", 100, &k, &v, &n) == 0);
    CHECK_INT(n, 2);
    CHECK(n == 2 && strcmp(k[1], "c") == 0 && v[1] == 3);
    stats_kv_free(k, v, n);
    NEED(stats_kv_all(memory_stat_v1, 3, &k, &v, &n) == 0); /* bounded */
    CHECK_INT(n, 3);
    stats_kv_free(k, v, n);
}

TEST(blkio_v1_files)
{
    struct stats_blkio *b = NULL;
    size_t n = 0;
    NEED(stats_parse_blkio_v1(sample_blkio, true, 100, &b, &n) == 0);
    CHECK_INT(n, 6); /* Discard and the device-less Total are dropped */
    CHECK(n == 6 && b[0].major == 8 && b[0].minor == 0 && strcmp(b[0].op, "read") == 0 && b[0].value == 4096);
    CHECK(n == 6 && strcmp(b[3].op, "async") == 0 && strcmp(b[4].op, "total") == 0 && b[4].value == 12288);
    CHECK(n == 6 && b[5].major == 253 && b[5].minor == 1 && strcmp(b[5].op, "read") == 0);
    free(b);
    NEED(stats_parse_blkio_v1("8:0 5000\n8:16 7\n", false, 100, &b, &n) == 0);
    CHECK_INT(n, 2);
    CHECK(n == 2 && b[1].minor == 16 && b[1].value == 7 && b[1].op[0] == '\0');
    free(b);
    NEED(stats_parse_blkio_v1("Total 0\n", true, 100, &b, &n) == 0);
    CHECK_INT(n, 0);
    free(b);
    NEED(stats_parse_blkio_v1(sample_blkio, true, 2, &b, &n) == 0);
    CHECK_INT(n, 2);
    free(b);
}

TEST(io_stat_v2)
{
    struct stats_blkio *b = NULL;
    size_t n = 0;
    NEED(stats_parse_io_stat("8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6\n259:0 rbytes=9 wbytes=0 "
                             "rios=1 wios=0 dbytes=0 dios=0\n",
                             100, &b, &n) == 0);
    CHECK_INT(n, 12);
    static const char *const ops[] = {"read", "write", "rios", "wios", "dbytes", "dios"};
    for (size_t i = 0; i < 6 && n == 12; i++) {
        CHECK_STR(b[i].op, ops[i]);
        CHECK_INT(b[i].value, i + 1);
    }
    CHECK(n == 12 && b[6].major == 259 && b[6].value == 9);
    free(b);
}

TEST(net_dev_file)
{
    struct stats_netdev *d = NULL;
    size_t n = 0;
    NEED(stats_parse_net_dev(net_dev, 100, &d, &n) == 0);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_STR(d[0].name, "lo");
        CHECK_STR(d[1].name, "eth0");
        CHECK_INT(d[1].rx_bytes, 123456789);
        CHECK_INT(d[1].rx_packets, 1000);
        CHECK_INT(d[1].rx_errors, 3);
        CHECK_INT(d[1].rx_dropped, 4);
        CHECK_INT(d[1].tx_bytes, 987654321);
        CHECK_INT(d[1].tx_packets, 2000);
        CHECK_INT(d[1].tx_errors, 5);
        CHECK_INT(d[1].tx_dropped, 6);
    }
    free(d);
    NEED(stats_parse_net_dev("x: 1 2\n", 100, &d, &n) == 0); /* too few fields */
    CHECK_INT(n, 0);
    free(d);
}

TEST(hugepage_names_and_ticks)
{
    char s[32];
    CHECK(stats_hugepage_name("hugepages-2048kB", s, sizeof(s)));
    CHECK_STR(s, "2MB");
    CHECK(stats_hugepage_name("hugepages-1048576kB", s, sizeof(s)));
    CHECK_STR(s, "1GB");
    CHECK(stats_hugepage_name("hugepages-64kB", s, sizeof(s)));
    CHECK_STR(s, "64KB");
    CHECK(!stats_hugepage_name("hugepages-", s, sizeof(s)));
    CHECK(!stats_hugepage_name("nr_hugepages", s, sizeof(s)));
    CHECK_INT(stats_ticks_to_ns(150, 100), 1500000000ULL);
    CHECK_INT(stats_ticks_to_ns(1, 300), 3333333ULL);
    CHECK_INT(stats_ticks_to_ns(1ULL << 40, 100), (1ULL << 40) * 10000000ULL);
}

TEST(mountinfo_prefix)
{
    const char *mi =
        "22 1 0:21 / /run rw - tmpfs tmpfs rw\n"
        "30 22 0:40 / /run/kata-containers/shared/containers/a rw - virtiofs kataShared rw\n"
        "31 22 0:40 /x /run/kata-containers/shared/containers/with\\040space rw - virtiofs k rw\n"
        "32 22 0:41 / /run/kata-containers/shared/containers/ rw - tmpfs t rw\n"
        "33 22 0:42 / /run/kata-containers/shared/containersX rw - tmpfs t rw\n";
    char **v = NULL;
    size_t n = 0;
    NEED(stats_mountinfo_below(mi, VIRTIOFS_SHARE_PREFIX, 100, &v, &n) == 0);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_STR(v[0], "/run/kata-containers/shared/containers/a");
        CHECK_STR(v[1], "/run/kata-containers/shared/containers/with space");
    }
    stats_strv_free(v, n);
    NEED(stats_mountinfo_below(mi, VIRTIOFS_SHARE_PREFIX, 1, &v, &n) == 0);
    CHECK_INT(n, 1);
    stats_strv_free(v, n);
}

/* ---- cpusets and remount options ---- */

TEST(cpusets)
{
    struct cpuset a, b;
    char buf[128];
    NEED(cpuset_parse("0-3,5,7-8\n", &a));
    cpuset_format(&a, buf, sizeof(buf));
    CHECK_STR(buf, "0-3,5,7-8");
    NEED(cpuset_parse("0-8", &b));
    CHECK(cpuset_subset(&a, &b));
    CHECK(!cpuset_subset(&b, &a));
    cpuset_free(&b);
    NEED(cpuset_parse("", &b)); /* v2: empty */
    CHECK_INT(b.words, 0);
    CHECK(cpuset_subset(&b, &a));
    cpuset_free(&b);
    NEED(cpuset_parse("100", &b));
    cpuset_format(&b, buf, sizeof(buf));
    CHECK_STR(buf, "100");
    cpuset_free(&b);
    CHECK(!cpuset_parse("3-1", &b));
    CHECK(!cpuset_parse("1,,x", &b));
    CHECK(!cpuset_parse("70000", &b));
    cpuset_free(&a);
}

TEST(remount_options)
{
    Grpc__Storage st = GRPC__STORAGE__INIT;
    char *opts1[] = {"remount", "size=2M", "fsgid=5", "nosuid,mode=1777"};
    st.options = opts1;
    st.n_options = 4;
    struct remount_opts o;
    ka_err e;
    NEED(remount_parse(&st, &o, &e) == 0);
    CHECK_STR(o.data, "size=2M,mode=1777");
    CHECK_INT(o.set, MS_NOSUID);
    char *opts2[] = {"rw", "exec"};
    st.options = opts2;
    st.n_options = 2;
    NEED(remount_parse(&st, &o, &e) == 0);
    CHECK_INT(o.cleared, MS_RDONLY | MS_NOEXEC);
    CHECK_STR(o.data, "");
    char *opts3[] = {"remount", "rbind"};
    st.options = opts3;
    CHECK(remount_parse(&st, &o, &e) < 0 && e.status == KA_INVALID_ARGUMENT && strstr(e.msg, "rbind"));
    char out[PATH_MAX];
    NEED(fs_normalize_path("mount point", "/run//kata-containers/./sandbox/shm/", out, &e) == 0);
    CHECK_STR(out, "/run/kata-containers/sandbox/shm");
    CHECK(fs_normalize_path("mount point", "/run/kata-containers/../etc", out, &e) < 0);
    CHECK(fs_normalize_path("mount point", "run/x", out, &e) < 0);
}

/* ---- OOM watches on fake cgroup directories ---- */

static struct loop *loop;

/* Run the loop for about ms milliseconds. */
static void spin(int ms)
{
    ka_err e;
    uint64_t end = loop_now_ns() + (uint64_t)ms * 1000000ULL;
    while (loop_now_ns() < end)
        loop_run_once(loop, 5, &e);
}

static size_t drain(struct oom_queue *q, const char *want)
{
    size_t n = 0;
    for (char *cid; (cid = oom_queue_pop(q)); n++) {
        CHECK_STR(cid, want);
        free(cid);
    }
    return n;
}

TEST(oom_v2_inotify)
{
    struct oom_queue q;
    oom_queue_init(&q);
    ka_err e;
    const char *ev = "low 0\nhigh 0\nmax 4\noom 1\noom_kill %d\noom_group_kill 0\n";
    char text[128];
    snprintf(text, sizeof(text), ev, 2);
    put("memory.events", text); /* kills before the start are reported once */
    struct oom_watch *w = NULL;
    NEED(watch_dir(loop, tmpdir, true, &q, "c2", &w, &e) == 0);
    CHECK_INT(drain(&q, "c2"), 1);
    put("memory.events", "low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\n"); /* an OOM without a kill */
    spin(30);
    CHECK_INT(drain(&q, "c2"), 0);
    snprintf(text, sizeof(text), ev, 3);
    put("memory.events", text);
    spin(30);
    CHECK_INT(drain(&q, "c2"), 1);
    put("memory.events", text); /* modified, same count */
    spin(30);
    CHECK_INT(drain(&q, "c2"), 0);
    snprintf(text, sizeof(text), ev, 7); /* several kills between two reads: one event */
    put("memory.events", text);
    spin(30);
    CHECK_INT(drain(&q, "c2"), 1);
    unlink(tmp("memory.events")); /* the cgroup goes away: the watch stops */
    spin(30);
    CHECK_INT(w->io.fd, -1);
    oom_watch_stop(w);
    oom_queue_free(&q);
}

TEST(oom_v1_eventfd)
{
    struct oom_queue q;
    oom_queue_init(&q);
    ka_err e;
    put("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n");
    put("cgroup.event_control", "");
    struct oom_watch *w = NULL;
    NEED(watch_dir(loop, tmpdir, false, &q, "c1", &w, &e) == 0);
    CHECK(w->counted);
    CHECK_INT(drain(&q, "c1"), 0);
    cleanup_free char *reg = NULL;
    NEED(fs_read_file(tmp("cgroup.event_control"), &reg, NULL, &e) == 0);
    char want[32];
    snprintf(want, sizeof(want), "%d %d", w->io.fd, w->ctl_fd);
    CHECK_STR(reg, want);
    /* the notification comes before the kill: the kill is confirmed by the re-checks */
    uint64_t one = 1;
    CHECK(write(w->io.fd, &one, sizeof(one)) == sizeof(one));
    spin(15);
    CHECK_INT(drain(&q, "c1"), 0);
    put("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
    spin(100);
    CHECK_INT(drain(&q, "c1"), 1);
    spin(300); /* the re-checks stopped: nothing more */
    CHECK_INT(drain(&q, "c1"), 0);
    /* a notification that never turns into a kill: no event, and the re-checks end */
    CHECK(write(w->io.fd, &one, sizeof(one)) == sizeof(one));
    spin(50);
    CHECK_INT(drain(&q, "c1"), 0);
    /* the cgroup is removed (the kernel signals the eventfd): the watch stops */
    unlink(tmp("cgroup.event_control"));
    CHECK(write(w->io.fd, &one, sizeof(one)) == sizeof(one));
    spin(20);
    CHECK_INT(w->io.fd, -1);
    CHECK_INT(drain(&q, "c1"), 0);
    oom_watch_stop(w); /* with a re-check timer possibly armed */
    oom_queue_free(&q);
}

TEST(oom_v2_missing_controller)
{
    struct oom_queue q;
    oom_queue_init(&q);
    ka_err e;
    struct oom_watch *w = NULL;
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/nomem", tmpdir);
    NEED(mkdir(dir, 0755) == 0);
    CHECK(watch_dir(loop, dir, true, &q, "c3", &w, &e) < 0 && strstr(e.msg, "memory.events"));
    CHECK(watch_dir(loop, dir, false, &q, "c3", &w, &e) < 0 && strstr(e.msg, "memory.oom_control"));
    CHECK(w == NULL);
    rmdir(dir);
    oom_queue_free(&q);
}

/* ---- the virtio-fs scan child ---- */

struct scan_result {
    int calls;
    bool err;
};

static void scan_cb(void *arg, const ka_err *err)
{
    struct scan_result *r = arg;
    r->calls++;
    r->err = err != NULL;
}

TEST(virtiofs_scan)
{
    ka_err e;
    struct scan_result r = {0};
    struct virtiofs_scan *s = NULL;
    put("mountinfo",
        "30 22 0:40 / /run/kata-containers/shared/containers/nonexistent-ka-unit rw - virtiofs k "
        "rw\n22 1 0:21 / /run rw - tmpfs tmpfs rw\n");
    NEED(virtiofs_scan_start(loop, tmp("mountinfo"), scan_cb, &r, &s, &e) == 0);
    pid_t pid = s->child.pid;
    CHECK(pid > 0);
    for (int i = 0; i < 200 && !r.calls; i++)
        spin(10);
    CHECK_INT(r.calls, 1);
    CHECK(!r.err);
    CHECK(kill(pid, 0) < 0 && errno == ESRCH); /* reaped */
    /* nothing to stat: answered from the loop, no child */
    put("mountinfo", "22 1 0:21 / /run rw - tmpfs tmpfs rw\n");
    r.calls = 0;
    NEED(virtiofs_scan_start(loop, tmp("mountinfo"), scan_cb, &r, &s, &e) == 0);
    CHECK_INT(r.calls, 0);
    spin(10);
    CHECK_INT(r.calls, 1);
    /* detached (cancelled RPC): no callback, still reaped */
    put("mountinfo", "30 22 0:40 / /run/kata-containers/shared/containers/x rw - virtiofs k rw\n");
    r.calls = 0;
    NEED(virtiofs_scan_start(loop, tmp("mountinfo"), scan_cb, &r, &s, &e) == 0);
    pid = s->child.pid;
    virtiofs_scan_detach(s);
    for (int i = 0; i < 200 && kill(pid, 0) == 0; i++)
        spin(10);
    CHECK(kill(pid, 0) < 0 && errno == ESRCH);
    CHECK_INT(r.calls, 0);
    CHECK(virtiofs_scan_start(loop, tmp("no-such-mountinfo"), scan_cb, &r, &s, &e) < 0);
    /* bounded number of children at once */
    CHECK_INT(scans_running, 0);
    scans_running = VIRTIOFS_MAX_SCANS;
    CHECK(virtiofs_scan_start(loop, tmp("mountinfo"), scan_cb, &r, &s, &e) < 0 &&
          e.status == KA_RESOURCE_EXHAUSTED);
    scans_running = 0;
    CHECK_INT(r.calls, 0);
}

static void cleanup(void)
{
    static const char *const files[] = {"memory.events", "memory.oom_control", "cgroup.event_control",
                                        "mountinfo"};
    for (size_t i = 0; i < ARRAY_SIZE(files); i++)
        unlink(tmp(files[i]));
    rmdir(tmpdir);
    if (loop)
        loop_free(loop);
}

TEST(aa_setup)
{
    ka_log_set_fd(STDERR_FILENO);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ka-stats-XXXXXX");
    NEED(mkdtemp(tmpdir) != NULL);
    atexit(cleanup);
    ka_err e;
    loop = loop_new(&e);
    NEED(loop != NULL);
    NEED(loop_children_init(loop, &e) == 0);
}

RUN(aa_setup, kv_lookup, number_or_max, number_lists, kv_all_map, blkio_v1_files, io_stat_v2, net_dev_file,
    hugepage_names_and_ticks, mountinfo_prefix, cpusets, remount_options, oom_v2_inotify, oom_v1_eventfd,
    oom_v2_missing_controller, virtiofs_scan)
