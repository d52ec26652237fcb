/* Unit tests for runtime/creds: prepare validation and the child-side sequence in forked children (root). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/creds.h"
#include "unit.h"
#include "util/cleanup.h"

#define NBS_MASK "0000000000000400" /* CAP_NET_BIND_SERVICE (10) only */

/* ---- message builders ---- */

static Grpc__LinuxCapabilities caps_msg(char **names, size_t n)
{
    Grpc__LinuxCapabilities c = GRPC__LINUX_CAPABILITIES__INIT;
    c.bounding = c.effective = c.inheritable = c.permitted = c.ambient = names;
    c.n_bounding = c.n_effective = c.n_inheritable = c.n_permitted = c.n_ambient = n;
    return c;
}

static Grpc__POSIXRlimit rlimit_msg(const char *type, uint64_t soft, uint64_t hard)
{
    Grpc__POSIXRlimit r = GRPC__POSIXRLIMIT__INIT;
    r.type = (char *)type;
    r.soft = soft;
    r.hard = hard;
    return r;
}

static void expect_invalid(int rc, const ka_err *e, const char *want)
{
    CHECK_INT(rc, -1);
    CHECK_INT(e->status, KA_INVALID_ARGUMENT);
    if (!strstr(e->msg, want))
        printf("# message '%s' lacks '%s'\n", e->msg, want);
    CHECK(strstr(e->msg, want) != NULL);
}

/* ---- child runner: checks in the child report the failing line through a pipe ---- */

static int child_fd = -1;

