/* cgroups v1 and v2: layout detection, per-container cgroups, resources, device eBPF, freezing, removal. */
#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../loop/loop.h"
#include "../util/cleanup.h"
#include "../util/fs.h"
#include "../util/log.h"

#define SUB            "cgroups"
#define WAIT_MS        2000 /* freezer state changes */
#define STEP_MAX_MS    10   /* between two checks of the freezer state: 1, 2, 4, 8, 10, 10... ms */
#define REWRITE_MS     100  /* v1: FROZEN is written again this often while a freeze is waited for */
#define MS_NS          1000000ULL
#define MAX_DEPTH      64 /* nested cgroups walked by pids/destroy */
#define HUGEPAGES_DIR  "/sys/kernel/mm/hugepages"
#define ACC_ALL        (BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD)
#define CPU_PERIOD_MIN 1000ULL /* µs, kernel limits of cfs_period_us / cpu.max */
#define CPU_PERIOD_MAX 1000000ULL

/* ======================================================================================================
 * Small helpers
 * ====================================================================================================== */

struct strv {
    char **v;
    size_t n, cap;
};

static int strv_push(struct strv *s, const char *str, ka_err *e)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        char **nv = realloc(s->v, cap * sizeof(*nv));
        if (!nv)
            return ka_fail_errno(e, ENOMEM, "cgroups");
        s->v = nv;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(str)))
        return ka_fail_errno(e, ENOMEM, "cgroups");
    s->n++;
    return 0;
}

static bool strv_has(const struct strv *s, const char *str)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], str) == 0)
            return true;
    return false;
}

