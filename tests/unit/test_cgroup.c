/* Unit tests for cgroups on this (root, hybrid v1 + cgroup2 "unified") host: every cgroup made is below
 * /ka-unit-<pid> and removed again, also on failure (atexit). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loop/loop.h"
#include "runtime/cgroup.h"
#include "util/log.h"
#include "unit.h"

#define ROOT    "/sys/fs/cgroup"
#define UNIFIED ROOT "/unified"
#define MiB     (1024LL * 1024)

/* CHECK and leave the test (its cleanup runs at the end of the next one or at exit). */
#define NEED(x)                                                                                              \
    do {                                                                                                     \
        if (!(x)) {                                                                                          \
            CHECK(x);                                                                                        \
            return;                                                                                          \
        }                                                                                                    \
    } while (0)

static const char *const v1_names[] = {"memory",  "pids",    "cpu",   "cpuacct", "cpuset",
                                       "freezer", "devices", "blkio", "systemd"};

static char base[64]; /* "/ka-unit-<pid>" */
static struct cgroup_env *env1, *env2;

/* ---- helpers ---- */

/* printf into one of 16 rotating buffers. */
static const char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static const char *fmt(const char *f, ...)
{
    static char bufs[16][4096];
    static int next;
    char *b = bufs[next++ % 16];
    va_list ap;
    va_start(ap, f);
    vsnprintf(b, sizeof(bufs[0]), f, ap);
    va_end(ap);
    return b;
}

static const char *cgp(const char *leaf)
{
    return fmt("%s/%s", base, leaf);
}

/* dir/file without trailing newline, "(missing)" if unreadable. */
static const char *rdf(const char *dir, const char *file)
{
    const char *p = fmt("%s/%s", dir, file);
    char *b = (char *)fmt("%s", "");
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return "(missing)";
    ssize_t n = read(fd, b, 4095);
    close(fd);
    if (n < 0)
        return "(missing)";
    while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == ' '))
        n--;
    b[n] = '\0';
    return b;
}

static bool isdir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool contains(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
            return true;
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return false;
}

/* A child that sleeps until killed; exec'd so that valgrind runs see plain signal deaths. */
static pid_t sleeper(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl("/bin/sleep", "sleep", "3600", (char *)NULL);
        for (;;)
            pause();
    }
    return pid;
}

static int reap(pid_t pid)
{
    int st = 0;
    if (pid <= 0) /* never kill(-1) or our process group */
        return -1;
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return st;
}

/* Wait (up to 5 s, then SIGKILL) for a child that was already signalled. */
static int wait_dead(pid_t pid)
{
    int st = 0;
    for (int i = 0; pid > 0 && i < 500; i++) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    printf("# pid %d did not die\n", (int)pid);
    return reap(pid);
}

static bool in_list(const pid_t *v, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == pid)
            return true;
    return false;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Thaw, kill whatever is inside, rmdir bottom-up. Only ever called on our own /ka-unit-<pid> trees. */
static void nuke(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *de; (de = readdir(d));)
        if (de->d_type == DT_DIR && strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            nuke(fmt("%s/%s", dir, de->d_name));
    closedir(d);
    int fd = open(fmt("%s/freezer.state", dir), O_WRONLY | O_CLOEXEC);
    if (fd >= 0 && (write(fd, "THAWED", 6) < 0 || 1))
        close(fd);
    fd = open(fmt("%s/cgroup.freeze", dir), O_WRONLY | O_CLOEXEC);
    if (fd >= 0 && (write(fd, "0", 1) < 0 || 1))
        close(fd);
    const char *procs = rdf(dir, "cgroup.procs");
    for (const char *p = procs; *p && strcmp(procs, "(missing)");) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        if (pid > 0 && pid != getpid())
            reap((pid_t)pid);
        p = end;
    }
    for (int i = 0; i < 50 && rmdir(dir) < 0 && errno == EBUSY; i++)
        sleep_ms(10);
}

static void cleanup_all(void)
{
    DIR *d = opendir(ROOT);
    if (!d)
        return;
    for (struct dirent *de; (de = readdir(d));) {
        const char *top = fmt(ROOT "/%s%s", de->d_name, base);
        if (de->d_name[0] != '.' && isdir(top))
            nuke(top);
    }
    closedir(d);
}

static int leftovers(void)
{
    int n = 0;
    DIR *d = opendir(ROOT);
    for (struct dirent *de; d && (de = readdir(d));) {
        DIR *h = de->d_name[0] == '.' ? NULL : opendir(fmt(ROOT "/%s", de->d_name));
        for (struct dirent *x; h && (x = readdir(h));)
            if (strncmp(x->d_name, "ka-unit-", 8) == 0) {
                printf("# leftover %s/%s/%s\n", ROOT, de->d_name, x->d_name);
                n++;
            }
        if (h)
            closedir(h);
    }
    if (d)
        closedir(d);
    return n;
}

static struct cgroup *mk(struct cgroup_env *env, const char *leaf)
{
    ka_err e;
    struct cgroup *cg = NULL;
    if (cgroup_create(env, cgp(leaf), &cg, &e) < 0) {
        printf("# create %s: %s\n", cgp(leaf), e.msg);
        return NULL;
    }
    return cg;
}

/* cgroup_destroy makes one attempt: retry EBUSY (tasks just killed may still be exiting) for up to 1 s. */
static int destroy_retry(struct cgroup *cg, ka_err *e)
{
    int rc;
    for (int i = 0; (rc = cgroup_destroy(cg, e)) < 0 && e->errnum == EBUSY && i < 100; i++)
        sleep_ms(10);
    return rc;
}

static void destroy(struct cgroup *cg)
{
    ka_err e;
    if (!cg)
        return;
    if (destroy_retry(cg, &e) < 0) {
        printf("# destroy: %s\n", e.msg);
        CHECK(0);
    }
    cgroup_free(cg);
}

/* ---- tests ---- */

TEST(aa_setup)
{
    ka_log_set_fd(STDERR_FILENO);
    snprintf(base, sizeof(base), "/ka-unit-%d", (int)getpid());
    atexit(cleanup_all);
    ka_err e;
    CHECK(cgroup_env_detect(ROOT, false, &env1, &e) == 0);
    CHECK(cgroup_env_detect(ROOT, true, &env2, &e) == 0);
}