static void child_fail(int line, const char *what)
{
    dprintf(child_fd, "line %d: %s (errno %d)\n", line, what, errno);
    _exit(1);
}
#define CCHECK(cond)                                                                                         \
    do {                                                                                                     \
        if (!(cond))                                                                                         \
            child_fail(__LINE__, #cond);                                                                     \
    } while (0)
#define CCALL(call)                                                                                          \
    do {                                                                                                     \
        ka_err _e = {0};                                                                                     \
        if ((call) != 0) {                                                                                   \
            dprintf(child_fd, "%s: %s\n", #call, _e.msg);                                                    \
            child_fail(__LINE__, #call);                                                                     \
        }                                                                                                    \
    } while (0)

typedef void (*child_fn)(const void *arg);

static int run_child(child_fn fn, const void *arg)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        child_fd = p[1];
        fn(arg);
        _exit(0);
    }
    close(p[1]);
    char buf[512];
    ssize_t n;
    while ((n = read(p[0], buf, sizeof(buf) - 1)) > 0) {
        buf[n] = '\0';
        printf("# child: %s", buf);
    }
    close(p[0]);
    int st = -1;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Value of "key:\t<value>\n" in /proc/self/status, copied into out. */
static const char *status_field(const char *key, char *out, size_t outsz)
{
    char buf[8192], pat[64];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (fd >= 0)
        close(fd);
    out[0] = '\0';
    if (n <= 0)
        return out;
    buf[n] = '\0';
    snprintf(pat, sizeof(pat), "\n%s:\t", key);
    const char *p = strstr(buf, pat);
    if (p) {
        p += strlen(pat);
        size_t len = strcspn(p, "\n");
        snprintf(out, outsz, "%.*s", (int)len, p);
    }
    return out;
}
#define CFIELD(key, want)                                                                                    \
    do {                                                                                                     \
        char _v[128];                                                                                        \
        if (strcmp(status_field(key, _v, sizeof(_v)), want) != 0)                                            \
            dprintf(child_fd, "%s is '%s', expected '%s'\n", key, _v, want);                                 \
        CCHECK(strcmp(_v, want) == 0);                                                                       \
    } while (0)

/* ---- prepare ---- */

TEST(caps_prepare_errors)
{
    static const char *bad[] = {"CAP_FOO",    "cap_chown", "CHOWN", "CAP_CHOWNX",
                                "CAP_CHOWN2", "12",        "",      "CAP_"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char *names[] = {"CAP_CHOWN", (char *)bad[i]};
        Grpc__LinuxCapabilities c = caps_msg(names, 2);
        c.n_bounding = 1; /* the bad name is only in the other sets */
        struct caps_sets s;
        ka_err e = {0};
        expect_invalid(caps_prepare(&c, &s, &e), &e, bad[i][0] ? bad[i] : "\"\"");
        CHECK(strstr(e.msg, "effective") != NULL);
    }
}

TEST(caps_prepare_ok)
{
    char *names[] = {"CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE"};
    Grpc__LinuxCapabilities c = caps_msg(names, 4);
    c.n_ambient = 1;
    c.n_inheritable = 0;
    struct caps_sets s;
    ka_err e = {0};
    CHECK_INT(caps_prepare(&c, &s, &e), 0);
    uint64_t want = (1ull << CAP_CHOWN) | (1ull << CAP_NET_BIND_SERVICE) | (1ull << CAP_SYS_ADMIN);
    if (cap_max_bits() > 40)
        want |= 1ull << 40; /* CAP_CHECKPOINT_RESTORE, skipped with a warning on older kernels */
    CHECK_INT(s.bounding, want);
    CHECK_INT(s.effective, want);
    CHECK_INT(s.permitted, want);
    CHECK_INT(s.inheritable, 0);
    CHECK_INT(s.ambient, 1ull << CAP_CHOWN);
    CHECK_INT(caps_prepare(NULL, &s, &e), 0);
    CHECK_INT(s.bounding | s.effective | s.permitted | s.inheritable | s.ambient, 0);
}

TEST(creds_prepare_errors)
{
    Grpc__Process p = GRPC__PROCESS__INIT;
    Grpc__POSIXRlimit r[2] = {rlimit_msg("RLIMIT_NOFILE", 1, 2), rlimit_msg("RLIMIT_FOO", 1, 2)};
    Grpc__POSIXRlimit *rp[2] = {&r[0], &r[1]};
    static struct creds c;
    ka_err e = {0};
    p.rlimits = rp;
    p.n_rlimits = 2;
    expect_invalid(creds_prepare(&p, &c, &e), &e, "RLIMIT_FOO");
    r[1] = rlimit_msg("RLIMIT_CORE", 10, 5);
    expect_invalid(creds_prepare(&p, &c, &e), &e, "rlimits[1]");
    CHECK(strstr(e.msg, "RLIMIT_CORE") != NULL);
    r[1] = rlimit_msg("rlimit_core", 1, 5);
    expect_invalid(creds_prepare(&p, &c, &e), &e, "rlimit_core");
    p.n_rlimits = 0;
    p.oomscoreadj = 1001;
    expect_invalid(creds_prepare(&p, &c, &e), &e, "oom_score_adj");
    p.oomscoreadj = -1001;
    expect_invalid(creds_prepare(&p, &c, &e), &e, "-1001");
    p.oomscoreadj = 0;
    static uint32_t gids[CREDS_MAX_GIDS + 1];
    Grpc__User u = GRPC__USER__INIT;
    u.additionalgids = gids;
    u.n_additionalgids = CREDS_MAX_GIDS + 1;
    p.user = &u;
    expect_invalid(creds_prepare(&p, &c, &e), &e, "gids");
}

TEST(creds_prepare_ok)
{
    Grpc__Process p = GRPC__PROCESS__INIT;
    Grpc__User u = GRPC__USER__INIT;
    uint32_t gids[] = {10, 20};
    Grpc__POSIXRlimit r[2] = {rlimit_msg("RLIMIT_NOFILE", 100, 200), rlimit_msg("RLIMIT_CORE", 0, 0)};
    Grpc__POSIXRlimit *rp[2] = {&r[0], &r[1]};
    static struct creds c;
    ka_err e = {0};
    u.uid = 1000;
    u.gid = 1001;
    u.additionalgids = gids;
    u.n_additionalgids = 2;
    p.user = &u;
    p.rlimits = rp;
    p.n_rlimits = 2;
    p.nonewprivileges = 1;
    p.oomscoreadj = -1000;
    CHECK_INT(creds_prepare(&p, &c, &e), 0);
    CHECK_INT(c.uid, 1000);
    CHECK_INT(c.gid, 1001);
    CHECK_INT(c.n_gids, 2);
    CHECK_INT(c.gids[1], 20);
    CHECK(c.no_new_privs);
    CHECK_INT(c.oom_score_adj, -1000);
    CHECK_INT(c.n_rlimits, 2);
    CHECK_INT(c.rlimits[0].resource, RLIMIT_NOFILE);
    CHECK_INT(c.rlimits[0].lim.rlim_cur, 100);
    CHECK_INT(c.rlimits[0].lim.rlim_max, 200);
    CHECK_INT(c.rlimits[1].resource, RLIMIT_CORE);
    CHECK_INT(creds_prepare(NULL, &c, &e), 0);
    CHECK_INT(c.uid + c.gid + c.n_gids + c.n_rlimits + c.no_new_privs + c.oom_score_adj, 0);
}

/* ---- child side ---- */

struct scenario {
    struct creds creds;
    struct caps_sets caps;
};

static void prepare_full(struct scenario *s)
{
    Grpc__Process p = GRPC__PROCESS__INIT;
    Grpc__User u = GRPC__USER__INIT;
    uint32_t gids[] = {10, 20};
    Grpc__POSIXRlimit r[2] = {rlimit_msg("RLIMIT_NOFILE", 100, 200), rlimit_msg("RLIMIT_CORE", 0, 0)};
    Grpc__POSIXRlimit *rp[2] = {&r[0], &r[1]};
    char *names[] = {"CAP_NET_BIND_SERVICE"};
    Grpc__LinuxCapabilities c = caps_msg(names, 1);
    ka_err e = {0};
    u.uid = 1000;
    u.gid = 1000;
    u.additionalgids = gids;
    u.n_additionalgids = 2;
    p.user = &u;
    p.rlimits = rp;
    p.n_rlimits = 2;
    p.nonewprivileges = 1;
    p.oomscoreadj = 500; /* raising needs no privilege (lowering needs CAP_SYS_RESOURCE) */
    CHECK_INT(creds_prepare(&p, &s->creds, &e), 0);
    CHECK_INT(caps_prepare(&c, &s->caps, &e), 0);
}

static void check_limits(void)
{
    struct rlimit rl;
    CCHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur == 100 && rl.rlim_max == 200);
    CCHECK(getrlimit(RLIMIT_CORE, &rl) == 0 && rl.rlim_cur == 0 && rl.rlim_max == 0);
    char buf[16] = {0};
    int fd = open("/proc/self/oom_score_adj", O_RDONLY | O_CLOEXEC);
    CCHECK(fd >= 0 && read(fd, buf, sizeof(buf) - 1) > 0);
    close(fd);
    CCHECK(strcmp(buf, "500\n") == 0);
}

static void check_ids(void)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg, groups[8];
    CCHECK(getresuid(&ru, &eu, &su) == 0 && ru == 1000 && eu == 1000 && su == 1000);
    CCHECK(getresgid(&rg, &eg, &sg) == 0 && rg == 1000 && eg == 1000 && sg == 1000);
    int n = getgroups(8, groups);
    CCHECK(n == 2 && groups[0] == 10 && groups[1] == 20);
}