static void strv_free(struct strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* Is tok one of the separated words of list ("cpu,cpuacct" / "cpu io memory")? */
static bool has_word(const char *list, const char *tok, const char *seps)
{
    size_t n = strlen(tok);
    for (const char *p = list; *p;) {
        size_t w = strcspn(p, seps);
        if (w == n && strncmp(p, tok, n) == 0)
            return true;
        p += w;
        p += strspn(p, seps);
    }
    return false;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int path_join(char *buf, size_t n, const char *dir, const char *file, ka_err *e)
{
    int r = snprintf(buf, n, "%s/%s", dir, file);
    if (r < 0 || (size_t)r >= n)
        return ka_fail(e, KA_INVALID_ARGUMENT, "path too long: %s/%s", dir, file);
    return 0;
}

static bool file_exists(const char *dir, const char *file)
{
    char p[PATH_MAX];
    ka_err e;
    return path_join(p, sizeof(p), dir, file, &e) == 0 && access(p, F_OK) == 0;
}

/* The undo log of a live update: the previous value of each single-line file written, put back in reverse
 * order when a later write is refused (a memory limit below usage: EBUSY), so that a failed UpdateContainer
 * leaves the container as it was. Multi-line files (device rules, per-device throttles of several
 * devices, ifpriomap) are not journaled. The agent is one thread: one update at a time. */
struct undo_entry {
    char path[PATH_MAX];
    char old[128];
};
static struct {
    bool on;
    size_t n, cap;
    struct undo_entry *v;
} undo;

static void undo_record(const char *path)
{
    char buf[sizeof(undo.v[0].old)];
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
    if (n <= 0 || (size_t)n == sizeof(buf) - 1)
        return; /* unreadable, empty or long: nothing that can be written back */
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    if (n == 0 || strchr(buf, '\n'))
        return;
    if (undo.n == undo.cap) {
        size_t cap = undo.cap ? undo.cap * 2 : 16;
        struct undo_entry *v = realloc(undo.v, cap * sizeof(*v));
        if (!v)
            return;
        undo.v = v;
        undo.cap = cap;
    }
    snprintf(undo.v[undo.n].path, sizeof(undo.v[0].path), "%s", path);
    memcpy(undo.v[undo.n].old, buf, (size_t)n + 1);
    undo.n++;
}

static void undo_replay(void)
{
    for (size_t i = undo.n; i-- > 0;) {
        cleanup_close int fd = open(undo.v[i].path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        size_t len = strlen(undo.v[i].old);
        if (fd < 0 || write(fd, undo.v[i].old, len) != (ssize_t)len)
            log_warn(SUB, "could not restore '%s' to %s: %s", undo.v[i].old, undo.v[i].path, strerror(errno));
    }
}

static void undo_end(void)
{
    free(undo.v);
    memset(&undo, 0, sizeof(undo));
}

/* Write val to dir/file in one write. missing_ok: a file that does not exist (v2 controller not enabled,
 * knob absent from this kernel) is logged and skipped. */
static int wr(const char *dir, const char *file, const char *val, bool missing_ok, ka_err *e)
{
    char p[PATH_MAX];
    if (path_join(p, sizeof(p), dir, file, e) < 0)
        return -1;
    if (undo.on)
        undo_record(p);
    cleanup_close int fd = open(p, O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT && missing_ok) {
            log_warn(SUB, "%s does not exist (controller not available): '%s' not applied", p, val);
            return 0;
        }
        return ka_fail_errno(e, errno, "open %s", p);
    }
    size_t len = strlen(val);
    ssize_t w = write(fd, val, len);
    if (w < 0)
        return ka_fail_errno(e, errno, "write '%s' to %s", val, p);
    if ((size_t)w != len)
        return ka_fail(e, KA_INTERNAL, "short write of '%s' to %s", val, p);
    return 0;
}

static int wrf(const char *dir, const char *file, bool missing_ok, ka_err *e, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int wrf(const char *dir, const char *file, bool missing_ok, ka_err *e, const char *fmt, ...)
{
    char val[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(val))
        return ka_fail(e, KA_INVALID_ARGUMENT, "value for %s/%s too long", dir, file);
    return wr(dir, file, val, missing_ok, e);
}

/* Read dir/file with trailing whitespace removed. */
static int rd(const char *dir, const char *file, char **out, ka_err *e)
{
    char p[PATH_MAX];
    if (path_join(p, sizeof(p), dir, file, e) < 0 || fs_read_file(p, out, NULL, e) < 0)
        return -1;
    size_t n = strlen(*out);
    while (n > 0 && ((*out)[n - 1] == '\n' || (*out)[n - 1] == ' '))
        (*out)[--n] = '\0';
    return 0;
}

/* ======================================================================================================
 * Layout detection (/proc/self/mountinfo)
 * ====================================================================================================== */

struct hier {
    char *mnt;  /* mount point */
    char *name; /* basename of the mount point ("cpu,cpuacct", "memory"; "" for a cgroup2 root) */
    char *ctls; /* controllers, comma separated ("cpu,cpuacct", "name=systemd"); "" on v2 */
    char dev[32];
};

struct cgroup_env {
    enum cgroup_mode mode;
    bool owns_root; /* v2 at root itself: controllers are enabled from the hierarchy root down */
    size_t n;
    struct hier *h; /* v1: every hierarchy; v2: the one cgroup2 mount */
};

static const char *const v1_known[] = {
    "cpuset",   "cpu",        "cpuacct", "blkio", "memory", "devices", "freezer", "net_cls",
    "net_prio", "perf_event", "hugetlb", "pids",  "rdma",   "misc",    "debug",
};

struct mi_entry {
    const char *dev, *fstype, *superopts;
    char *mnt;
};

static void unescape_octal(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' &&
            r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* One mountinfo line: "id parent maj:min root mountpoint opts [optional...] - fstype source superopts". */
static bool mi_parse(char *line, struct mi_entry *m)
{
    char *f[64], *save = NULL;
    size_t n = 0;
    for (char *t = strtok_r(line, " ", &save); t && n < ARRAY_SIZE(f); t = strtok_r(NULL, " ", &save))
        f[n++] = t;
    size_t dash = 6;
    while (dash < n && strcmp(f[dash], "-") != 0)
        dash++;
    if (n < 10 || dash + 3 >= n)
        return false;
    unescape_octal(f[4]);
    m->dev = f[2];
    m->mnt = f[4];
    m->fstype = f[dash + 1];
    m->superopts = f[dash + 3];
    return true;
}

static void hier_free(struct hier *h)
{
    free(h->mnt);
    free(h->name);
    free(h->ctls);
}

static void hiers_drop_all(struct cgroup_env *env)
{
    for (size_t i = 0; i < env->n; i++)
        hier_free(&env->h[i]);
    env->n = 0;
}

static void hiers_drop_mnt(struct cgroup_env *env, const char *mnt)
{
    for (size_t i = 0; i < env->n; i++) {
        if (strcmp(env->h[i].mnt, mnt) == 0) {
            hier_free(&env->h[i]);
            env->h[i] = env->h[--env->n];
            return;
        }
    }
}

/* v1 controllers named in the super options ("rw,cpu,cpuacct" -> "cpu,cpuacct"). */
static char *v1_controllers(const char *superopts)
{
    char buf[512] = "";
    size_t len = 0;
    for (const char *p = superopts; *p;) {
        size_t w = strcspn(p, ",");
        bool keep = w > 5 && strncmp(p, "name=", 5) == 0;
        for (size_t i = 0; !keep && i < ARRAY_SIZE(v1_known); i++)
            keep = strlen(v1_known[i]) == w && strncmp(p, v1_known[i], w) == 0;
        if (keep && len + w + 2 < sizeof(buf)) {
            len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%.*s", len ? "," : "", (int)w, p);
        }
        p += w;
        p += strspn(p, ",");
    }
    return strdup(buf);
}

static int hier_add(struct cgroup_env *env, size_t *cap, const struct mi_entry *m, bool v2, ka_err *e)
{
    for (size_t i = 0; i < env->n; i++)
        if (strcmp(env->h[i].dev, m->dev) == 0)
            return 0; /* the same hierarchy mounted twice: keep the first */
    if (env->n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        struct hier *nh = realloc(env->h, c * sizeof(*nh));
        if (!nh)
            return ka_fail_errno(e, ENOMEM, "cgroups");
        env->h = nh;
        *cap = c;
    }
    struct hier *h = &env->h[env->n];
    const char *base = strrchr(m->mnt, '/');
    h->mnt = strdup(m->mnt);
    h->name = strdup(v2 ? "" : base + 1);
    h->ctls = v2 ? strdup("") : v1_controllers(m->superopts);
    snprintf(h->dev, sizeof(h->dev), "%s", m->dev);
    if (!h->mnt || !h->name || !h->ctls) {
        hier_free(h);
        return ka_fail_errno(e, ENOMEM, "cgroups");
    }
    env->n++;
    return 0;
}

/* Remember every cgroup/cgroup2 mount at root or directly below it; a later mount on the same mount point
 * hides the earlier one (and one on root hides everything below). cgroup2 mounts get dev "2:<maj:min>" so
 * they are told apart from v1 ones when choosing the mode. */
static int scan_line(struct cgroup_env *env, size_t *cap, const char *root, struct mi_entry *m, ka_err *e)
{
    bool v1 = strcmp(m->fstype, "cgroup") == 0, v2 = strcmp(m->fstype, "cgroup2") == 0;
    size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root); /* so that "/x" is below "/" */
    bool at_root = strcmp(m->mnt, root) == 0;
    bool below = strncmp(m->mnt, root, rl) == 0 && m->mnt[rl] == '/' && m->mnt[rl + 1] &&
                 !strchr(m->mnt + rl + 1, '/');
    if (at_root)
        hiers_drop_all(env);
    else if (below)
        hiers_drop_mnt(env, m->mnt);
    if ((!at_root && !below) || (!v1 && !v2) || (at_root && v1))
        return 0;
    char dev[32];
    snprintf(dev, sizeof(dev), "%s%s", v2 ? "2:" : "", m->dev);
    struct mi_entry tagged = *m;
    tagged.dev = dev;
    return hier_add(env, cap, &tagged, v2, e);
}

static int scan_mountinfo(struct cgroup_env *env, const char *root, ka_err *e)
{
    cleanup_free char *text = NULL;
    if (fs_read_file("/proc/self/mountinfo", &text, NULL, e) < 0)
        return -1;
    size_t cap = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        struct mi_entry m;
        if (mi_parse(line, &m) && scan_line(env, &cap, root, &m, e) < 0)
            return -1;
    }
    return 0;
}

static bool hier_is_v2(const struct hier *h)
{
    return strncmp(h->dev, "2:", 2) == 0;
}

/* Keep only the hierarchies of the chosen mode (v2: the single cgroup2 mount at index keep). */
static void env_select(struct cgroup_env *env, enum cgroup_mode mode, size_t keep)
{
    env->mode = mode;
    size_t w = 0;
    for (size_t i = 0; i < env->n; i++) {
        bool want = mode == CGROUP_V2 ? i == keep : !hier_is_v2(&env->h[i]);
        if (want)
            env->h[w++] = env->h[i];
        else
            hier_free(&env->h[i]);
    }
    env->n = w;
}

int cgroup_env_detect(const char *root, bool prefer_unified, struct cgroup_env **out, ka_err *e)
{
    char rootbuf[PATH_MAX];
    if (!realpath(root, rootbuf))
        return ka_fail_errno(e, errno, "cgroup root %s", root);
    struct cgroup_env *env = calloc(1, sizeof(*env));
    if (!env)
        return ka_fail_errno(e, ENOMEM, "cgroups");
    if (scan_mountinfo(env, rootbuf, e) < 0) {
        cgroup_env_free(env);
        return -1;
    }
    size_t v2 = SIZE_MAX, n1 = 0;
    for (size_t i = 0; i < env->n; i++) {
        if (!hier_is_v2(&env->h[i]))
            n1++;
        else if (v2 == SIZE_MAX || strcmp(env->h[i].mnt, rootbuf) == 0)
            v2 = i;
    }
    if (v2 != SIZE_MAX && (strcmp(env->h[v2].mnt, rootbuf) == 0 || prefer_unified || n1 == 0)) {
        env->owns_root = strcmp(env->h[v2].mnt, rootbuf) == 0;
        env_select(env, CGROUP_V2, v2);
    } else if (n1 > 0) {
        env_select(env, CGROUP_V1, 0);
    } else {
        cgroup_env_free(env);
        return ka_fail(e, KA_FAILED_PRECONDITION, "no cgroup file system mounted at or below %s", rootbuf);
    }
    log_debug(SUB, "cgroup %s layout under %s: %zu hierarch%s", env->mode == CGROUP_V2 ? "v2" : "v1", rootbuf,
              env->n, env->n == 1 ? "y" : "ies");
    *out = env;
    return 0;
}

void cgroup_env_free(struct cgroup_env *env)
{
    if (!env)
        return;
    hiers_drop_all(env);
    free(env->h);
    free(env);
}

enum cgroup_mode cgroup_env_mode(const struct cgroup_env *env)
{
    return env->mode;
}

/* ======================================================================================================
 * Cgroup path
 * ====================================================================================================== */

/* "/a/b": absolute, at least one component, none empty, "." or "..", no control characters. */
static int check_cgpath(const char *p, ka_err *e)
{
    if (p[0] != '/' || !p[1])
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid cgroup path '%s': must name a cgroup below the root",
                       p);
    if (strlen(p) >= PATH_MAX / 2)
        return ka_fail(e, KA_INVALID_ARGUMENT, "cgroup path too long");
    for (const char *c = p + 1;;) {
        size_t w = strcspn(c, "/");
        if (w == 0 || (w == 1 && c[0] == '.') || (w == 2 && c[0] == '.' && c[1] == '.'))
            return ka_fail(e, KA_INVALID_ARGUMENT, "invalid cgroup path '%s': empty, '.' or '..' component",
                           p);
        for (size_t i = 0; i < w; i++)
            if ((unsigned char)c[i] < 0x20 || c[i] == 0x7f)
                return ka_fail(e, KA_INVALID_ARGUMENT, "invalid cgroup path: control character");
        if (!c[w])
            return 0;
        c += w + 1;
    }
}

int cgroup_path_for(const char *cgroups_path, const char *container_id, char **out, ka_err *e)
{
    char *p = NULL;
    int r;
    if (cgroups_path && *cgroups_path)
        r = asprintf(&p, "%s%s", cgroups_path[0] == '/' ? "" : "/", cgroups_path);
    else if (container_id && *container_id)
        r = asprintf(&p, "/%s", container_id);
    else
        return ka_fail(e, KA_INVALID_ARGUMENT, "no cgroups path and no container id");
    if (r < 0)
        return ka_fail_errno(e, ENOMEM, "cgroup path");
    for (char *c = p; *c; c++)
        if (*c == ':')
            *c = '/';
    if (check_cgpath(p, e) < 0) {
        free(p);
        return -1;
    }
    *out = p;
    return 0;
}

/* ======================================================================================================
 * The cgroup object and the v1/v2 operations table
 * ====================================================================================================== */

struct cg_ops;

struct cgroup {
    enum cgroup_mode mode;
    char *path;
    size_t n;
    char **names;                  /* per hierarchy: mount point basename ("" on v2) */
    char **dirs;                   /* per hierarchy: this cgroup's directory */
    char **ctls;                   /* per hierarchy: its controllers */
    int v2fd;                      /* v2: O_RDONLY directory fd (clone3 CLONE_INTO_CGROUP, BPF attach) */
    int bpf_fd;                    /* v2: our attached device program, -1 if none */
    bool frozen;                   /* frozen by a successful freeze (PauseContainer, a signal sequence) */
    struct cgroup_freeze_op *busy; /* the freeze or thaw in progress, if any */
    const struct cg_ops *ops;
};

struct cg_ops {
    int (*apply)(struct cgroup *cg, const Grpc__LinuxResources *r, bool update, ka_err *e);
    int (*freeze_write)(struct cgroup *cg, bool frozen, ka_err *e);
    /* Is the wanted state reached? state: what was read, for the timeout message. */
    int (*freeze_check)(struct cgroup *cg, bool frozen, bool *reached, char *state, size_t n, ka_err *e);
    /* SIGKILL everything at once without freezing; 1 = not available here. */
    int (*kill_all)(struct cgroup *cg, ka_err *e);
    const char *(*procs_dir)(const struct cgroup *cg);
};

static const struct cg_ops v1_ops, v2_ops;

void cgroup_free(struct cgroup *cg)
{
    if (!cg)
        return;
    for (size_t i = 0; i < cg->n; i++) {
        free(cg->names[i]);
        free(cg->dirs[i]);
        free(cg->ctls[i]);
    }
    free(cg->names);
    free(cg->dirs);
    free(cg->ctls);
    free(cg->path);
    if (cg->v2fd >= 0)
        close(cg->v2fd);
    if (cg->bpf_fd >= 0)
        close(cg->bpf_fd);
    free(cg);
}

static struct cgroup *cg_alloc(const struct cgroup_env *env, const char *path)
{
    struct cgroup *cg = calloc(1, sizeof(*cg));
    if (!cg)
        return NULL;
    cg->v2fd = cg->bpf_fd = -1;
    cg->mode = env->mode;
    cg->ops = env->mode == CGROUP_V2 ? &v2_ops : &v1_ops;
    cg->names = calloc(env->n + 1, sizeof(char *));
    cg->dirs = calloc(env->n + 1, sizeof(char *));
    cg->ctls = calloc(env->n + 1, sizeof(char *));
    cg->path = strdup(path);
    if (!cg->names || !cg->dirs || !cg->ctls || !cg->path) {
        cgroup_free(cg);
        return NULL;
    }
    for (size_t i = 0; i < env->n; i++, cg->n++) {
        cg->names[i] = strdup(env->h[i].name);
        cg->ctls[i] = strdup(env->h[i].ctls);
        if (asprintf(&cg->dirs[i], "%s%s", env->h[i].mnt, path) < 0)
            cg->dirs[i] = NULL;
        if (!cg->names[i] || !cg->ctls[i] || !cg->dirs[i]) {
            cg->n++;
            cgroup_free(cg);
            return NULL;
        }
    }
    return cg;
}

const char *cgroup_get_path(const struct cgroup *cg)
{
    return cg->path;
}

int cgroup_v2_dirfd(const struct cgroup *cg)
{
    return cg->mode == CGROUP_V2 ? cg->v2fd : -1;
}

const char *cgroup_controller_dir(const struct cgroup *cg, const char *controller)
{
    if (cg->mode == CGROUP_V2)
        return cg->n ? cg->dirs[0] : NULL;
    char named[64];
    snprintf(named, sizeof(named), "name=%s", controller);
    for (size_t i = 0; i < cg->n; i++)
        if (has_word(cg->ctls[i], controller, ",") || has_word(cg->ctls[i], named, ",") ||
            strcmp(cg->names[i], controller) == 0)
            return cg->dirs[i];
    return NULL;
}

size_t cgroup_hierarchies(const struct cgroup *cg, const char *const **names, const char *const **dirs)
{
    *names = (const char *const *)cg->names;
    *dirs = (const char *const *)cg->dirs;
    return cg->n;
}

/* ======================================================================================================
 * Creation
 * ====================================================================================================== */

/* A new cpuset cgroup starts with empty cpus/mems and then accepts no task: copy the parent's. */
static int cpuset_init(const char *dir, ka_err *e)
{
    char parent[PATH_MAX];
    snprintf(parent, sizeof(parent), "%s", dir);
    *strrchr(parent, '/') = '\0';
    static const char *const files[] = {"cpuset.cpus", "cpuset.mems"};
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        cleanup_free char *cur = NULL, *pv = NULL;
        if (rd(dir, files[i], &cur, e) < 0)
            return -1;
        if (*cur)
            continue;
        if (rd(parent, files[i], &pv, e) < 0 || wr(dir, files[i], pv, false, e) < 0)
            return -1;
    }
    return 0;
}