TEST(path_for_table)
{
    static const struct {
        const char *in, *cid, *out;
    } ok[] = {
        {"", "c1", "/c1"},
        {NULL, "abc", "/abc"},
        {"kubepods:besteffort:c1", "x", "/kubepods/besteffort/c1"},
        {"/kubepods/burstable/pod1/c1", "x", "/kubepods/burstable/pod1/c1"},
        {"a", "x", "/a"},
        {"system.slice:docker:abc", "x", "/system.slice/docker/abc"},
        {"/a:b", "x", "/a/b"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char *out = NULL;
        ka_err e;
        CHECK_INT(cgroup_path_for(ok[i].in, ok[i].cid, &out, &e), 0);
        CHECK_STR(out, ok[i].out);
        free(out);
    }
    static const char *const bad[] = {"/",     "a//b",  "a/",   "::", "a:..:b", "../x",
                                      "/a/..", "a/./b", "a\nb", ":a", "a\x7f"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *out = NULL;
        ka_err e;
        CHECK_INT(cgroup_path_for(bad[i], "c", &out, &e), -1);
        CHECK_INT(e.status, KA_INVALID_ARGUMENT);
        CHECK(out == NULL);
    }
    char *out = NULL;
    ka_err e;
    CHECK_INT(cgroup_path_for("", "", &out, &e), -1);
    CHECK_INT(cgroup_path_for("", "..", &out, &e), -1);
    CHECK_INT(cgroup_path_for("", "a/b", &out, &e), 0); /* ids are validated by the caller */
    CHECK_STR(out, "/a/b");
    free(out);
}

TEST(detect_host)
{
    ka_err e;
    struct cgroup_env *env = NULL;
    CHECK_INT(cgroup_env_mode(env1), CGROUP_V1);
    CHECK_INT(cgroup_env_mode(env2), CGROUP_V2);
    CHECK_INT(cgroup_env_detect(ROOT "/", false, &env, &e), 0);
    CHECK_INT(cgroup_env_mode(env), CGROUP_V1);
    cgroup_env_free(env);
    env = NULL;
    CHECK_INT(cgroup_env_detect(UNIFIED, false, &env, &e), 0); /* cgroup2 at the root itself */
    CHECK_INT(cgroup_env_mode(env), CGROUP_V2);
    cgroup_env_free(env);
    env = NULL;
    CHECK_INT(cgroup_env_detect("/nonexistent-ka", false, &env, &e), -1);
    CHECK_INT(cgroup_env_detect("/tmp", false, &env, &e), -1);
    CHECK_INT(e.status, KA_FAILED_PRECONDITION);
    CHECK(env == NULL);
}

TEST(create_v1)
{
    ka_err e;
    struct cgroup *cg = mk(env1, "c1");
    NEED(cg);
    CHECK_STR(cgroup_get_path(cg), cgp("c1"));
    CHECK_INT(cgroup_v2_dirfd(cg), -1);
    for (size_t i = 0; i < sizeof(v1_names) / sizeof(v1_names[0]); i++) {
        const char *d = cgroup_controller_dir(cg, v1_names[i]);
        CHECK_STR(d, fmt(ROOT "/%s%s", v1_names[i], cgp("c1")));
        CHECK(d && isdir(d));
    }
    CHECK(cgroup_controller_dir(cg, "net_cls") == NULL);
    CHECK(cgroup_controller_dir(cg, "name=systemd") != NULL);
    const char *const *names, *const *dirs;
    size_t n = cgroup_hierarchies(cg, &names, &dirs);
    CHECK_INT(n, 9);
    for (size_t i = 0; i < n; i++)
        CHECK_STR(dirs[i], fmt(ROOT "/%s%s", names[i], cgp("c1")));
    /* cpuset: cpus/mems copied from the parent, so tasks can join */
    const char *cs = cgroup_controller_dir(cg, "cpuset");
    CHECK_STR(rdf(cs, "cpuset.cpus"), rdf(ROOT "/cpuset", "cpuset.cpus"));
    CHECK_STR(rdf(cs, "cpuset.mems"), rdf(ROOT "/cpuset", "cpuset.mems"));
    CHECK_STR(rdf(ROOT "/cpuset", "cgroup.clone_children"), "0"); /* parent untouched */

    struct cgroup *again = NULL;
    CHECK_INT(cgroup_create(env1, cgp("c1"), &again, &e), -1);
    CHECK_INT(e.status, KA_ALREADY_EXISTS);
    CHECK(again == NULL);
    CHECK(isdir(cgroup_controller_dir(cg, "memory"))); /* the failed attempt removed nothing */

    /* leaf already present in one hierarchy only: error, and nothing left behind elsewhere */
    CHECK_INT(mkdir(fmt(ROOT "/pids%s", cgp("c2")), 0755), 0);
    CHECK_INT(cgroup_create(env1, cgp("c2"), &again, &e), -1);
    CHECK_INT(e.status, KA_ALREADY_EXISTS);
    CHECK(!isdir(fmt(ROOT "/memory%s", cgp("c2"))));
    CHECK(!isdir(fmt(ROOT "/cpuset%s", cgp("c2"))));
    rmdir(fmt(ROOT "/pids%s", cgp("c2")));

    CHECK_INT(cgroup_create(env1, "/", &again, &e), -1);
    CHECK_INT(cgroup_create(env1, "/a/../b", &again, &e), -1);

    char **saved = calloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        saved[i] = strdup(dirs[i]);
    destroy(cg);
    for (size_t i = 0; i < n; i++) {
        CHECK(!isdir(saved[i]));
        free(saved[i]);
    }
    free(saved);
    CHECK(isdir(fmt(ROOT "/memory%s", base))); /* parents are kept */
    cleanup_all();
}

static Grpc__LinuxMemory mem;
static Grpc__LinuxCPU cpu;
static Grpc__LinuxPids pids;
static Grpc__LinuxBlockIO blk;

static Grpc__LinuxResources fresh_res(void)
{
    Grpc__LinuxResources r = GRPC__LINUX_RESOURCES__INIT;
    Grpc__LinuxMemory m = GRPC__LINUX_MEMORY__INIT;
    Grpc__LinuxCPU c = GRPC__LINUX_CPU__INIT;
    Grpc__LinuxPids p = GRPC__LINUX_PIDS__INIT;
    Grpc__LinuxBlockIO b = GRPC__LINUX_BLOCK_IO__INIT;
    mem = m;
    cpu = c;
    pids = p;
    blk = b;
    return r;
}

static int apply(struct cgroup *cg, const Grpc__LinuxResources *r, bool update, ka_err *e)
{
    int rc = cgroup_apply(cg, r, update, e);
    if (rc < 0 && e->status != KA_INVALID_ARGUMENT)
        printf("# apply: %s\n", e->msg);
    return rc;
}

TEST(apply_v1_values)
{
    ka_err e;
    struct cgroup *cg = mk(env1, "vals");
    NEED(cg);
    const char *md = cgroup_controller_dir(cg, "memory"), *pd = cgroup_controller_dir(cg, "pids");
    const char *cd = cgroup_controller_dir(cg, "cpu"), *sd = cgroup_controller_dir(cg, "cpuset");
    const char *bd = cgroup_controller_dir(cg, "blkio");

    Grpc__LinuxResources r = fresh_res();
    r.memory = &mem;
    r.cpu = &cpu;
    r.pids = &pids;
    r.blockio = &blk;
    mem.limit = 64 * MiB;
    mem.swap = 128 * MiB;
    mem.reservation = 32 * MiB;
    mem.swappiness = 10;
    pids.limit = 42;
    cpu.shares = 512;
    cpu.quota = 50000;
    cpu.period = 100000;
    cpu.cpus = "0";
    cpu.mems = "0";
    blk.weight = 500;
    Grpc__LinuxThrottleDevice td = GRPC__LINUX_THROTTLE_DEVICE__INIT, *tdp = &td;
    td.major = 254;
    td.minor = 0;
    td.rate = MiB;
    blk.n_throttlereadbpsdevice = 1;
    blk.throttlereadbpsdevice = &tdp;
    CHECK_INT(apply(cg, &r, false, &e), 0);
    CHECK_STR(rdf(md, "memory.limit_in_bytes"), "67108864");
    CHECK_STR(rdf(md, "memory.memsw.limit_in_bytes"), "134217728");
    CHECK_STR(rdf(md, "memory.soft_limit_in_bytes"), "33554432");
    CHECK_STR(rdf(md, "memory.swappiness"), "10");
    CHECK_STR(rdf(pd, "pids.max"), "42");
    CHECK_STR(rdf(cd, "cpu.shares"), "512");
    CHECK_STR(rdf(cd, "cpu.cfs_quota_us"), "50000");
    CHECK_STR(rdf(cd, "cpu.cfs_period_us"), "100000");
    CHECK_STR(rdf(sd, "cpuset.cpus"), "0");
    CHECK_STR(rdf(sd, "cpuset.mems"), "0");
    CHECK_STR(rdf(bd, "blkio.bfq.weight"), "500");
    CHECK_STR(rdf(bd, "blkio.throttle.read_bps_device"), "254:0 1048576");

    /* growing then shrinking limit and memory+swap: the write order keeps memsw >= limit */
    r = fresh_res();
    r.memory = &mem;
    mem.limit = 128 * MiB;
    mem.swap = 256 * MiB;
    CHECK_INT(apply(cg, &r, true, &e), 0);
    CHECK_STR(rdf(md, "memory.limit_in_bytes"), "134217728");
    CHECK_STR(rdf(md, "memory.memsw.limit_in_bytes"), "268435456");
    CHECK_STR(rdf(md, "memory.swappiness"), "0"); /* always written (proto3 default 0) */
    mem.limit = 32 * MiB;
    mem.swap = 48 * MiB;
    CHECK_INT(apply(cg, &r, true, &e), 0);
    CHECK_STR(rdf(md, "memory.limit_in_bytes"), "33554432");
    CHECK_STR(rdf(md, "memory.memsw.limit_in_bytes"), "50331648");
    mem.limit = -1; /* swap follows */
    mem.swap = 0;
    CHECK_INT(apply(cg, &r, true, &e), 0);
    CHECK_STR(rdf(md, "memory.limit_in_bytes"), "9223372036854771712");
    CHECK_STR(rdf(md, "memory.memsw.limit_in_bytes"), "9223372036854771712");

    /* pids <= 0 -> max; zero cpu fields leave the values alone; quota -1 = unlimited */
    r = fresh_res();
    r.pids = &pids;
    r.cpu = &cpu;
    cpu.quota = -1;
    CHECK_INT(apply(cg, &r, true, &e), 0);
    CHECK_STR(rdf(pd, "pids.max"), "max");
    CHECK_STR(rdf(cd, "cpu.shares"), "512");
    CHECK_STR(rdf(cd, "cpu.cfs_quota_us"), "-1");
    CHECK_STR(rdf(cd, "cpu.cfs_period_us"), "100000");
    cpu.quota = 0;
    cpu.shares = 1; /* clamped like the kernel does */
    CHECK_INT(apply(cg, &r, true, &e), 0);
    CHECK_STR(rdf(cd, "cpu.shares"), "2");

    /* hugetlb: supported size but no v1 hugetlb hierarchy here -> skipped with a warning */
    r = fresh_res();
    Grpc__LinuxHugepageLimit hl = GRPC__LINUX_HUGEPAGE_LIMIT__INIT, *hlp = &hl;
    hl.pagesize = "2MB";
    hl.limit = 4 * MiB;
    r.n_hugepagelimits = 1;
    r.hugepagelimits = &hlp;
    CHECK_INT(apply(cg, &r, true, &e), 0);
    CHECK_INT(cgroup_apply(cg, NULL, true, &e), 0);
    destroy(cg);
    cleanup_all();
}

TEST(apply_v1_devices)
{
    ka_err e;
    struct cgroup *cg = mk(env1, "dev");
    NEED(cg);
    const char *dd = cgroup_controller_dir(cg, "devices");
    CHECK_STR(rdf(dd, "devices.list"), "a *:* rwm");
    Grpc__LinuxDeviceCgroup rules[4] = {GRPC__LINUX_DEVICE_CGROUP__INIT, GRPC__LINUX_DEVICE_CGROUP__INIT,
                                        GRPC__LINUX_DEVICE_CGROUP__INIT, GRPC__LINUX_DEVICE_CGROUP__INIT};
    Grpc__LinuxDeviceCgroup *rp[4] = {&rules[0], &rules[1], &rules[2], &rules[3]};
    rules[0].allow = 0; /* deny all: the spec starts with it, so it is written first */
    rules[0].type = "a";
    rules[0].major = rules[0].minor = -1;
    rules[0].access = "rwm";
    rules[1].allow = 1;
    rules[1].type = "c";
    rules[1].major = 10;
    rules[1].minor = 229;
    rules[1].access = "rwm";
    rules[2].allow = 1;
    rules[2].type = "b";
    rules[2].major = 7;
    rules[2].minor = -1; /* wildcard */
    rules[2].access = "r";
    rules[3].allow = 1;
    rules[3].type = "c";
    rules[3].major = 1;
    rules[3].minor = 11;
    rules[3].access = ""; /* empty = rwm */
    Grpc__LinuxResources r = fresh_res();
    r.n_devices = 4;
    r.devices = rp;
    CHECK_INT(apply(cg, &r, false, &e), 0);
    const char *list = rdf(dd, "devices.list");
    static const char *const want[] = {"c 10:229 rwm", "b 7:* r",   "c 1:11 rwm",  "c 1:3 rwm",
                                       "c 1:5 rwm",    "c 1:7 rwm", "c 5:0 rwm",   "c 1:9 rwm",
                                       "c 1:8 rwm",    "c *:* m",   "b *:* m",     "c 5:1 rwm",
                                       "c 136:* rwm",  "c 5:2 rwm", "c 10:200 rwm"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!has_line(list, want[i])) {
            printf("# devices.list lacks '%s':\n# %s\n", want[i], list);
            CHECK(0);
        }
    CHECK(!has_line(list, "a *:* rwm"));
    destroy(cg);

    /* kata's usual single rule (deny rw on the root disk) keeps the parent's allow-all */
    cg = mk(env1, "dev2");
    NEED(cg);
    rules[0].allow = 0;
    rules[0].type = "b";
    rules[0].major = 254;
    rules[0].minor = 0;
    rules[0].access = "rw";
    r.n_devices = 1;
    CHECK_INT(apply(cg, &r, false, &e), 0);
    CHECK_STR(rdf(cgroup_controller_dir(cg, "devices"), "devices.list"), "a *:* rwm");
    destroy(cg);
    cleanup_all();
}

/* Files an invalid apply must leave alone. */
static const char *const watch[][2] = {
    {"memory", "memory.limit_in_bytes"},
    {"memory", "memory.swappiness"},
    {"pids", "pids.max"},
    {"cpu", "cpu.shares"},
    {"cpuset", "cpuset.cpus"},
    {"blkio", "blkio.bfq.weight"},
    {"devices", "devices.list"},
    {"cpu", "cpu.cfs_quota_us"},
};
#define NWATCH (sizeof(watch) / sizeof(watch[0]))

static void snapshot(struct cgroup *cg, char *out[NWATCH])
{
    for (size_t i = 0; i < NWATCH; i++)
        out[i] = strdup(rdf(cgroup_controller_dir(cg, watch[i][0]), watch[i][1]));
}

TEST(apply_v1_invalid)
{
    ka_err e;
    struct cgroup *cg = mk(env1, "inval");
    NEED(cg);
    char *before[NWATCH], *after[NWATCH];
    snapshot(cg, before);
    Grpc__LinuxDeviceCgroup dv[2] = {GRPC__LINUX_DEVICE_CGROUP__INIT, GRPC__LINUX_DEVICE_CGROUP__INIT};
    Grpc__LinuxDeviceCgroup *dvp[2] = {&dv[0], &dv[1]};
    Grpc__LinuxHugepageLimit hl = GRPC__LINUX_HUGEPAGE_LIMIT__INIT, *hlp = &hl;
    Grpc__LinuxWeightDevice wd = GRPC__LINUX_WEIGHT_DEVICE__INIT, *wdp = &wd;
    Grpc__LinuxThrottleDevice td = GRPC__LINUX_THROTTLE_DEVICE__INIT, *tdp = &td;
    Grpc__LinuxNetwork net = GRPC__LINUX_NETWORK__INIT;
    Grpc__LinuxInterfacePriority ip = GRPC__LINUX_INTERFACE_PRIORITY__INIT, *ipp = &ip;
    for (int c = 0; c < 19; c++) {
        /* valid values that would change every watched file... */
        Grpc__LinuxResources r = fresh_res();
        r.memory = &mem;
        r.cpu = &cpu;
        r.pids = &pids;
        r.blockio = &blk;
        mem.limit = 16 * MiB;
        mem.swappiness = 30;
        pids.limit = 7;
        cpu.shares = 256;
        cpu.quota = 20000;
        cpu.cpus = "0";
        blk.weight = 300;
        dv[0].type = "a";
        dv[0].major = dv[0].minor = -1;
        dv[0].access = "rwm";
        dv[1].allow = 1;
        dv[1].type = "c";
        dv[1].major = 1;
        dv[1].minor = 3;
        dv[1].access = "rw";
        r.n_devices = 2;
        r.devices = dvp;
        const char *field = NULL;
        /* ...plus one invalid one */
        switch (c) {
        case 0:
            mem.swappiness = 101,
            field = "memory.swappiness: invalid value:101. valid memory swappiness range is 0-100";
            break;
        case 1:
            cpu.cpus = "0-", field = "cpu.cpus";
            break;
        case 2:
            cpu.cpus = "3-1", field = "cpu.cpus";
            break;
        case 3:
            cpu.mems = "0,,1", field = "cpu.mems";
            break;
        case 4:
            cpu.quota = 500, field = "cpu.quota";
            break;
        case 5:
            cpu.period = 100, field = "cpu.period";
            break;
        case 6:
            dv[1].type = "x", field = "devices[1].type";
            break;
        case 7:
            dv[0].access = "rwx", field = "devices[0].access";
            break;
        case 8:
            dv[1].major = -2, field = "devices[1]";
            break;
        case 9:
            hl.pagesize = "3MB", r.n_hugepagelimits = 1, r.hugepagelimits = &hlp,
            field = "hugepageLimits[0].pageSize";
            break;
        case 10:
            hl.pagesize = "big", r.n_hugepagelimits = 1, r.hugepagelimits = &hlp,
            field = "hugepageLimits[0].pageSize";
            break;
        case 11:
            blk.weight = 5, field = "blockIO.weight";
            break;
        case 12:
            wd.major = 254, wd.weight = 2000, blk.n_weightdevice = 1, blk.weightdevice = &wdp,
            field = "blockIO.weightDevice[0]";
            break;
        case 13:
            td.major = -1, blk.n_throttlereadbpsdevice = 1, blk.throttlereadbpsdevice = &tdp,
            field = "blockIO.throttleReadBpsDevice[0]";
            break;
        case 14:
            mem.limit = 64 * MiB, mem.swap = 32 * MiB,
            field = "memory.swap: memory+swap limit should be >= memory limit";
            break;
        case 15:
            mem.limit = -5, field = "memory.limit";
            break;
        case 16:
            ip.name = "eth 0", net.n_priorities = 1, net.priorities = &ipp, r.network = &net,
            field = "network.priorities[0].name";
            break;
        case 17:
            cpu.realtimeruntime = 2000, cpu.realtimeperiod = 1000, field = "cpu.realtimeRuntime";
            break;
        case 18:
            blk.leafweight = 1001, field = "blockIO.leafWeight";
            break;
        }
        CHECK_INT(apply(cg, &r, true, &e), -1);
        CHECK_INT(e.status, KA_INVALID_ARGUMENT);
        if (!contains(e.msg, fmt("linux.resources.%s", field))) {
            printf("# case %d: '%s' lacks '%s'\n", c, e.msg, field);
            CHECK(0);
        }
    }
    snapshot(cg, after);
    for (size_t i = 0; i < NWATCH; i++) {
        CHECK_STR(after[i], before[i]);
        free(before[i]);
        free(after[i]);
    }
    destroy(cg);
    cleanup_all();
}

TEST(procs_and_signal_v1)
{
    ka_err e;
    struct cgroup *cg = mk(env1, "procs");
    NEED(cg);
    pid_t a = sleeper(), b = sleeper();
    CHECK_INT(cgroup_enter(cg, a, &e), 0);
    for (size_t i = 0; i < sizeof(v1_names) / sizeof(v1_names[0]); i++) /* a is in every hierarchy */
        CHECK(contains(rdf(cgroup_controller_dir(cg, v1_names[i]), "cgroup.procs"), fmt("%d", a)));
    pid_t *v = NULL;
    size_t n = 0;
    CHECK_INT(cgroup_pids(cg, &v, &n, &e), 0);
    CHECK_INT(n, 1);
    CHECK(in_list(v, n, a));
    free(v);

    /* a child cgroup (as a container may create) is included */
    const char *sub = fmt("%s/sub", cgroup_controller_dir(cg, "memory"));
    CHECK_INT(mkdir(sub, 0755), 0);
    CHECK_INT(cgroup_enter(cg, b, &e), 0);
    int fd = open(fmt("%s/cgroup.procs", sub), O_WRONLY);
    CHECK(fd >= 0 && dprintf(fd, "%d", b) > 0);
    close(fd);
    CHECK(contains(rdf(sub, "cgroup.procs"), fmt("%d", b)));
    CHECK_INT(cgroup_pids(cg, &v, &n, &e), 0);
    CHECK_INT(n, 2);
    CHECK(in_list(v, n, a) && in_list(v, n, b));
    free(v);

    CHECK_INT(cgroup_signal_all(cg, SIGTERM, &e), 0);
    int sa = wait_dead(a), sb = wait_dead(b);
    CHECK(WIFSIGNALED(sa) && WTERMSIG(sa) == SIGTERM);
    CHECK(WIFSIGNALED(sb) && WTERMSIG(sb) == SIGTERM);
    CHECK_STR(rdf(cgroup_controller_dir(cg, "freezer"), "freezer.state"), "THAWED");
    CHECK_INT(cgroup_pids(cg, &v, &n, &e), 0);
    CHECK_INT(n, 0);
    free(v);
    destroy(cg); /* removes sub first */
    CHECK(!isdir(sub));
    cleanup_all();
}

TEST(freeze_v1)
{
    ka_err e;
    struct cgroup *cg = mk(env1, "frz");
    NEED(cg);
    const char *fd = cgroup_controller_dir(cg, "freezer");
    pid_t a = sleeper();
    CHECK_INT(cgroup_enter(cg, a, &e), 0);
    CHECK_INT(cgroup_freeze(cg, true, &e), 0);
    CHECK_STR(rdf(fd, "freezer.state"), "FROZEN");
    CHECK_INT(cgroup_freeze(cg, true, &e), 0); /* idempotent */
    CHECK_INT(cgroup_freeze(cg, false, &e), 0);
    CHECK_STR(rdf(fd, "freezer.state"), "THAWED");
    CHECK_INT(cgroup_signal_all(cg, SIGKILL, &e), 0);
    int st = wait_dead(a);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    destroy(cg);
    cleanup_all();
}

/* ---- freezing and signalling from an event loop ---- */

struct done_rec {
    int calls;
    bool failed;
    uint64_t at_ns; /* when it was called */
    ka_err err;
};

static void on_done(void *arg, const ka_err *err)
{
    struct done_rec *d = arg;
    d->calls++;
    d->at_ns = loop_now_ns();
    d->failed = err != NULL;
    if (err)
        d->err = *err;
}

/* Drive the loop until d has been called (or timeout_ms), then ms more to catch a second call. */
static void run_until(struct loop *l, struct done_rec *d, int timeout_ms, int ms_after)
{
    ka_err e;
    uint64_t end = loop_now_ns() + (uint64_t)timeout_ms * 1000000ULL;
    while (!d->calls && loop_now_ns() < end)
        loop_run_once(l, 5, &e);
    end = loop_now_ns() + (uint64_t)ms_after * 1000000ULL;
    while (loop_now_ns() < end)
        loop_run_once(l, 2, &e);
}

/* A child that burns CPU until killed: a freeze has to wait until it is off a CPU. */
static pid_t spinner(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (volatile unsigned long i = 0;; i++)
            ;
    }
    return pid;
}