/* The order of spec 4.6: limits, ids, NNP, (seccomp), capabilities. */
static void child_full(const void *arg)
{
    const struct scenario *s = arg;
    char prm[32];
    CCALL(creds_apply_limits(&s->creds, &_e));
    check_limits();
    CCALL(creds_apply_ids(&s->creds, &_e));
    check_ids();
    /* effective raised back to permitted after the uid change, KEEPCAPS reset */
    CFIELD("CapEff", status_field("CapPrm", prm, sizeof(prm)));
    CCHECK(strcmp(prm, "0000000000000000") != 0);
    CCHECK(prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0) == 0);
    CCALL(creds_apply_nnp(&s->creds, &_e));
    CFIELD("NoNewPrivs", "1");
    CCALL(caps_apply(&s->caps, &_e));
    CFIELD("CapEff", NBS_MASK);
    CFIELD("CapPrm", NBS_MASK);
    CFIELD("CapBnd", NBS_MASK);
    CFIELD("CapInh", NBS_MASK);
    CFIELD("CapAmb", NBS_MASK);
}

TEST(apply_full_sequence)
{
    static struct scenario s;
    prepare_full(&s);
    CHECK(run_child(child_full, &s));
}

/* No additional gids: the agent's supplementary groups are not inherited (deliberate upstream deviation);
 * uid 0 keeps every capability; NNP off stays off. */