/* mkdir every missing component of mnt+path (recorded in created, top first); the leaf must be new. */
static int mkdir_chain(const char *mnt, const char *path, bool cpuset, struct strv *created, ka_err *e)
{
    char buf[PATH_MAX];
    size_t len = (size_t)snprintf(buf, sizeof(buf), "%s", mnt);
    for (const char *c = path + 1;;) {
        size_t w = strcspn(c, "/");
        if (len + 1 + w >= sizeof(buf))
            return ka_fail(e, KA_INVALID_ARGUMENT, "cgroup path too long");
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "/%.*s", (int)w, c);
        bool leaf = !c[w];
        if (mkdir(buf, 0755) == 0) {
            if (strv_push(created, buf, e) < 0 || (cpuset && cpuset_init(buf, e) < 0))
                return -1;
        } else if (errno != EEXIST) {
            return ka_fail_errno(e, errno, "mkdir %s", buf);
        } else if (leaf) {
            return ka_fail(e, KA_ALREADY_EXISTS, "cgroup %s already exists (%s)", path, buf);
        }
        if (leaf)
            return 0;
        c += w + 1;
    }
}

/* Make every controller listed in dir/cgroup.controllers available to dir's children. */
static void v2_enable_controllers(const char *dir)
{
    ka_err e;
    cleanup_free char *avail = NULL, *on = NULL;
    if (rd(dir, "cgroup.controllers", &avail, &e) < 0 || rd(dir, "cgroup.subtree_control", &on, &e) < 0) {
        log_warn(SUB, "cannot enable controllers below %s: %s", dir, e.msg);
        return;
    }
    for (char *save = NULL, *c = strtok_r(avail, " ", &save); c; c = strtok_r(NULL, " ", &save)) {
        if (has_word(on, c, " ") || wrf(dir, "cgroup.subtree_control", false, &e, "+%s", c) == 0)
            continue;
        log_warn(SUB, "cannot enable the %s controller below %s: %s", c, dir, e.msg);
    }
}

/* Ancestors of the leaf, top down. Pure v2 (the agent owns the hierarchy): from the root. Hybrid: only
 * directories created here — the host's cgroup2 tree is used "with whatever controllers it has". */
static void v2_enable_parents(const struct cgroup_env *env, const char *leaf, const struct strv *created)
{
    const char *mnt = env->h[0].mnt;
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", leaf);
    size_t mlen = strlen(mnt);
    for (char *p = buf + mlen;; p++) {
        char c = *p;
        if (c != '/' && c != '\0')
            continue;
        *p = '\0';
        if (strcmp(buf, leaf) == 0)
            return;
        if (env->owns_root || strv_has(created, buf))
            v2_enable_controllers(buf);
        *p = c;
    }
}

static void rollback(const struct strv *created)
{
    for (size_t i = created->n; i-- > 0;)
        if (rmdir(created->v[i]) < 0 && errno != ENOENT)
            log_warn(SUB, "rollback: rmdir %s: %s", created->v[i], strerror(errno));
}