/* A state reader for either version: "FROZEN"/"THAWED" (v1) or "frozen 1"/"frozen 0" (v2). */
static bool is_frozen_now(struct cgroup *cg, struct cgroup_env *env)
{
    if (cgroup_env_mode(env) == CGROUP_V1)
        return strcmp(rdf(cgroup_controller_dir(cg, "freezer"), "freezer.state"), "FROZEN") == 0;
    return contains(rdf(cgroup_controller_dir(cg, "x"), "cgroup.events"), "frozen 1");
}

static bool is_thawed_now(struct cgroup *cg, struct cgroup_env *env)
{
    if (cgroup_env_mode(env) == CGROUP_V1)
        return strcmp(rdf(cgroup_controller_dir(cg, "freezer"), "freezer.state"), "THAWED") == 0;
    return contains(rdf(cgroup_controller_dir(cg, "x"), "cgroup.events"), "frozen 0");
}

/* Freeze and thaw a cgroup with a sleeping child and two spinners, from the loop; done runs exactly once. */
static void freeze_async_on(struct cgroup_env *env, const char *leaf)
{
    ka_err e;
    struct loop *l = loop_new(&e);
    struct cgroup *cg = mk(env, leaf);
    NEED(l && cg);
    pid_t kids[3] = {sleeper(), spinner(), spinner()};
    for (int i = 0; i < 3; i++)
        CHECK_INT(cgroup_enter(cg, kids[i], &e), 0);

    struct done_rec d = {0};
    struct cgroup_freeze_op *op = cgroup_freeze_async(l, cg, true, on_done, &d, &e);
    NEED(op);
    CHECK_INT(d.calls, 0); /* never from inside the call */
    struct cgroup_freeze_op *again = cgroup_freeze_async(l, cg, false, on_done, &d, &e);
    CHECK(!again); /* one at a time */
    CHECK_INT(e.status, KA_FAILED_PRECONDITION);
    uint64_t t0 = loop_now_ns();
    run_until(l, &d, 3000, 30);
    printf("# %s: frozen after %.1f ms\n", leaf, (double)(d.at_ns - t0) / 1e6);
    CHECK_INT(d.calls, 1);
    CHECK(!d.failed);
    CHECK(is_frozen_now(cg, env));
    CHECK(cgroup_is_frozen(cg));

    struct done_rec same = {0}; /* already frozen: reported from a defer, not from inside the call */
    NEED(cgroup_freeze_async(l, cg, true, on_done, &same, &e));
    CHECK_INT(same.calls, 0);
    loop_run_once(l, 0, &e);
    CHECK_INT(same.calls, 1);
    CHECK(!same.failed);

    struct done_rec t = {0};
    NEED(cgroup_freeze_async(l, cg, false, on_done, &t, &e));
    run_until(l, &t, 3000, 30);
    CHECK_INT(t.calls, 1);
    CHECK(!t.failed);
    CHECK(is_thawed_now(cg, env));
    CHECK(!cgroup_is_frozen(cg));
    for (int i = 0; i < 3; i++)
        reap(kids[i]);
    destroy(cg);
    loop_free(l);
    cleanup_all();
}