static void child_root_no_gids(const void *arg)
{
    const struct creds *c = arg;
    gid_t g[] = {5, 6};
    char eff[32];
    status_field("CapEff", eff, sizeof(eff));
    CCHECK(setgroups(2, g) == 0);
    CCALL(creds_apply_limits(c, &_e));
    CCALL(creds_apply_ids(c, &_e));
    CCHECK(getgroups(0, NULL) == 0);
    CCHECK(getuid() == 0 && getgid() == 0);
    CFIELD("CapEff", eff);
    CCALL(creds_apply_nnp(c, &_e));
    CFIELD("NoNewPrivs", "0");
    char buf[16] = {0};
    int fd = open("/proc/self/oom_score_adj", O_RDONLY | O_CLOEXEC);
    CCHECK(fd >= 0 && read(fd, buf, sizeof(buf) - 1) > 0);
    close(fd);
    CCHECK(strcmp(buf, "0\n") == 0);
}

TEST(apply_root_without_gids)
{
    static struct creds c;
    Grpc__Process p = GRPC__PROCESS__INIT;
    ka_err e = {0};
    CHECK_INT(creds_prepare(&p, &c, &e), 0);
    CHECK(run_child(child_root_no_gids, &c));
}

/* Errors from the child-side functions: effective not within permitted, setrlimit above the hard limit
 * without CAP_SYS_RESOURCE. */
static void child_errors(const void *arg)
{
    (void)arg;
    ka_err e = {0};
    struct caps_sets bad = {.bounding = ~0ull, .effective = 1ull << CAP_CHOWN, .permitted = 0};
    CCHECK(caps_apply(&bad, &e) == -1 && e.errnum == EPERM && strstr(e.msg, "capabilities"));
    struct creds c = {.n_rlimits = 1};
    c.rlimits[0].resource = RLIMIT_NOFILE;
    c.rlimits[0].lim = (struct rlimit){.rlim_cur = 10, .rlim_max = 10};
    CCALL(creds_apply_limits(&c, &_e));
    c.rlimits[0].lim = (struct rlimit){.rlim_cur = 20, .rlim_max = 20};
    struct caps_sets none = {0};
    CCALL(caps_apply(&none, &_e)); /* no CAP_SYS_RESOURCE any more: cannot raise the hard limit */
    CCHECK(creds_apply_limits(&c, &e) == -1 && e.errnum == EPERM && strstr(e.msg, "RLIMIT_NOFILE"));
    CFIELD("CapBnd", "0000000000000000");
}

TEST(apply_errors)
{
    CHECK(run_child(child_errors, NULL));
}

RUN(caps_prepare_errors, caps_prepare_ok, creds_prepare_errors, creds_prepare_ok, apply_full_sequence,
    apply_root_without_gids, apply_errors)