static int create_dirs(const struct cgroup_env *env, struct cgroup *cg, struct strv *created, ka_err *e)
{
    for (size_t i = 0; i < cg->n; i++) {
        bool cpuset = cg->mode == CGROUP_V1 && has_word(cg->ctls[i], "cpuset", ",");
        if (mkdir_chain(env->h[i].mnt, cg->path, cpuset, created, e) < 0)
            return -1;
    }
    if (cg->mode == CGROUP_V1)
        return 0;
    v2_enable_parents(env, cg->dirs[0], created);
    cg->v2fd = open(cg->dirs[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg->v2fd < 0)
        return ka_fail_errno(e, errno, "open %s", cg->dirs[0]);
    return 0;
}

int cgroup_create(struct cgroup_env *env, const char *path, struct cgroup **out, ka_err *e)
{
    if (check_cgpath(path, e) < 0)
        return -1;
    struct cgroup *cg = cg_alloc(env, path);
    if (!cg)
        return ka_fail_errno(e, ENOMEM, "cgroup %s", path);
    struct strv created = {0};
    if (create_dirs(env, cg, &created, e) < 0) {
        rollback(&created);
        strv_free(&created);
        cgroup_free(cg);
        return e->status == KA_ALREADY_EXISTS ? -1 : ka_wrap(e, "create cgroup %s", path);
    }
    strv_free(&created);
    *out = cg;
    return 0;
}

/* ======================================================================================================
 * Validation (everything before the first write)
 * ====================================================================================================== */

static int invalid(ka_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int invalid(ka_err *e, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return ka_fail(e, KA_INVALID_ARGUMENT, "invalid linux.resources.%s", msg);
}

/* "0-3,5": comma separated numbers or ascending ranges. */
static bool cpu_list_ok(const char *s)
{
    for (const char *p = s;;) {
        char *end;
        if (*p < '0' || *p > '9')
            return false;
        unsigned long a = strtoul(p, &end, 10), b = a;
        if (*end == '-') {
            p = end + 1;
            if (*p < '0' || *p > '9')
                return false;
            b = strtoul(p, &end, 10);
        }
        if (b < a || b > 1u << 20)
            return false;
        if (!*end)
            return true;
        if (*end != ',')
            return false;
        p = end + 1;
    }
}

/* OCI memory.swap (memory+swap) to memory.swap.max, as runc: out -1 = "max", 0 = leave alone. */
static const char *v2_swap_value(int64_t swap, int64_t limit, int64_t *out)
{
    *out = swap;
    if (limit == -1 && swap == 0)
        *out = -1;
    if (swap == -1 || swap == 0)
        return NULL;
    if (limit == 0 || limit == -1)
        return "unable to set swap limit without memory limit";
    if (swap < limit)
        return "memory+swap limit should be >= memory limit";
    *out = swap - limit;
    return NULL;
}

static int check_memory(enum cgroup_mode mode, const Grpc__LinuxMemory *m, ka_err *e)
{
    const struct {
        const char *name;
        int64_t v;
    } vals[] = {{"limit", m->limit},
                {"reservation", m->reservation},
                {"swap", m->swap},
                {"kernel", m->kernel},
                {"kernelTCP", m->kerneltcp}};
    for (size_t i = 0; i < ARRAY_SIZE(vals); i++)
        if (vals[i].v < -1)
            return invalid(e, "memory.%s: %" PRId64 " (must be -1, 0 or a byte count)", vals[i].name,
                           vals[i].v);
    if (m->swappiness > 100)
        return invalid(e,
                       "memory.swappiness: invalid value:%" PRIu64 ". valid memory swappiness range is 0-100",
                       m->swappiness);
    int64_t swap = m->limit == -1 ? -1 : m->swap, dummy;
    const char *why = NULL;
    if (mode == CGROUP_V2)
        why = v2_swap_value(swap, m->limit, &dummy);
    else if (m->limit > 0 && swap > 0 && swap < m->limit)
        why = "memory+swap limit should be >= memory limit";
    return why ? invalid(e, "memory.swap: %s", why) : 0;
}

static int check_cpu(const Grpc__LinuxCPU *c, ka_err *e)
{
    if (c->quota < -1 || (c->quota > 0 && (uint64_t)c->quota < CPU_PERIOD_MIN))
        return invalid(e, "cpu.quota: %" PRId64 " (must be -1, 0 or >= 1000 us)", c->quota);
    if (c->period && (c->period < CPU_PERIOD_MIN || c->period > CPU_PERIOD_MAX))
        return invalid(e, "cpu.period: %" PRIu64 " (must be 1000..1000000 us)", c->period);
    if (c->realtimeruntime < -1)
        return invalid(e, "cpu.realtimeRuntime: %" PRId64, c->realtimeruntime);
    if (c->realtimeperiod && c->realtimeruntime > 0 && (uint64_t)c->realtimeruntime > c->realtimeperiod)
        return invalid(e, "cpu.realtimeRuntime: %" PRId64 " exceeds realtimePeriod %" PRIu64,
                       c->realtimeruntime, c->realtimeperiod);
    if (c->cpus && *c->cpus && !cpu_list_ok(c->cpus))
        return invalid(e, "cpu.cpus: '%s' is not a list such as 0-3,5", c->cpus);
    if (c->mems && *c->mems && !cpu_list_ok(c->mems))
        return invalid(e, "cpu.mems: '%s' is not a list such as 0-3,5", c->mems);
    return 0;
}

/* BlockIO weights are truncated to u16 on the way in (spec 3.1.a); 0 = unset, else 10..1000. */
static bool weight_ok(uint32_t w)
{
    uint16_t v = (uint16_t)w;
    return v == 0 || (v >= 10 && v <= 1000);
}

static int check_throttle(const char *name, Grpc__LinuxThrottleDevice **t, size_t n, ka_err *e)
{
    for (size_t i = 0; i < n; i++)
        if (t[i]->major < 0 || t[i]->minor < 0)
            return invalid(e, "blockIO.%s[%zu]: bad device %" PRId64 ":%" PRId64, name, i, t[i]->major,
                           t[i]->minor);
    return 0;
}

static int check_blkio(const Grpc__LinuxBlockIO *b, ka_err *e)
{
    if (!weight_ok(b->weight))
        return invalid(e, "blockIO.weight: %u (must be 10..1000)", (uint16_t)b->weight);
    if (!weight_ok(b->leafweight))
        return invalid(e, "blockIO.leafWeight: %u (must be 10..1000)", (uint16_t)b->leafweight);
    for (size_t i = 0; i < b->n_weightdevice; i++) {
        const Grpc__LinuxWeightDevice *w = b->weightdevice[i];
        if (w->major < 0 || w->minor < 0)
            return invalid(e, "blockIO.weightDevice[%zu]: bad device %" PRId64 ":%" PRId64, i, w->major,
                           w->minor);
        if (!weight_ok(w->weight) || !weight_ok(w->leafweight))
            return invalid(e, "blockIO.weightDevice[%zu]: weight must be 10..1000", i);
    }
    if (check_throttle("throttleReadBpsDevice", b->throttlereadbpsdevice, b->n_throttlereadbpsdevice, e) <
            0 ||
        check_throttle("throttleWriteBpsDevice", b->throttlewritebpsdevice, b->n_throttlewritebpsdevice, e) <
            0 ||
        check_throttle("throttleReadIOPSDevice", b->throttlereadiopsdevice, b->n_throttlereadiopsdevice, e) <
            0 ||
        check_throttle("throttleWriteIOPSDevice", b->throttlewriteiopsdevice, b->n_throttlewriteiopsdevice,
                       e) < 0)
        return -1;
    return 0;
}

/* Page size ("2MB", "1GB", "64KB") to the kernel's file infix, if the system supports it. */
static int hugetlb_name(const char *ps, size_t idx, char *name, size_t n, ka_err *e)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(ps ? ps : "", &end, 10);
    unsigned shift = strcasecmp(end, "KB") == 0   ? 10
                     : strcasecmp(end, "MB") == 0 ? 20
                     : strcasecmp(end, "GB") == 0 ? 30
                                                  : 0;
    if (!ps || end == ps || errno || !shift || v == 0 || v > (1ULL << (50 - shift)))
        return invalid(e, "hugepageLimits[%zu].pageSize: '%s' (expected e.g. 2MB)", idx, ps ? ps : "");
    unsigned long long bytes = v << shift, kb = bytes >> 10;
    char p[128];
    snprintf(p, sizeof(p), HUGEPAGES_DIR "/hugepages-%llukB", kb);
    if (access(p, F_OK) < 0)
        return invalid(e, "hugepageLimits[%zu].pageSize: %s is not supported by this system", idx, ps);
    if (bytes >= 1ULL << 30)
        snprintf(name, n, "%lluGB", bytes >> 30);
    else if (bytes >= 1ULL << 20)
        snprintf(name, n, "%lluMB", bytes >> 20);
    else
        snprintf(name, n, "%lluKB", kb);
    return 0;
}

static int check_network(const Grpc__LinuxNetwork *net, ka_err *e)
{
    for (size_t i = 0; i < net->n_priorities; i++) {
        const char *nm = net->priorities[i]->name ? net->priorities[i]->name : "";
        bool ok = *nm && strlen(nm) < IFNAMSIZ;
        for (const char *c = nm; ok && *c; c++)
            ok = (unsigned char)*c > 0x20 && *c != 0x7f && *c != '/';
        if (!ok)
            return invalid(e, "network.priorities[%zu].name: '%s' is not an interface name", i, nm);
    }
    return 0;
}

/* One device cgroup rule, normalised. */
struct devrule {
    bool allow;
    char type;            /* 'a', 'b' or 'c' */
    int64_t major, minor; /* -1 = wildcard */
    unsigned acc;         /* BPF_DEVCG_ACC_* bits */
};

static int dev_rule(const Grpc__LinuxDeviceCgroup *d, size_t idx, struct devrule *r, ka_err *e)
{
    const char *t = d->type ? d->type : "", *a = d->access ? d->access : "";
    if (!(t[0] == '\0' || ((t[0] == 'a' || t[0] == 'b' || t[0] == 'c') && t[1] == '\0')))
        return invalid(e, "devices[%zu].type: '%s' (must be a, b or c)", idx, t);
    r->allow = d->allow;
    r->type = t[0] ? t[0] : 'a';
    r->acc = *a ? 0 : ACC_ALL;
    for (const char *c = a; *c; c++) {
        if (*c == 'r')
            r->acc |= BPF_DEVCG_ACC_READ;
        else if (*c == 'w')
            r->acc |= BPF_DEVCG_ACC_WRITE;
        else if (*c == 'm')
            r->acc |= BPF_DEVCG_ACC_MKNOD;
        else
            return invalid(e, "devices[%zu].access: '%s' (must be a subset of rwm)", idx, a);
    }
    if (d->major < -1 || d->major > INT32_MAX || d->minor < -1 || d->minor > INT32_MAX)
        return invalid(e, "devices[%zu]: bad device number %" PRId64 ":%" PRId64, idx, d->major, d->minor);
    r->major = d->major;
    r->minor = d->minor;
    return 0;
}

static int check_all(enum cgroup_mode mode, const Grpc__LinuxResources *r, ka_err *e)
{
    if ((r->memory && check_memory(mode, r->memory, e) < 0) || (r->cpu && check_cpu(r->cpu, e) < 0) ||
        (r->blockio && check_blkio(r->blockio, e) < 0) || (r->network && check_network(r->network, e) < 0))
        return -1;
    char name[32];
    for (size_t i = 0; i < r->n_hugepagelimits; i++)
        if (hugetlb_name(r->hugepagelimits[i]->pagesize, i, name, sizeof(name), e) < 0)
            return -1;
    struct devrule d;
    for (size_t i = 0; i < r->n_devices; i++)
        if (dev_rule(r->devices[i], i, &d, e) < 0)
            return -1;
    return 0;
}

/* ======================================================================================================
 * Shared value conversions and default device rules
 * ====================================================================================================== */

static uint64_t clamp_shares(uint64_t s)
{
    return s < 2 ? 2 : s > 262144 ? 262144 : s; /* what the kernel does with cpu.shares */
}

static uint64_t shares_to_weight(uint64_t s)
{
    return 1 + ((clamp_shares(s) - 2) * 9999) / 262142;
}

static void fmt_i64_max(char *buf, size_t n, int64_t v)
{
    if (v < 0)
        snprintf(buf, n, "max");
    else
        snprintf(buf, n, "%" PRId64, v);
}

/* After the spec's rules, in this order (rustjail DEFAULT_DEVICES then DEFAULT_ALLOWED_DEVICES). */
static const struct devrule default_rules[] = {
    {true, 'c', 1, 3, ACC_ALL},
    {true, 'c', 1, 5, ACC_ALL},
    {true, 'c', 1, 7, ACC_ALL},
    {true, 'c', 5, 0, ACC_ALL},
    {true, 'c', 1, 9, ACC_ALL},
    {true, 'c', 1, 8, ACC_ALL},
    {true, 'c', -1, -1, BPF_DEVCG_ACC_MKNOD},
    {true, 'b', -1, -1, BPF_DEVCG_ACC_MKNOD},
    {true, 'c', 5, 1, ACC_ALL},
    {true, 'c', 136, -1, ACC_ALL},
    {true, 'c', 5, 2, ACC_ALL},
    {true, 'c', 10, 200, ACC_ALL},
};

/* ======================================================================================================
 * v1 writers, one per controller
 * ====================================================================================================== */

/* Directory of a v1 controller; a missing hierarchy is logged and its settings skipped. */
static const char *v1_dir(const struct cgroup *cg, const char *ctl)
{
    const char *d = cgroup_controller_dir(cg, ctl);
    if (!d)
        log_warn(SUB, "no %s cgroup hierarchy: %s settings of %s not applied", ctl, ctl, cg->path);
    return d;
}

static int v1_cpuset(const struct cgroup *cg, const Grpc__LinuxCPU *c, ka_err *e)
{
    bool cpus = c->cpus && *c->cpus, mems = c->mems && *c->mems;
    const char *d = cpus || mems ? v1_dir(cg, "cpuset") : NULL;
    if (!d)
        return 0;
    if (cpus && wr(d, "cpuset.cpus", c->cpus, false, e) < 0)
        log_warn(SUB, "cpuset.cpus of %s not set: %s", cg->path, e->msg);
    return mems ? wr(d, "cpuset.mems", c->mems, false, e) : 0;
}

static int v1_cfs(const char *d, const Grpc__LinuxCPU *c, ka_err *e)
{
    bool period_pending = false;
    if (c->period && wrf(d, "cpu.cfs_period_us", false, e, "%" PRIu64, c->period) < 0) {
        /* A smaller period can be refused until the quota shrinks: retry after it, as runc. */
        if (e->errnum != EINVAL || !c->quota)
            return -1;
        period_pending = true;
    }
    if (c->quota && wrf(d, "cpu.cfs_quota_us", false, e, "%" PRId64, c->quota) < 0)
        return -1;
    if (period_pending && wrf(d, "cpu.cfs_period_us", false, e, "%" PRIu64, c->period) < 0)
        return -1;
    return 0;
}

static int v1_cpu(const struct cgroup *cg, const Grpc__LinuxCPU *c, ka_err *e)
{
    if (!c)
        return 0;
    if (v1_cpuset(cg, c, e) < 0)
        return -1;
    if (!c->shares && !c->quota && !c->period && !c->realtimeruntime && !c->realtimeperiod)
        return 0;
    const char *d = v1_dir(cg, "cpu");
    if (!d)
        return 0;
    if (c->shares && wrf(d, "cpu.shares", false, e, "%" PRIu64, clamp_shares(c->shares)) < 0)
        return -1;
    if (v1_cfs(d, c, e) < 0)
        return -1;
    if (c->realtimeperiod && wrf(d, "cpu.rt_period_us", false, e, "%" PRIu64, c->realtimeperiod) < 0)
        return -1;
    if (c->realtimeruntime && wrf(d, "cpu.rt_runtime_us", false, e, "%" PRId64, c->realtimeruntime) < 0)
        return -1;
    return 0;
}

static int v1_mem_write(const char *d, const char *file, int64_t v, ka_err *e)
{
    return v ? wrf(d, file, false, e, "%" PRId64, v) : 0;
}

/* limit and memory+swap, ordered so that the kernel's memsw >= limit check holds at every step (runc). */
static int v1_mem_limits(const char *d, int64_t limit, int64_t swap, ka_err *e)
{
    if (swap && !file_exists(d, "memory.memsw.limit_in_bytes")) {
        if (swap != -1)
            log_warn(SUB, "no swap accounting in %s: memory+swap limit %" PRId64 " not applied", d, swap);
        swap = 0;
    }
    bool swap_first = false;
    if (limit && swap) {
        cleanup_free char *cur = NULL;
        if (rd(d, "memory.limit_in_bytes", &cur, e) < 0)
            return -1;
        swap_first = swap == -1 || strtoull(cur, NULL, 10) < (uint64_t)swap;
    }
    if (swap_first)
        return v1_mem_write(d, "memory.memsw.limit_in_bytes", swap, e) < 0 ||
                       v1_mem_write(d, "memory.limit_in_bytes", limit, e) < 0
                   ? -1
                   : 0;
    return v1_mem_write(d, "memory.limit_in_bytes", limit, e) < 0 ||
                   v1_mem_write(d, "memory.memsw.limit_in_bytes", swap, e) < 0
               ? -1
               : 0;
}

/* Deprecated kmem knobs: failures are only logged. */
static void v1_kmem(const char *d, const char *file, int64_t v)
{
    ka_err e;
    if (wrf(d, file, true, &e, "%" PRId64, v) < 0)
        log_warn(SUB, "%s: %s", file, e.msg);
}

static int v1_memory(const struct cgroup *cg, const Grpc__LinuxMemory *m, bool update, ka_err *e)
{
    const char *d = m ? v1_dir(cg, "memory") : NULL;
    if (!d)
        return 0;
    if (!update) { /* enables kmem accounting on old kernels */
        v1_kmem(d, "memory.kmem.limit_in_bytes", 1);
        v1_kmem(d, "memory.kmem.limit_in_bytes", -1);
    }
    if (v1_mem_limits(d, m->limit, m->limit == -1 ? -1 : m->swap, e) < 0 ||
        v1_mem_write(d, "memory.soft_limit_in_bytes", m->reservation, e) < 0)
        return -1;
    if (m->kernel)
        v1_kmem(d, "memory.kmem.limit_in_bytes", m->kernel);
    if (m->kerneltcp)
        v1_kmem(d, "memory.kmem.tcp.limit_in_bytes", m->kerneltcp);
    if (wrf(d, "memory.swappiness", false, e, "%" PRIu64, m->swappiness) < 0)
        return -1;
    return m->disableoomkiller ? wr(d, "memory.oom_control", "1", false, e) : 0;
}

static int pids_write(const char *d, const Grpc__LinuxPids *p, bool missing_ok, ka_err *e)
{
    if (p->limit > 0)
        return wrf(d, "pids.max", missing_ok, e, "%" PRId64, p->limit);
    return wr(d, "pids.max", "max", missing_ok, e);
}

static int v1_pids(const struct cgroup *cg, const Grpc__LinuxPids *p, ka_err *e)
{
    const char *d = p ? v1_dir(cg, "pids") : NULL;
    return d ? pids_write(d, p, false, e) : 0;
}

static int throttle_write(const char *d, const char *file, const char *v2key, Grpc__LinuxThrottleDevice **t,
                          size_t n, bool missing_ok, ka_err *e)
{
    for (size_t i = 0; i < n; i++) {
        int r = v2key ? wrf(d, file, missing_ok, e, "%" PRId64 ":%" PRId64 " %s=%" PRIu64, t[i]->major,
                            t[i]->minor, v2key, t[i]->rate)
                      : wrf(d, file, missing_ok, e, "%" PRId64 ":%" PRId64 " %" PRIu64, t[i]->major,
                            t[i]->minor, t[i]->rate);
        if (r < 0)
            return -1;
    }
    return 0;
}

static int v1_blkio_weights(const char *d, const Grpc__LinuxBlockIO *b, ka_err *e)
{
    bool bfq = !file_exists(d, "blkio.weight") && file_exists(d, "blkio.bfq.weight");
    const char *wf = bfq ? "blkio.bfq.weight" : "blkio.weight";
    const char *wdf = bfq ? "blkio.bfq.weight_device" : "blkio.weight_device";
    if ((uint16_t)b->weight && wrf(d, wf, false, e, "%u", (uint16_t)b->weight) < 0)
        return -1;
    if ((uint16_t)b->leafweight && wrf(d, "blkio.leaf_weight", true, e, "%u", (uint16_t)b->leafweight) < 0)
        return -1;
    for (size_t i = 0; i < b->n_weightdevice; i++) {
        const Grpc__LinuxWeightDevice *w = b->weightdevice[i];
        if ((uint16_t)w->weight &&
            wrf(d, wdf, false, e, "%" PRId64 ":%" PRId64 " %u", w->major, w->minor, (uint16_t)w->weight) < 0)
            return -1;
        if ((uint16_t)w->leafweight &&
            wrf(d, "blkio.leaf_weight_device", true, e, "%" PRId64 ":%" PRId64 " %u", w->major, w->minor,
                (uint16_t)w->leafweight) < 0)
            return -1;
    }
    return 0;
}

static int v1_blkio(const struct cgroup *cg, const Grpc__LinuxBlockIO *b, ka_err *e)
{
    const char *d = b ? v1_dir(cg, "blkio") : NULL;
    if (!d)
        return 0;
    if (v1_blkio_weights(d, b, e) < 0)
        return -1;
    if (throttle_write(d, "blkio.throttle.read_bps_device", NULL, b->throttlereadbpsdevice,
                       b->n_throttlereadbpsdevice, false, e) < 0 ||
        throttle_write(d, "blkio.throttle.write_bps_device", NULL, b->throttlewritebpsdevice,
                       b->n_throttlewritebpsdevice, false, e) < 0 ||
        throttle_write(d, "blkio.throttle.read_iops_device", NULL, b->throttlereadiopsdevice,
                       b->n_throttlereadiopsdevice, false, e) < 0 ||
        throttle_write(d, "blkio.throttle.write_iops_device", NULL, b->throttlewriteiopsdevice,
                       b->n_throttlewriteiopsdevice, false, e) < 0)
        return -1;
    return 0;
}

static int hugetlb_write(const char *d, const Grpc__LinuxResources *r, const char *suffix, bool missing_ok,
                         ka_err *e)
{
    for (size_t i = 0; i < r->n_hugepagelimits; i++) {
        char name[32], file[64];
        if (hugetlb_name(r->hugepagelimits[i]->pagesize, i, name, sizeof(name), e) < 0)
            return -1;
        snprintf(file, sizeof(file), "hugetlb.%s.%s", name, suffix);
        if (wrf(d, file, missing_ok, e, "%" PRIu64, r->hugepagelimits[i]->limit) < 0)
            return -1;
    }
    return 0;
}

static int v1_hugetlb(const struct cgroup *cg, const Grpc__LinuxResources *r, ka_err *e)
{
    const char *d = r->n_hugepagelimits ? v1_dir(cg, "hugetlb") : NULL;
    return d ? hugetlb_write(d, r, "limit_in_bytes", false, e) : 0;
}

static int v1_network(const struct cgroup *cg, const Grpc__LinuxNetwork *n, ka_err *e)
{
    const char *d = n && n->classid ? v1_dir(cg, "net_cls") : NULL;
    if (d && wrf(d, "net_cls.classid", false, e, "%u", n->classid) < 0)
        return -1;
    d = n && n->n_priorities ? v1_dir(cg, "net_prio") : NULL;
    for (size_t i = 0; d && i < n->n_priorities; i++)
        if (wrf(d, "net_prio.ifpriomap", false, e, "%s %u", n->priorities[i]->name,
                n->priorities[i]->priority) < 0)
            return -1;
    return 0;
}

static void v1_dev_write(const char *d, const struct devrule *r)
{
    char maj[24] = "*", min[24] = "*", acc[4] = "", line[80];
    if (r->major >= 0)
        snprintf(maj, sizeof(maj), "%" PRId64, r->major);
    if (r->minor >= 0)
        snprintf(min, sizeof(min), "%" PRId64, r->minor);
    snprintf(acc, sizeof(acc), "%s%s%s", r->acc & BPF_DEVCG_ACC_READ ? "r" : "",
             r->acc & BPF_DEVCG_ACC_WRITE ? "w" : "", r->acc & BPF_DEVCG_ACC_MKNOD ? "m" : "");
    if (r->type == 'a')
        snprintf(line, sizeof(line), "a *:* rwm"); /* the kernel ignores the rest for 'a' */
    else
        snprintf(line, sizeof(line), "%c %s:%s %s", r->type, maj, min, acc);
    ka_err e;
    if (wr(d, r->allow ? "devices.allow" : "devices.deny", line, false, &e) < 0)
        log_warn(SUB, "device rule '%s': %s", line, e.msg); /* upstream ignores these errors */
}

/* The spec's rules in order (no implicit deny-all), then the default allow list. */
static int v1_devices(const struct cgroup *cg, const Grpc__LinuxResources *r, ka_err *e)
{
    const char *d = v1_dir(cg, "devices");
    if (!d)
        return 0;
    for (size_t i = 0; i < r->n_devices; i++) {
        struct devrule dr;
        if (dev_rule(r->devices[i], i, &dr, e) < 0)
            return -1;
        v1_dev_write(d, &dr);
    }
    for (size_t i = 0; i < ARRAY_SIZE(default_rules); i++)
        v1_dev_write(d, &default_rules[i]);
    return 0;
}

static int v1_apply(struct cgroup *cg, const Grpc__LinuxResources *r, bool update, ka_err *e)
{
    if (v1_cpu(cg, r->cpu, e) < 0 || v1_memory(cg, r->memory, update, e) < 0 || v1_pids(cg, r->pids, e) < 0 ||
        v1_blkio(cg, r->blockio, e) < 0 || v1_hugetlb(cg, r, e) < 0 || v1_network(cg, r->network, e) < 0 ||
        v1_devices(cg, r, e) < 0)
        return -1;
    return 0;
}

/* ======================================================================================================
 * v2 device filter: a BPF_PROG_TYPE_CGROUP_DEVICE program
 * ====================================================================================================== */

/* Written by hand (no libbpf dependency for a few dozen instructions), same shape as runc/crun emit. */
static struct bpf_insn bi(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
    struct bpf_insn i = {.code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm};
    return i;
}

struct bpf_prog_buf {
    struct bpf_insn *v;
    size_t n;
};

/* ctx = struct bpf_cgroup_dev_ctx {u32 access_type (access << 16 | type); u32 major; u32 minor}. */
static void bpf_prologue(struct bpf_prog_buf *p)
{
    p->v[p->n++] = bi(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_1, 0, 0); /* r2 = type */
    p->v[p->n++] = bi(BPF_ALU | BPF_AND | BPF_K, BPF_REG_2, 0, 0, 0xffff);
    p->v[p->n++] = bi(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_3, BPF_REG_1, 0, 0); /* r3 = access */
    p->v[p->n++] = bi(BPF_ALU | BPF_RSH | BPF_K, BPF_REG_3, 0, 0, 16);
    p->v[p->n++] = bi(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_4, BPF_REG_1, 4, 0); /* r4 = major */
    p->v[p->n++] = bi(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_5, BPF_REG_1, 8, 0); /* r5 = minor */
}

static void bpf_exit_with(struct bpf_prog_buf *p, bool allow)
{
    p->v[p->n++] = bi(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, allow ? 1 : 0);
    p->v[p->n++] = bi(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
}

/* "If the request matches, return allow": each failed check jumps past the rule's two exit instructions.
 * Type 'a' matches everything, as in v1 where 'a' resets the whole list. */
static void bpf_rule(struct bpf_prog_buf *p, const struct devrule *r)
{
    struct bpf_insn chk[6];
    size_t k = 0;
    if (r->type != 'a') {
        int32_t t = r->type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR;
        chk[k++] = bi(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_2, 0, 0, t);
        if (r->acc != ACC_ALL) { /* requested access must be a subset of the rule's */
            chk[k++] = bi(BPF_ALU | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_3, 0, 0);
            chk[k++] = bi(BPF_ALU | BPF_AND | BPF_K, BPF_REG_1, 0, 0, (int32_t)r->acc);
            chk[k++] = bi(BPF_JMP | BPF_JNE | BPF_X, BPF_REG_1, BPF_REG_3, 0, 0);
        }
        if (r->major >= 0)
            chk[k++] = bi(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_4, 0, 0, (int32_t)r->major);
        if (r->minor >= 0)
            chk[k++] = bi(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_5, 0, 0, (int32_t)r->minor);
    }
    for (size_t i = 0; i < k; i++) {
        if (BPF_CLASS(chk[i].code) == BPF_JMP)
            chk[i].off = (int16_t)(k - i - 1 + 2);
        p->v[p->n++] = chk[i];
    }
    bpf_exit_with(p, r->allow);
}

/* First match wins, so the rules go in reverse of their v1 write order: the default allow list (written
 * last on v1) first, then the spec's rules from last to first. Fall-through: allow, which is what the same
 * rules give on v1 in a fresh cgroup (it starts as the parent's "a *:* rwm"); a spec that starts with a
 * deny-all 'a' rule (as containerd's do) gets a default-deny program through that rule. */
static int bpf_build(const Grpc__LinuxResources *r, struct bpf_prog_buf *p, ka_err *e)
{
    size_t cap = 6 + (ARRAY_SIZE(default_rules) + r->n_devices) * 8 + 2;
    if (!(p->v = calloc(cap, sizeof(*p->v))))
        return ka_fail_errno(e, ENOMEM, "device filter");
    p->n = 0;
    bpf_prologue(p);
    for (size_t i = ARRAY_SIZE(default_rules); i-- > 0;)
        bpf_rule(p, &default_rules[i]);
    for (size_t i = r->n_devices; i-- > 0;) {
        struct devrule d;
        if (dev_rule(r->devices[i], i, &d, e) < 0)
            return -1;
        bpf_rule(p, &d);
        if (d.type == 'a')
            return 0; /* matches everything: the rest would be unreachable, which the verifier rejects */
    }
    bpf_exit_with(p, true);
    return 0;
}

static int bpf_sys(int cmd, union bpf_attr *a)
{
    return (int)syscall(__NR_bpf, cmd, a, sizeof(*a));
}

/* Before 5.11 BPF memory counts against RLIMIT_MEMLOCK; raising it needs CAP_SYS_RESOURCE: best effort. */
static void bump_memlock(void)
{
    struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
    if (setrlimit(RLIMIT_MEMLOCK, &rl) == 0)
        return;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_MEMLOCK, &rl);
    }
}