TEST(freeze_async_v1)
{
    freeze_async_on(env1, "afrz");
}

TEST(freeze_async_v2)
{
    freeze_async_on(env2, "afrz2");
}

/* Cancelled before done ran: done never runs; a freeze is undone, a thaw stays; the cgroup is usable again.
 */
TEST(freeze_async_cancel)
{
    ka_err e;
    struct loop *l = loop_new(&e);
    struct cgroup *cg = mk(env1, "acancel");
    NEED(l && cg);
    const char *fz = cgroup_controller_dir(cg, "freezer");
    pid_t kids[3] = {sleeper(), spinner(), spinner()};
    for (int i = 0; i < 3; i++)
        CHECK_INT(cgroup_enter(cg, kids[i], &e), 0);

    struct done_rec d = {0};
    struct cgroup_freeze_op *op = cgroup_freeze_async(l, cg, true, on_done, &d, &e);
    NEED(op);
    printf("# state when cancelled: %s\n", rdf(fz, "freezer.state"));
    loop_run_once(l, 0,
                  &e); /* a round: mid-way, unless the freeze was immediate (then its defer is pending) */
    if (d.calls == 0) {
        cgroup_freeze_cancel(op);
        run_until(l, &d, 100, 0);
        CHECK_INT(d.calls, 0);
        CHECK_STR(rdf(fz, "freezer.state"), "THAWED");
        CHECK(!cgroup_is_frozen(cg));
    } else {
        printf("# the freeze was done in the first round: cancelled the next one instead\n");
    }

    /* a freeze (waited for), then a thaw cancelled at once */
    struct done_rec f = {0}, t = {0};
    NEED(cgroup_freeze_async(l, cg, true, on_done, &f, &e));
    run_until(l, &f, 3000, 0);
    CHECK(f.calls == 1 && !f.failed && cgroup_is_frozen(cg));
    op = cgroup_freeze_async(l, cg, false, on_done, &t, &e);
    NEED(op);
    cgroup_freeze_cancel(op);
    run_until(l, &t, 50, 0);
    CHECK_INT(t.calls, 0);
    CHECK_STR(rdf(fz, "freezer.state"), "THAWED");
    CHECK(!cgroup_is_frozen(cg));

    /* cancelling a freeze of a cgroup frozen already leaves it frozen */
    struct done_rec g = {0}, h = {0};
    NEED(cgroup_freeze_async(l, cg, true, on_done, &g, &e));
    run_until(l, &g, 3000, 0);
    op = cgroup_freeze_async(l, cg, true, on_done, &h, &e);
    NEED(op);
    cgroup_freeze_cancel(op);
    run_until(l, &h, 30, 0);
    CHECK_INT(h.calls, 0);
    CHECK_STR(rdf(fz, "freezer.state"), "FROZEN");
    CHECK(cgroup_is_frozen(cg));
    CHECK_INT(cgroup_signal_all(cg, SIGKILL, &e), 0); /* v1: kill each pid, then thaw so that they die */
    for (int i = 0; i < 3; i++) {
        int st = wait_dead(kids[i]);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    }
    CHECK(!cgroup_is_frozen(cg));
    destroy(cg);
    loop_free(l);
    cleanup_all();
}