static int bpf_load(const struct bpf_prog_buf *p, ka_err *e)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    a.insns = (uint64_t)(uintptr_t)p->v;
    a.insn_cnt = (uint32_t)p->n;
    a.license = (uint64_t)(uintptr_t) "Apache-2.0";
    int fd = bpf_sys(BPF_PROG_LOAD, &a);
    if (fd < 0 && errno == EPERM) {
        bump_memlock();
        fd = bpf_sys(BPF_PROG_LOAD, &a);
    }
    if (fd >= 0)
        return fd;
    int err = errno;
    char log[512] = "";
    a.log_buf = (uint64_t)(uintptr_t)log;
    a.log_size = sizeof(log);
    a.log_level = 1;
    int again = bpf_sys(BPF_PROG_LOAD, &a); /* only for the verifier's explanation */
    if (again >= 0)
        close(again);
    log[strcspn(log, "\n")] = '\0';
    return ka_fail_errno(e, err, "load the device cgroup eBPF program%s%s", *log ? ": " : "", log);
}

static int v2_devices(struct cgroup *cg, const Grpc__LinuxResources *r, ka_err *e)
{
    if (!r->n_devices)
        return 0; /* nothing to enforce: leave any earlier program in place */
    struct bpf_prog_buf p = {0};
    int fd = bpf_build(r, &p, e) < 0 ? -1 : bpf_load(&p, e);
    free(p.v);
    if (fd < 0) {
        if (e->errnum != ENOSYS)
            return -1;
        log_warn(SUB, "kernel without bpf(2): device rules of %s not enforced", cg->path);
        return 0;
    }
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.target_fd = (uint32_t)cg->v2fd;
    a.attach_bpf_fd = (uint32_t)fd;
    a.attach_type = BPF_CGROUP_DEVICE;
    a.attach_flags = BPF_F_ALLOW_MULTI;
    if (bpf_sys(BPF_PROG_ATTACH, &a) < 0) {
        int err = errno;
        close(fd);
        return ka_fail_errno(e, err, "attach the device eBPF program to %s", cg->dirs[0]);
    }
    if (cg->bpf_fd >= 0) { /* the new program is in place: drop ours from before */
        a.attach_bpf_fd = (uint32_t)cg->bpf_fd;
        a.attach_flags = 0;
        if (bpf_sys(BPF_PROG_DETACH, &a) < 0)
            log_warn(SUB, "detach the previous device program of %s: %s", cg->path, strerror(errno));
        close(cg->bpf_fd);
    }
    cg->bpf_fd = fd;
    return 0;
}

static void v2_devices_detach(struct cgroup *cg)
{
    if (cg->bpf_fd < 0)
        return;
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.target_fd = (uint32_t)cg->v2fd;
    a.attach_bpf_fd = (uint32_t)cg->bpf_fd;
    a.attach_type = BPF_CGROUP_DEVICE;
    if (bpf_sys(BPF_PROG_DETACH, &a) < 0 && errno != ENOENT)
        log_warn(SUB, "detach the device program of %s: %s", cg->path, strerror(errno));
    close(cg->bpf_fd);
    cg->bpf_fd = -1;
}

/* ======================================================================================================
 * v2 writers (a missing file means the controller is not enabled here: logged, skipped)
 * ====================================================================================================== */

static int v2_cpu(const char *d, const Grpc__LinuxCPU *c, ka_err *e)
{
    if (c->cpus && *c->cpus && wr(d, "cpuset.cpus", c->cpus, true, e) < 0)
        log_warn(SUB, "cpuset.cpus of %s not set: %s", d, e->msg);
    if (c->mems && *c->mems && wr(d, "cpuset.mems", c->mems, true, e) < 0)
        return -1;
    if (c->shares && wrf(d, "cpu.weight", true, e, "%" PRIu64, shares_to_weight(c->shares)) < 0)
        return -1;
    if (c->quota || c->period) { /* "max" or the quota, then the period if given (runc) */
        char v[64];
        int n = c->quota > 0 ? snprintf(v, sizeof(v), "%" PRId64, c->quota) : snprintf(v, sizeof(v), "max");
        if (c->period)
            snprintf(v + n, sizeof(v) - (size_t)n, " %" PRIu64, c->period);
        if (wr(d, "cpu.max", v, true, e) < 0)
            return -1;
    }
    if (c->realtimeruntime || c->realtimeperiod)
        log_warn(SUB, "cgroup v2 has no realtime CPU limits: realtimeRuntime/realtimePeriod of %s ignored",
                 d);
    return 0;
}

static int v2_memory(const char *d, const Grpc__LinuxMemory *m, ka_err *e)
{
    char v[32];
    int64_t swap;
    v2_swap_value(m->limit == -1 ? -1 : m->swap, m->limit, &swap); /* validated before */
    if (swap) {
        fmt_i64_max(v, sizeof(v), swap);
        if (wr(d, "memory.swap.max", v, true, e) < 0)
            return -1;
    }
    if (m->limit) {
        fmt_i64_max(v, sizeof(v), m->limit);
        if (wr(d, "memory.max", v, true, e) < 0)
            return -1;
    }
    if (m->reservation) {
        fmt_i64_max(v, sizeof(v), m->reservation);
        if (wr(d, "memory.low", v, true, e) < 0)
            return -1;
    }
    if (m->kernel || m->kerneltcp || m->disableoomkiller)
        log_warn(SUB, "cgroup v2 has no kernel memory limits or OOM-killer switch: ignored for %s", d);
    return 0;
}

static int v2_io(const char *d, const Grpc__LinuxBlockIO *b, ka_err *e)
{
    bool bfq = file_exists(d, "io.bfq.weight");
    uint16_t w = (uint16_t)b->weight;
    if (w && (bfq ? wrf(d, "io.bfq.weight", true, e, "%u", (unsigned)w)
                  : wrf(d, "io.weight", true, e, "default %u", (unsigned)(1 + (w - 10) * 9999 / 990))) < 0)
        return -1;
    for (size_t i = 0; i < b->n_weightdevice; i++) {
        const Grpc__LinuxWeightDevice *wd = b->weightdevice[i];
        if (!(uint16_t)wd->weight)
            continue;
        if (!bfq)
            log_warn(SUB, "per-device I/O weights need the BFQ scheduler: %" PRId64 ":%" PRId64 " ignored",
                     wd->major, wd->minor);
        else if (wrf(d, "io.bfq.weight", true, e, "%" PRId64 ":%" PRId64 " %u", wd->major, wd->minor,
                     (uint16_t)wd->weight) < 0)
            return -1;
    }
    if (throttle_write(d, "io.max", "rbps", b->throttlereadbpsdevice, b->n_throttlereadbpsdevice, true, e) <
            0 ||
        throttle_write(d, "io.max", "wbps", b->throttlewritebpsdevice, b->n_throttlewritebpsdevice, true, e) <
            0 ||
        throttle_write(d, "io.max", "riops", b->throttlereadiopsdevice, b->n_throttlereadiopsdevice, true,
                       e) < 0 ||
        throttle_write(d, "io.max", "wiops", b->throttlewriteiopsdevice, b->n_throttlewriteiopsdevice, true,
                       e) < 0)
        return -1;
    return 0;
}