/* Freeze, signal every process, thaw, from the loop; a frozen cgroup stays frozen; a cancel signals at once.
 */
TEST(signal_async_v1)
{
    ka_err e;
    struct loop *l = loop_new(&e);
    struct cgroup *cg = mk(env1, "asig");
    NEED(l && cg);
    const char *fz = cgroup_controller_dir(cg, "freezer");
    pid_t a = sleeper(), b = spinner();
    CHECK_INT(cgroup_enter(cg, a, &e), 0);
    CHECK_INT(cgroup_enter(cg, b, &e), 0);
    struct done_rec d = {0};
    NEED(cgroup_signal_all_async(l, cg, SIGTERM, on_done, &d, &e));
    CHECK_INT(d.calls, 0);
    run_until(l, &d, 5000, 20);
    CHECK_INT(d.calls, 1);
    CHECK(!d.failed);
    int sa = wait_dead(a), sb = wait_dead(b);
    CHECK(WIFSIGNALED(sa) && WTERMSIG(sa) == SIGTERM);
    CHECK(WIFSIGNALED(sb) && WTERMSIG(sb) == SIGTERM);
    CHECK_STR(rdf(fz, "freezer.state"), "THAWED");
    CHECK(!cgroup_is_frozen(cg));

    /* frozen (a paused container): signalled at once, left frozen; the signal arrives at the thaw */
    a = sleeper();
    CHECK_INT(cgroup_enter(cg, a, &e), 0);
    CHECK_INT(cgroup_freeze(cg, true, &e), 0);
    struct done_rec p = {0};
    NEED(cgroup_signal_all_async(l, cg, SIGTERM, on_done, &p, &e));
    run_until(l, &p, 1000, 20);
    CHECK(p.calls == 1 && !p.failed);
    CHECK_STR(rdf(fz, "freezer.state"), "FROZEN");
    CHECK(cgroup_is_frozen(cg));
    CHECK_INT(waitpid(a, NULL, WNOHANG), 0); /* still there, frozen */
    CHECK_INT(cgroup_freeze(cg, false, &e), 0);
    sa = wait_dead(a);
    CHECK(WIFSIGNALED(sa) && WTERMSIG(sa) == SIGTERM);

    /* cancelled before done: every process is signalled now, our freeze undone, done never called */
    a = sleeper();
    b = spinner();
    CHECK_INT(cgroup_enter(cg, a, &e), 0);
    CHECK_INT(cgroup_enter(cg, b, &e), 0);
    struct done_rec c = {0};
    struct cgroup_signal_op *op = cgroup_signal_all_async(l, cg, SIGTERM, on_done, &c, &e);
    NEED(op);
    cgroup_signal_cancel(op);
    run_until(l, &c, 50, 0);
    CHECK_INT(c.calls, 0);
    CHECK_STR(rdf(fz, "freezer.state"), "THAWED");
    CHECK(!cgroup_is_frozen(cg));
    sa = wait_dead(a);
    sb = wait_dead(b);
    CHECK(WIFSIGNALED(sa) && WTERMSIG(sa) == SIGTERM);
    CHECK(WIFSIGNALED(sb) && WTERMSIG(sb) == SIGTERM);
    destroy(cg);
    loop_free(l);
    cleanup_all();
}