static int v2_apply(struct cgroup *cg, const Grpc__LinuxResources *r, bool update, ka_err *e)
{
    const char *d = cg->dirs[0];
    (void)update; /* v2 has no create-only settings */
    if ((r->cpu && v2_cpu(d, r->cpu, e) < 0) || (r->memory && v2_memory(d, r->memory, e) < 0) ||
        (r->pids && pids_write(d, r->pids, true, e) < 0) || (r->blockio && v2_io(d, r->blockio, e) < 0) ||
        hugetlb_write(d, r, "max", true, e) < 0)
        return -1;
    if (r->network && (r->network->classid || r->network->n_priorities))
        log_warn(SUB, "cgroup v2 has no net_cls/net_prio: network settings of %s ignored", cg->path);
    return v2_devices(cg, r, e);
}

int cgroup_apply(struct cgroup *cg, const Grpc__LinuxResources *res, bool update, ka_err *e)
{
    if (!res)
        return 0;
    if (check_all(cg->mode, res, e) < 0)
        return ka_wrap(e, "cgroup %s", cg->path);
    undo.on = update;
    int rc = cg->ops->apply(cg, res, update, e);
    if (rc < 0 && update) {
        undo_replay();
        log_warn(SUB, "cgroup %s: update refused (%s); the previous values are restored", cg->path, e->msg);
    }
    undo_end();
    return rc < 0 ? ka_wrap(e, "cgroup %s", cg->path) : 0;
}

/* ======================================================================================================
 * Freezing
 * ====================================================================================================== */

static const char *v1_freezer_dir(struct cgroup *cg, ka_err *e)
{
    const char *d = cgroup_controller_dir(cg, "freezer");
    if (!d)
        ka_fail(e, KA_FAILED_PRECONDITION, "no freezer cgroup hierarchy for %s", cg->path);
    return d;
}

static int v1_freeze_write(struct cgroup *cg, bool frozen, ka_err *e)
{
    const char *d = v1_freezer_dir(cg, e);
    return d ? wr(d, "freezer.state", frozen ? "FROZEN" : "THAWED", false, e) : -1;
}

static int v1_freeze_check(struct cgroup *cg, bool frozen, bool *reached, char *state, size_t n, ka_err *e)
{
    const char *d = v1_freezer_dir(cg, e);
    cleanup_free char *st = NULL;
    if (!d || rd(d, "freezer.state", &st, e) < 0)
        return -1;
    snprintf(state, n, "%s", st);
    *reached = strcmp(st, frozen ? "FROZEN" : "THAWED") == 0;
    return 0;
}

static int v2_freeze_write(struct cgroup *cg, bool frozen, ka_err *e)
{
    return wr(cg->dirs[0], "cgroup.freeze", frozen ? "1" : "0", false, e);
}

static int v2_freeze_check(struct cgroup *cg, bool frozen, bool *reached, char *state, size_t n, ka_err *e)
{
    cleanup_free char *ev = NULL;
    const char *d = cg->dirs[0];
    if (rd(d, "cgroup.events", &ev, e) < 0)
        return -1;
    const char *p = strstr(ev, "frozen ");
    if (!p)
        return ka_fail(e, KA_INTERNAL, "%s/cgroup.events has no 'frozen' entry", d);
    snprintf(state, n, "frozen %c", p[7]);
    *reached = (p[7] == '1') == frozen;
    return 0;
}

/* One freeze or thaw being waited for; shared by the blocking and the loop variants. */
struct freeze_poll {
    struct cgroup *cg;
    bool want;
    uint64_t start_ns, rewrite_ns;
    long step_ms; /* until the next check */
    char state[32];
};

static int freeze_begin(struct freeze_poll *p, struct cgroup *cg, bool want, ka_err *e)
{
    memset(p, 0, sizeof(*p));
    p->cg = cg;
    p->want = want;
    p->step_ms = 1;
    p->start_ns = loop_now_ns();
    p->rewrite_ns = p->start_ns + REWRITE_MS * MS_NS;
    return cg->ops->freeze_write(cg, want, e);
}

/* Delay before the next check (1, 2, 4, 8, 10, 10... ms). */
static uint64_t freeze_next_ns(struct freeze_poll *p)
{
    long ms = p->step_ms;
    p->step_ms = ms * 2 < STEP_MAX_MS ? ms * 2 : STEP_MAX_MS;
    return (uint64_t)ms * MS_NS;
}

static int freeze_timeout(struct freeze_poll *p, ka_err *e)
{
    struct cgroup *cg = p->cg;
    ka_err ignored;
    if (p->want) /* do not leave it half frozen */
        cg->ops->freeze_write(cg, false, &ignored);
    if (cg->mode == CGROUP_V1)
        return ka_fail(e, KA_DEADLINE_EXCEEDED, "%s: freezer state is %s, not %s after %d ms", cg->path,
                       p->state, p->want ? "FROZEN" : "THAWED", WAIT_MS);
    return ka_fail(e, KA_DEADLINE_EXCEEDED, "%s: not %s after %d ms", cg->path, p->want ? "frozen" : "thawed",
                   WAIT_MS);
}

/* 1: the state is reached; 0: not yet, check again after freeze_next_ns(); -1: failed (also after WAIT_MS).
 */
static int freeze_check(struct freeze_poll *p, ka_err *e)
{
    struct cgroup *cg = p->cg;
    uint64_t now = loop_now_ns();
    /* (Re)write FROZEN now and then: a v1 freeze can stall on a task in an uninterruptible sleep. */
    if (cg->mode == CGROUP_V1 && p->want && now >= p->rewrite_ns) {
        p->rewrite_ns = now + REWRITE_MS * MS_NS;
        if (cg->ops->freeze_write(cg, true, e) < 0)
            return -1;
    }
    bool reached = false;
    if (cg->ops->freeze_check(cg, p->want, &reached, p->state, sizeof(p->state), e) < 0)
        return -1;
    if (reached)
        return 1;
    return now - p->start_ns >= WAIT_MS * MS_NS ? freeze_timeout(p, e) : 0;
}

static int busy_err(struct cgroup *cg, ka_err *e)
{
    return ka_fail(e, KA_FAILED_PRECONDITION, "cgroup %s: a freeze or thaw is already in progress", cg->path);
}

int cgroup_freeze(struct cgroup *cg, bool frozen, ka_err *e)
{
    struct freeze_poll p;
    int r = cg->busy ? busy_err(cg, e) : freeze_begin(&p, cg, frozen, e);
    while (r == 0 && (r = freeze_check(&p, e)) == 0)
        sleep_ms((long)(freeze_next_ns(&p) / MS_NS));
    if (r < 0)
        return ka_wrap(e, "%s cgroup", frozen ? "freeze" : "thaw");
    cg->frozen = frozen;
    return 0;
}

bool cgroup_is_frozen(const struct cgroup *cg)
{
    return cg->frozen;
}

/* ---- the same from the event loop ---- */

struct cgroup_freeze_op {
    struct freeze_poll p;
    struct loop *l;
    struct loop_timer timer;
    struct loop_defer now; /* reports a result found at once */
    int result;            /* for the deferred report: 1 or -1 */
    bool was_frozen;
    ka_err err;
    cgroup_done_cb done;
    void *arg;
};

static void freeze_op_finish(struct cgroup_freeze_op *op, int r)
{
    cgroup_done_cb done = op->done;
    void *arg = op->arg;
    bool want = op->p.want;
    ka_err err = op->err;
    op->p.cg->busy = NULL;
    if (r > 0)
        op->p.cg->frozen = want;
    free(op);
    if (r < 0)
        ka_wrap(&err, "%s cgroup", want ? "freeze" : "thaw");
    done(arg, r < 0 ? &err : NULL);
}

static void freeze_op_tick(struct loop_timer *t)
{
    struct cgroup_freeze_op *op = container_of(t, struct cgroup_freeze_op, timer);
    int r = freeze_check(&op->p, &op->err);
    if (r == 0)
        loop_timer_start(op->l, &op->timer, freeze_next_ns(&op->p));
    else
        freeze_op_finish(op, r);
}

static void freeze_op_deferred(struct loop_defer *d)
{
    struct cgroup_freeze_op *op = container_of(d, struct cgroup_freeze_op, now);
    freeze_op_finish(op, op->result);
}

struct cgroup_freeze_op *cgroup_freeze_async(struct loop *l, struct cgroup *cg, bool frozen,
                                             cgroup_done_cb done, void *arg, ka_err *e)
{
    if (cg->busy) {
        busy_err(cg, e);
        ka_wrap(e, "%s cgroup", frozen ? "freeze" : "thaw");
        return NULL;
    }
    struct cgroup_freeze_op *op = calloc(1, sizeof(*op));
    if (!op) {
        ka_fail_errno(e, ENOMEM, "cgroups");
        return NULL;
    }
    op->l = l;
    op->done = done;
    op->arg = arg;
    op->was_frozen = cg->frozen;
    loop_timer_init(&op->timer, freeze_op_tick);
    loop_defer_init(&op->now, freeze_op_deferred);
    if (freeze_begin(&op->p, cg, frozen, e) < 0) {
        free(op);
        ka_wrap(e, "%s cgroup", frozen ? "freeze" : "thaw");
        return NULL;
    }
    cg->busy = op;
    op->result = freeze_check(&op->p, &op->err);
    if (op->result == 0)
        loop_timer_start(l, &op->timer, freeze_next_ns(&op->p));
    else
        loop_defer(l, &op->now);
    return op;
}

void cgroup_freeze_cancel(struct cgroup_freeze_op *op)
{
    if (!op)
        return;
    struct cgroup *cg = op->p.cg;
    loop_timer_stop(op->l, &op->timer);
    loop_defer_cancel(&op->now);
    cg->busy = NULL;
    if (op->p.want && !op->was_frozen) {
        ka_err e;
        if (cg->ops->freeze_write(cg, false, &e) < 0)
            log_warn(SUB, "undo the freeze of %s: %s", cg->path, e.msg);
    }
    if (!op->p.want || !op->was_frozen)
        cg->frozen = false;
    free(op);
}