TEST(destroy_busy_v1)
{
    ka_err e;
    struct cgroup *cg = mk(env1, "busy");
    NEED(cg);
    pid_t a = sleeper();
    CHECK_INT(cgroup_enter(cg, a, &e), 0);
    uint64_t t0 = loop_now_ns();
    CHECK_INT(cgroup_destroy(cg, &e), -1);
    CHECK(loop_now_ns() - t0 < 100 * 1000000ULL); /* one attempt, no sleeping */
    CHECK(contains(e.msg, cgp("busy")));
    CHECK(contains(e.msg, "processes remain"));
    CHECK_INT(e.errnum, EBUSY);
    CHECK(isdir(cgroup_controller_dir(cg, "memory")));
    reap(a);
    destroy(cg);
    cleanup_all();
}

static pid_t clone_into(int cgfd)
{
    struct clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = CLONE_INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.cgroup = (uint64_t)cgfd;
    fflush(stdout);
    long pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;)
            pause();
    }
    return (pid_t)pid;
}

TEST(lifecycle_v2)
{
    ka_err e;
    const char *before = strdup(rdf(UNIFIED, "cgroup.subtree_control"));
    struct cgroup *cg = mk(env2, "v2a");
    NEED(cg);
    const char *dir = cgroup_controller_dir(cg, "memory");
    CHECK_STR(dir, fmt(UNIFIED "%s", cgp("v2a")));
    CHECK_STR(cgroup_controller_dir(cg, "anything"), dir);
    CHECK(cgroup_v2_dirfd(cg) >= 0);
    const char *const *names, *const *dirs;
    CHECK_INT(cgroup_hierarchies(cg, &names, &dirs), 1);
    CHECK_STR(dirs[0], dir);
    struct cgroup *again = NULL;
    CHECK_INT(cgroup_create(env2, cgp("v2a"), &again, &e), -1);
    CHECK_INT(e.status, KA_ALREADY_EXISTS);
    CHECK_STR(rdf(UNIFIED, "cgroup.subtree_control"), before); /* the host's root is not ours */
    free((void *)before);

    pid_t a = sleeper(), b = clone_into(cgroup_v2_dirfd(cg));
    bool have_b = b > 0; /* valgrind does not know clone3 */
    if (!have_b)
        printf("# clone3(CLONE_INTO_CGROUP): %s: that part skipped\n", strerror(errno));
    CHECK(have_b || errno == ENOSYS);
    CHECK_INT(cgroup_enter(cg, a, &e), 0);
    pid_t *v = NULL;
    size_t n = 0;
    CHECK_INT(cgroup_pids(cg, &v, &n, &e), 0);
    CHECK_INT(n, have_b ? 2 : 1);
    CHECK(in_list(v, n, a) && (!have_b || in_list(v, n, b)));
    free(v);

    CHECK_INT(cgroup_freeze(cg, true, &e), 0);
    CHECK(contains(rdf(dir, "cgroup.events"), "frozen 1"));
    CHECK_INT(cgroup_freeze(cg, false, &e), 0);
    CHECK(contains(rdf(dir, "cgroup.events"), "frozen 0"));

    /* controllers this hybrid hierarchy lacks are skipped; v2-only validation still applies */
    Grpc__LinuxResources r = fresh_res();
    r.memory = &mem;
    r.pids = &pids;
    mem.limit = 64 * MiB;
    pids.limit = 5;
    CHECK_INT(apply(cg, &r, false, &e), 0);
    mem.limit = 0;
    mem.swap = 128 * MiB;
    CHECK_INT(apply(cg, &r, true, &e), -1);
    CHECK(contains(e.msg, "memory.swap: unable to set swap limit without memory limit"));

    CHECK_INT(cgroup_signal_all(cg, SIGKILL, &e), 0); /* cgroup.kill */
    int sa = wait_dead(a), sb = have_b ? wait_dead(b) : 0;
    CHECK(WIFSIGNALED(sa) && WTERMSIG(sa) == SIGKILL);
    CHECK(!have_b || (WIFSIGNALED(sb) && WTERMSIG(sb) == SIGKILL));
    destroy(cg);
    CHECK(!isdir(fmt(UNIFIED "%s", cgp("v2a"))));
    cleanup_all();
}