/* ======================================================================================================
 * Processes: enter, list, signal
 * ====================================================================================================== */

int cgroup_enter(struct cgroup *cg, pid_t pid, ka_err *e)
{
    for (size_t i = 0; i < cg->n; i++)
        if (wrf(cg->dirs[i], "cgroup.procs", false, e, "%d", (int)pid) < 0)
            return ka_wrap(e, "add pid %d to cgroup %s", (int)pid, cg->path);
    return 0;
}

struct pidv {
    pid_t *v;
    size_t n, cap;
};

static int pidv_add_file(struct pidv *pv, const char *dir, ka_err *e)
{
    cleanup_free char *text = NULL;
    if (rd(dir, "cgroup.procs", &text, e) < 0)
        return -1;
    for (char *p = text, *end; *p; p = end) {
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        if (pv->n == pv->cap) {
            size_t cap = pv->cap ? pv->cap * 2 : 32;
            pid_t *nv = realloc(pv->v, cap * sizeof(*nv));
            if (!nv)
                return ka_fail_errno(e, ENOMEM, "cgroup pids");
            pv->v = nv;
            pv->cap = cap;
        }
        pv->v[pv->n++] = (pid_t)v;
    }
    return 0;
}

static int collect_pids(struct pidv *pv, const char *dir, int depth, ka_err *e)
{
    if (depth > MAX_DEPTH)
        return ka_fail(e, KA_INTERNAL, "%s: cgroup tree too deep", dir);
    if (pidv_add_file(pv, dir, e) < 0)
        return -1;
    DIR *d = opendir(dir);
    if (!d)
        return ka_fail_errno(e, errno, "opendir %s", dir);
    int rc = 0;
    for (struct dirent *de; rc == 0 && (de = readdir(d));) {
        if (de->d_type != DT_DIR || strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char sub[PATH_MAX];
        rc = path_join(sub, sizeof(sub), dir, de->d_name, e);
        if (rc == 0)
            rc = collect_pids(pv, sub, depth + 1, e);
    }
    closedir(d);
    return rc;
}

int cgroup_pids(struct cgroup *cg, pid_t **pids, size_t *n, ka_err *e)
{
    struct pidv pv = {0};
    const char *dir = cg->ops->procs_dir(cg);
    if (!dir || collect_pids(&pv, dir, 0, e) < 0) {
        free(pv.v);
        return dir ? ka_wrap(e, "list the processes of cgroup %s", cg->path)
                   : ka_fail(e, KA_FAILED_PRECONDITION, "cgroup %s has no hierarchy", cg->path);
    }
    *pids = pv.v;
    *n = pv.n;
    return 0;
}

static const char *v1_procs_dir(const struct cgroup *cg)
{
    static const char *const pref[] = {"memory", "pids", "freezer", "cpu", "devices"};
    for (size_t i = 0; i < ARRAY_SIZE(pref); i++) {
        const char *d = cgroup_controller_dir(cg, pref[i]);
        if (d)
            return d;
    }
    return cg->n ? cg->dirs[0] : NULL;
}

static const char *v2_procs_dir(const struct cgroup *cg)
{
    return cg->dirs[0];
}

static int v1_kill_all(struct cgroup *cg, ka_err *e)
{
    (void)cg;
    (void)e;
    return 1;
}

static int v2_kill_all(struct cgroup *cg, ka_err *e)
{
    if (!file_exists(cg->dirs[0], "cgroup.kill"))
        return 1; /* before Linux 5.14 */
    return wr(cg->dirs[0], "cgroup.kill", "1", false, e);
}

/* Every listed pid; kill errors other than ESRCH are logged. -1 only if the pids cannot be listed. */
static int signal_pids(struct cgroup *cg, int sig, ka_err *e)
{
    pid_t *pids = NULL;
    size_t n = 0;
    int rc = cgroup_pids(cg, &pids, &n, e);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (kill(pids[i], sig) < 0 && errno != ESRCH)
            log_warn(SUB, "kill(%d, %d) in %s: %s", (int)pids[i], sig, cg->path, strerror(errno));
    free(pids);
    return rc;
}

int cgroup_signal_all(struct cgroup *cg, int sig, ka_err *e)
{
    if (sig == SIGKILL) {
        int r = cg->ops->kill_all(cg, e);
        if (r <= 0)
            return r < 0 ? ka_wrap(e, "kill cgroup %s", cg->path) : 0;
    }
    int rc = signal_pids(cg, sig, e);
    if (sig == SIGKILL && cg->frozen) { /* frozen processes (v1) would not die until thawed */
        ka_err te;
        if (cg->ops->freeze_write(cg, false, &te) < 0)
            log_warn(SUB, "thaw %s after SIGKILL: %s", cg->path, te.msg);
        else
            cg->frozen = false;
    }
    return rc;
}

/* ---- freeze, signal, thaw from the event loop ---- */

struct cgroup_signal_op {
    struct loop *l;
    struct cgroup *cg;
    int sig;
    struct cgroup_freeze_op *fop; /* our freeze, then our thaw, while in progress */
    bool signalled;
    int rc; /* of the signalling */
    ka_err err;
    struct loop_defer now; /* reports a sequence that needed no waiting */
    cgroup_done_cb done;
    void *arg;
};

static void signal_op_send(struct cgroup_signal_op *op)
{
    op->signalled = true;
    op->rc = cgroup_signal_all(op->cg, op->sig, &op->err);
}

static void signal_op_finish(struct cgroup_signal_op *op)
{
    cgroup_done_cb done = op->done;
    void *arg = op->arg;
    ka_err err = op->err;
    int rc = op->rc;
    free(op);
    done(arg, rc < 0 ? &err : NULL);
}

static void signal_op_deferred(struct loop_defer *d)
{
    signal_op_finish(container_of(d, struct cgroup_signal_op, now));
}

static void signal_op_thawed(void *arg, const ka_err *err)
{
    struct cgroup_signal_op *op = arg;
    op->fop = NULL;
    if (err)
        log_warn(SUB, "%s", err->msg);
    signal_op_finish(op);
}

static void signal_op_frozen(void *arg, const ka_err *err)
{
    struct cgroup_signal_op *op = arg;
    op->fop = NULL;
    if (err) /* the failed freeze was undone */
        log_warn(SUB, "signalling %s without freezing it: %s", op->cg->path, err->msg);
    signal_op_send(op);
    if (!err) { /* thaw what we froze */
        ka_err te;
        op->fop = cgroup_freeze_async(op->l, op->cg, false, signal_op_thawed, op, &te);
        if (op->fop)
            return;
        log_warn(SUB, "%s", te.msg);
    }
    signal_op_finish(op);
}

struct cgroup_signal_op *cgroup_signal_all_async(struct loop *l, struct cgroup *cg, int sig,
                                                 cgroup_done_cb done, void *arg, ka_err *e)
{
    struct cgroup_signal_op *op = calloc(1, sizeof(*op));
    if (!op) {
        ka_fail_errno(e, ENOMEM, "cgroups");
        return NULL;
    }
    op->l = l;
    op->cg = cg;
    op->sig = sig;
    op->done = done;
    op->arg = arg;
    loop_defer_init(&op->now, signal_op_deferred);
    /* a paused container stays paused: only a cgroup frozen here is thawed again */
    if (sig != SIGKILL && !cg->frozen && !cg->busy) {
        ka_err fe;
        op->fop = cgroup_freeze_async(l, cg, true, signal_op_frozen, op, &fe);
        if (op->fop)
            return op;
        log_warn(SUB, "signalling %s without freezing it: %s", cg->path, fe.msg);
    }
    signal_op_send(op);
    loop_defer(l, &op->now);
    return op;
}

void cgroup_signal_cancel(struct cgroup_signal_op *op)
{
    if (!op)
        return;
    loop_defer_cancel(&op->now);
    if (!op->signalled) {
        signal_op_send(op);
        if (op->rc < 0)
            log_warn(SUB, "%s", op->err.msg);
    }
    cgroup_freeze_cancel(op->fop); /* our freeze is undone; our thaw stays written */
    free(op);
}

/* ======================================================================================================
 * Removal
 * ====================================================================================================== */

static int rmdir_once(const char *dir, const char *path, ka_err *e)
{
    if (rmdir(dir) == 0 || errno == ENOENT)
        return 0;
    return ka_fail_errno(e, errno, "remove cgroup %s (%s)%s", path, dir,
                         errno == EBUSY ? ": processes remain" : "");
}

/* Children first: a container may have made its own cgroups below its own. */
static int rmdir_tree(const char *dir, const char *path, int depth, ka_err *e)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : ka_fail_errno(e, errno, "opendir %s", dir);
    int rc = 0;
    for (struct dirent *de; rc == 0 && (de = readdir(d));) {
        if (de->d_type != DT_DIR || strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char sub[PATH_MAX];
        rc = depth >= MAX_DEPTH ? ka_fail(e, KA_INTERNAL, "%s: cgroup tree too deep", dir)
                                : path_join(sub, sizeof(sub), dir, de->d_name, e);
        if (rc == 0)
            rc = rmdir_tree(sub, path, depth + 1, e);
    }
    closedir(d);
    return rc < 0 ? -1 : rmdir_once(dir, path, e);
}

int cgroup_destroy(struct cgroup *cg, ka_err *e)
{
    if (cg->mode == CGROUP_V2)
        v2_devices_detach(cg);
    int rc = 0;
    for (size_t i = 0; i < cg->n; i++) {
        ka_err one;
        if (rmdir_tree(cg->dirs[i], cg->path, 0, &one) < 0 && rc == 0) {
            *e = one; /* keep the first error, still try every hierarchy */
            rc = -1;
        }
    }
    return rc;
}

static const struct cg_ops v1_ops = {
    .apply = v1_apply,
    .freeze_write = v1_freeze_write,
    .freeze_check = v1_freeze_check,
    .kill_all = v1_kill_all,
    .procs_dir = v1_procs_dir,
};

static const struct cg_ops v2_ops = {
    .apply = v2_apply,
    .freeze_write = v2_freeze_write,
    .freeze_check = v2_freeze_check,
    .kill_all = v2_kill_all,
    .procs_dir = v2_procs_dir,
};