static int bpf_progs(int cgfd)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.query.target_fd = (uint32_t)cgfd;
    a.query.attach_type = BPF_CGROUP_DEVICE;
    if (syscall(__NR_bpf, BPF_PROG_QUERY, &a, sizeof(a)) < 0)
        return -1;
    return (int)a.query.prog_cnt;
}

/* Result bits of a child that opens devices from inside the cgroup. */
enum { NULL_RW = 1, KMSG_R = 2, KMSG_W = 4, FUSE_RW = 8 };

static int try_open(const char *p, int flags)
{
    int fd = open(p, flags | O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) {
        close(fd);
        return 1;
    }
    return errno == EPERM ? 0 : 2;
}

/* Fork a child that waits until it is in the cgroup, then reports which opens work (exit 64+ = other errno).
 */
static int probe_devices(struct cgroup *cg)
{
    int p[2];
    if (pipe(p) < 0)
        return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        close(p[1]);
        if (read(p[0], &c, 1) != 1)
            _exit(99);
        int r[4] = {try_open("/dev/null", O_RDWR), try_open("/dev/kmsg", O_RDONLY),
                    try_open("/dev/kmsg", O_WRONLY), try_open("/dev/fuse", O_RDWR)};
        int bits = 0;
        for (int i = 0; i < 4; i++) {
            if (r[i] == 2)
                _exit(64 + i);
            bits |= r[i] << i;
        }
        _exit(bits);
    }
    close(p[0]);
    ka_err e;
    int ok = cgroup_enter(cg, pid, &e) == 0;
    if (write(p[1], "x", 1) != 1)
        ok = 0;
    close(p[1]);
    int st = 0;
    if (!ok)
        kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return ok && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(devices_bpf_v2)
{
    ka_err e;
    struct cgroup *cg = mk(env2, "v2d");
    NEED(cg);
    int fd = cgroup_v2_dirfd(cg);
    CHECK_INT(bpf_progs(fd), 0);
    CHECK_INT(probe_devices(cg), NULL_RW | KMSG_R | KMSG_W | FUSE_RW);

    Grpc__LinuxDeviceCgroup dv[2] = {GRPC__LINUX_DEVICE_CGROUP__INIT, GRPC__LINUX_DEVICE_CGROUP__INIT};
    Grpc__LinuxDeviceCgroup *dvp[2] = {&dv[0], &dv[1]};
    dv[0].type = "a"; /* deny all, then allow reading /dev/kmsg */
    dv[0].major = dv[0].minor = -1;
    dv[0].access = "rwm";
    dv[1].allow = 1;
    dv[1].type = "c";
    dv[1].major = 1;
    dv[1].minor = 11;
    dv[1].access = "r";
    Grpc__LinuxResources r = fresh_res();
    r.n_devices = 2;
    r.devices = dvp;
    CHECK_INT(apply(cg, &r, false, &e), 0);
    CHECK_INT(bpf_progs(fd), 1);
    CHECK_INT(probe_devices(cg), NULL_RW | KMSG_R); /* defaults allowed; kmsg read-only; fuse denied */

    r.n_devices = 1; /* update: deny all; the program is replaced, not stacked */
    CHECK_INT(apply(cg, &r, true, &e), 0);
    CHECK_INT(bpf_progs(fd), 1);
    CHECK_INT(probe_devices(cg), NULL_RW);

    dv[0].type = "c"; /* no deny-all: only the named device is denied (as on v1) */
    dv[0].major = 1;
    dv[0].minor = 11;
    dv[0].access = "w";
    CHECK_INT(apply(cg, &r, true, &e), 0);
    CHECK_INT(bpf_progs(fd), 1);
    CHECK_INT(probe_devices(cg), NULL_RW | KMSG_R | FUSE_RW);

    Grpc__LinuxResources none = fresh_res(); /* no rules: program kept */
    CHECK_INT(apply(cg, &none, true, &e), 0);
    CHECK_INT(bpf_progs(fd), 1);

    dv[0].access = "rwq";
    CHECK_INT(apply(cg, &r, true, &e), -1);
    CHECK_INT(e.status, KA_INVALID_ARGUMENT);
    CHECK_INT(bpf_progs(fd), 1);

    CHECK_INT(destroy_retry(cg, &e), 0);
    CHECK(!isdir(fmt(UNIFIED "%s", cgp("v2d"))));
    cgroup_free(cg);
    cleanup_all();
}

TEST(zz_no_leftovers)
{
    cgroup_env_free(env1);
    cgroup_env_free(env2);
    env1 = env2 = NULL;
    cleanup_all();
    CHECK_INT(leftovers(), 0);
}

RUN(aa_setup, path_for_table, detect_host, create_v1, apply_v1_values, apply_v1_devices, apply_v1_invalid,
    procs_and_signal_v1, freeze_v1, freeze_async_v1, freeze_async_v2, freeze_async_cancel, signal_async_v1,
    destroy_busy_v1, lifecycle_v2, devices_bpf_v2, zz_no_leftovers)
