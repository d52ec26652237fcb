/* Container statistics, live resource updates, pause/resume, ephemeral remounts and the virtio-fs share scan.
 */
#include "stats.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "container.h"
#include "../util/cleanup.h"
#include "../util/fs.h"
#include "../util/log.h"
#include "../util/mount_opts.h"

#define SUB                "manage"
#define HUGEPAGES_DIR      "/sys/kernel/mm/hugepages"
#define NS_PER_USEC        1000ULL
#define NS_PER_SEC         1000000000ULL
#define CPUSET_MAX_CPUS    (1u << 16) /* widening handles cpu lists up to this many CPUs */
#define VIRTIOFS_MAX       4096       /* share mounts stat'ed per call */
#define VIRTIOFS_TIMEOUT   (10 * NS_PER_SEC)
#define VIRTIOFS_MAX_SCANS 4 /* children at once: more calls get RESOURCE_EXHAUSTED */
#define MOUNT_DATA_MAX     4096

/* ======================================================================================================
 * Reading files
 * ====================================================================================================== */

/* dir/file as a malloc'd string, NULL if it cannot be read. */
static char *read_at(const char *dir, const char *file)
{
    char p[PATH_MAX];
    int r = snprintf(p, sizeof(p), "%s/%s", dir, file);
    if (r < 0 || (size_t)r >= sizeof(p))
        return NULL;
    char *text = NULL;
    ka_err e;
    return fs_read_file(p, &text, NULL, &e) == 0 ? text : NULL;
}

static bool exists_at(const char *dir, const char *file)
{
    char p[PATH_MAX];
    int r = snprintf(p, sizeof(p), "%s/%s", dir, file);
    return r > 0 && (size_t)r < sizeof(p) && access(p, F_OK) == 0;
}

/* A single number (or "max"), 0 when absent. */
static uint64_t read_u64(const char *dir, const char *file, uint64_t if_max)
{
    cleanup_free char *t = read_at(dir, file);
    return t ? stats_u64_or_max(t, if_max) : 0;
}

/* One key of a "key value" file, 0 when absent. */
static uint64_t read_kv(const char *dir, const char *file, const char *key)
{
    cleanup_free char *t = read_at(dir, file);
    uint64_t v = 0;
    return t && stats_kv(t, key, &v) ? v : 0;
}

/* ======================================================================================================
 * Parsers
 * ====================================================================================================== */

static bool parse_u64(const char *s, const char **end, uint64_t *out)
{
    if (!isdigit((unsigned char)*s))
        return false;
    errno = 0;
    char *e;
    unsigned long long v = strtoull(s, &e, 10);
    if (errno)
        return false;
    *out = v;
    if (end)
        *end = e;
    return true;
}

bool stats_kv(const char *text, const char *key, uint64_t *out)
{
    size_t kl = strlen(key);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, key, kl) == 0 && (p[kl] == ' ' || p[kl] == '\t')) {
            const char *v = p + kl;
            while (*v == ' ' || *v == '\t')
                v++;
            return parse_u64(v, NULL, out);
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return false;
}

uint64_t stats_u64_or_max(const char *text, uint64_t if_max)
{
    while (isspace((unsigned char)*text))
        text++;
    if (strncmp(text, "max", 3) == 0 || strncmp(text, "-1", 2) == 0)
        return if_max;
    uint64_t v = 0;
    return parse_u64(text, NULL, &v) ? v : 0;
}

int stats_u64_list(const char *text, size_t max, uint64_t **out, size_t *n)
{
    size_t cap = 0, cnt = 0;
    uint64_t *v = NULL;
    for (const char *p = text;;) {
        while (isspace((unsigned char)*p))
            p++;
        uint64_t x;
        if (!parse_u64(p, &p, &x) || cnt == max)
            break;
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, nc * sizeof(*nv));
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
            cap = nc;
        }
        v[cnt++] = x;
    }
    *out = v;
    *n = cnt;
    return 0;
}

int stats_kv_all(const char *text, size_t max, char ***keys, uint64_t **vals, size_t *n)
{
    size_t lines = 1;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    if (lines > max)
        lines = max;
    char **k = calloc(lines, sizeof(*k));
    uint64_t *v = calloc(lines, sizeof(*v));
    if (!k || !v) {
        free(k);
        free(v);
        return -1;
    }
    size_t cnt = 0;
    for (const char *p = text; p && *p && cnt < lines;) {
        size_t kl = strcspn(p, " \t\n");
        const char *val = p + kl;
        while (*val == ' ' || *val == '\t')
            val++;
        if (kl > 0 && val > p + kl && parse_u64(val, NULL, &v[cnt])) {
            if (!(k[cnt] = strndup(p, kl))) {
                stats_kv_free(k, v, cnt);
                return -1;
            }
            cnt++;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    *keys = k;
    *vals = v;
    *n = cnt;
    return 0;
}

void stats_kv_free(char **keys, uint64_t *vals, size_t n)
{
    for (size_t i = 0; keys && i < n; i++)
        free(keys[i]);
    free(keys);
    free(vals);
}

/* Growable array of struct stats_blkio. */
struct blkv {
    struct stats_blkio *v;
    size_t n, cap, max;
};

static int blkv_add(struct blkv *b, uint64_t major, uint64_t minor, const char *op, uint64_t value)
{
    if (b->n == b->max)
        return 0;
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 16;
        struct stats_blkio *nv = realloc(b->v, nc * sizeof(*nv));
        if (!nv)
            return -1;
        b->v = nv;
        b->cap = nc;
    }
    struct stats_blkio *x = &b->v[b->n++];
    x->major = major;
    x->minor = minor;
    x->value = value;
    snprintf(x->op, sizeof(x->op), "%s", op);
    return 0;
}

/* "MAJ:MIN" at *p. */
static bool parse_dev(const char **p, uint64_t *major, uint64_t *minor)
{
    const char *s = *p;
    if (!parse_u64(s, &s, major) || *s != ':' || !parse_u64(s + 1, &s, minor))
        return false;
    *p = s;
    return true;
}

static const char *blkio_op(const char *word, size_t len)
{
    static const char *const ops[] = {"read", "write", "sync", "async", "total"};
    for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
        if (strlen(ops[i]) == len && strncasecmp(word, ops[i], len) == 0)
            return ops[i];
    return NULL;
}

static int blkio_line(struct blkv *b, const char *line, bool with_op)
{
    uint64_t major, minor, value;
    const char *p = line, *op = "";
    if (!parse_dev(&p, &major, &minor))
        return 0; /* "Total N" and anything else */
    while (*p == ' ')
        p++;
    if (with_op) {
        size_t len = strcspn(p, " \n");
        if (!(op = blkio_op(p, len)))
            return 0; /* "Discard", ... */
        p += len;
        while (*p == ' ')
            p++;
    }
    if (!parse_u64(p, NULL, &value))
        return 0;
    return blkv_add(b, major, minor, op, value);
}

int stats_parse_blkio_v1(const char *text, bool with_op, size_t max, struct stats_blkio **out, size_t *n)
{
    struct blkv b = {.max = max};
    for (const char *p = text; p && *p;) {
        if (blkio_line(&b, p, with_op) < 0) {
            free(b.v);
            return -1;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    *out = b.v;
    *n = b.n;
    return 0;
}

int stats_parse_io_stat(const char *text, size_t max, struct stats_blkio **out, size_t *n)
{
    static const struct {
        const char *key, *op;
    } keys[] = {{"rbytes", "read"}, {"wbytes", "write"},  {"rios", "rios"},
                {"wios", "wios"},   {"dbytes", "dbytes"}, {"dios", "dios"}};
    struct blkv b = {.max = max};
    for (const char *p = text; p && *p;) {
        uint64_t major, minor;
        const char *q = p;
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (parse_dev(&q, &major, &minor)) {
            for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
                size_t kl = strlen(keys[i].key);
                for (const char *f = q; f < p + len; f++) {
                    uint64_t v;
                    if (f[-1] == ' ' && strncmp(f, keys[i].key, kl) == 0 && f[kl] == '=' &&
                        parse_u64(f + kl + 1, NULL, &v)) {
                        if (blkv_add(&b, major, minor, keys[i].op, v) < 0) {
                            free(b.v);
                            return -1;
                        }
                        break;
                    }
                }
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    *out = b.v;
    *n = b.n;
    return 0;
}

int stats_parse_net_dev(const char *text, size_t max, struct stats_netdev **out, size_t *n)
{
    struct stats_netdev *v = NULL;
    size_t cnt = 0, cap = 0;
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        const char *colon = strchr(p, ':');
        if (colon && (!eol || colon < eol) && strchr(p, '|') == NULL && cnt < max) {
            const char *name = p;
            while (*name == ' ')
                name++;
            size_t nl = (size_t)(colon - name);
            uint64_t f[16];
            const char *q = colon + 1;
            size_t nf = 0;
            for (; nf < 16; nf++) {
                while (*q == ' ')
                    q++;
                if (!parse_u64(q, &q, &f[nf]))
                    break;
            }
            if (nl > 0 && nl < sizeof(v->name) && nf == 16) {
                if (cnt == cap) {
                    size_t nc = cap ? cap * 2 : 8;
                    struct stats_netdev *nv = realloc(v, nc * sizeof(*nv));
                    if (!nv) {
                        free(v);
                        return -1;
                    }
                    v = nv;
                    cap = nc;
                }
                struct stats_netdev *d = &v[cnt++];
                memcpy(d->name, name, nl);
                d->name[nl] = '\0';
                /* rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets errs drop */
                d->rx_bytes = f[0];
                d->rx_packets = f[1];
                d->rx_errors = f[2];
                d->rx_dropped = f[3];
                d->tx_bytes = f[8];
                d->tx_packets = f[9];
                d->tx_errors = f[10];
                d->tx_dropped = f[11];
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    *out = v;
    *n = cnt;
    return 0;
}

bool stats_hugepage_name(const char *dirent, char *out, size_t n)
{
    uint64_t kb;
    const char *end;
    if (strncmp(dirent, "hugepages-", 10) != 0 || !parse_u64(dirent + 10, &end, &kb) ||
        strcmp(end, "kB") != 0 || kb == 0)
        return false;
    if (kb >= (1ULL << 20) && kb % (1ULL << 20) == 0)
        snprintf(out, n, "%" PRIu64 "GB", kb >> 20);
    else if (kb >= 1024 && kb % 1024 == 0)
        snprintf(out, n, "%" PRIu64 "MB", kb >> 10);
    else
        snprintf(out, n, "%" PRIu64 "KB", kb);
    return true;
}

uint64_t stats_ticks_to_ns(uint64_t ticks, long clk_tck)
{
    if (clk_tck <= 0)
        clk_tck = 100;
    uint64_t t = (uint64_t)clk_tck;
    return ticks / t * NS_PER_SEC + (ticks % t) * NS_PER_SEC / t;
}

int stats_mountinfo_below(const char *text, const char *prefix, size_t max, char ***out, size_t *n)
{
    char **v = NULL;
    size_t cnt = 0, cap = 0, pl = strlen(prefix);
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        /* id parent maj:min root MOUNT_POINT ... */
        const char *f = p;
        for (int i = 0; i < 4 && f; i++) {
            f = memchr(f, ' ', len - (size_t)(f - p));
            if (f)
                f++;
        }
        if (f && cnt < max) {
            const char *fe = memchr(f, ' ', len - (size_t)(f - p));
            size_t fl = fe ? (size_t)(fe - f) : len - (size_t)(f - p);
            char *mp = malloc(fl + 1);
            if (!mp) {
                stats_strv_free(v, cnt);
                return -1;
            }
            size_t o = 0;
            for (size_t i = 0; i < fl; i++) { /* \040 and friends */
                if (f[i] == '\\' && i + 3 < fl && f[i + 1] >= '0' && f[i + 1] <= '3' && f[i + 2] >= '0' &&
                    f[i + 2] <= '7' && f[i + 3] >= '0' && f[i + 3] <= '7') {
                    mp[o++] = (char)((f[i + 1] - '0') * 64 + (f[i + 2] - '0') * 8 + (f[i + 3] - '0'));
                    i += 3;
                } else {
                    mp[o++] = f[i];
                }
            }
            mp[o] = '\0';
            if (strncmp(mp, prefix, pl) != 0 || !mp[pl]) {
                free(mp);
            } else {
                if (cnt == cap) {
                    size_t nc = cap ? cap * 2 : 8;
                    char **nv = realloc(v, nc * sizeof(*nv));
                    if (!nv) {
                        free(mp);
                        stats_strv_free(v, cnt);
                        return -1;
                    }
                    v = nv;
                    cap = nc;
                }
                v[cnt++] = mp;
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    *out = v;
    *n = cnt;
    return 0;
}

void stats_strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* ======================================================================================================
 * The reply: every allocation is tracked and freed together
 * ====================================================================================================== */

struct ctr_stats {
    Grpc__StatsContainerResponse resp;
    void **allocs;
    size_t n, cap;
    bool nomem;
};

static void *sa_alloc(struct ctr_stats *s, size_t size)
{
    if (s->nomem)
        return NULL;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        void **nv = realloc(s->allocs, nc * sizeof(*nv));
        if (!nv) {
            s->nomem = true;
            return NULL;
        }
        s->allocs = nv;
        s->cap = nc;
    }
    void *p = calloc(1, size ? size : 1);
    if (!p) {
        s->nomem = true;
        return NULL;
    }
    s->allocs[s->n++] = p;
    return p;
}

static char *sa_strdup(struct ctr_stats *s, const char *str)
{
    size_t len = strlen(str);
    char *p = sa_alloc(s, len + 1);
    if (p)
        memcpy(p, str, len + 1);
    return p;
}

/* A message of type T initialised with INIT, owned by s. */
#define SA_NEW(s, T, INIT)                                                                                   \
    ({                                                                                                       \
        T *_p = sa_alloc((s), sizeof(T));                                                                    \
        if (_p) {                                                                                            \
            T _init = INIT;                                                                                  \
            *_p = _init;                                                                                     \
        }                                                                                                    \
        _p;                                                                                                  \
    })

const Grpc__StatsContainerResponse *stats_reply(const struct ctr_stats *s)
{
    return &s->resp;
}

void stats_free(struct ctr_stats *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->allocs[i]);
    free(s->allocs);
    free(s);
}

/* ======================================================================================================
 * CPU
 * ====================================================================================================== */

static void cpu_percpu(struct ctr_stats *s, Grpc__CpuUsage *u, const char *dir)
{
    cleanup_free char *t = read_at(dir, "cpuacct.usage_percpu");
    uint64_t *v = NULL;
    size_t n = 0;
    if (!t || stats_u64_list(t, STATS_MAX_ENTRIES, &v, &n) < 0 || n == 0) {
        free(v);
        return;
    }
    u->percpu_usage = sa_alloc(s, n * sizeof(uint64_t));
    if (u->percpu_usage) {
        memcpy(u->percpu_usage, v, n * sizeof(uint64_t));
        u->n_percpu_usage = n;
    }
    free(v);
}

static Grpc__ThrottlingData *cpu_throttling(struct ctr_stats *s, const char *stat, bool v2)
{
    uint64_t periods;
    if (!stat || !stats_kv(stat, "nr_periods", &periods))
        return NULL;
    Grpc__ThrottlingData *t = SA_NEW(s, Grpc__ThrottlingData, GRPC__THROTTLING_DATA__INIT);
    if (!t)
        return NULL;
    t->periods = periods;
    stats_kv(stat, "nr_throttled", &t->throttled_periods);
    if (v2) { /* throttled_usec: nanoseconds as on v1 (upstream reads throttled_time, absent on v2: 0) */
        if (stats_kv(stat, "throttled_usec", &t->throttled_time))
            t->throttled_time *= NS_PER_USEC;
    } else {
        stats_kv(stat, "throttled_time", &t->throttled_time);
    }
    return t;
}

static Grpc__CpuStats *cpu_v1(struct ctr_stats *s, const struct cgroup *cg)
{
    const char *acct = cgroup_controller_dir(cg, "cpuacct");
    const char *cpu = cgroup_controller_dir(cg, "cpu");
    if (!acct && !cpu)
        return NULL;
    Grpc__CpuStats *cs = SA_NEW(s, Grpc__CpuStats, GRPC__CPU_STATS__INIT);
    if (!cs)
        return NULL;
    if (acct && exists_at(acct, "cpuacct.usage")) {
        Grpc__CpuUsage *u = SA_NEW(s, Grpc__CpuUsage, GRPC__CPU_USAGE__INIT);
        if (!u)
            return NULL;
        u->total_usage = read_u64(acct, "cpuacct.usage", 0);
        cpu_percpu(s, u, acct);
        long tck = sysconf(_SC_CLK_TCK);
        u->usage_in_usermode = stats_ticks_to_ns(read_kv(acct, "cpuacct.stat", "user"), tck);
        u->usage_in_kernelmode = stats_ticks_to_ns(read_kv(acct, "cpuacct.stat", "system"), tck);
        cs->cpu_usage = u;
    }
    if (cpu) {
        cleanup_free char *stat = read_at(cpu, "cpu.stat");
        cs->throttling_data = cpu_throttling(s, stat, false);
    }
    return cs;
}

/* v2 cpu.stat is in microseconds: reported in nanoseconds like v1 (upstream passes microseconds on). */
static Grpc__CpuStats *cpu_v2(struct ctr_stats *s, const char *dir)
{
    cleanup_free char *stat = read_at(dir, "cpu.stat");
    if (!stat)
        return NULL;
    Grpc__CpuStats *cs = SA_NEW(s, Grpc__CpuStats, GRPC__CPU_STATS__INIT);
    Grpc__CpuUsage *u = SA_NEW(s, Grpc__CpuUsage, GRPC__CPU_USAGE__INIT);
    if (!cs || !u)
        return NULL;
    uint64_t v;
    if (stats_kv(stat, "usage_usec", &v))
        u->total_usage = v * NS_PER_USEC;
    if (stats_kv(stat, "user_usec", &v))
        u->usage_in_usermode = v * NS_PER_USEC;
    if (stats_kv(stat, "system_usec", &v))
        u->usage_in_kernelmode = v * NS_PER_USEC;
    cs->cpu_usage = u;
    cs->throttling_data = cpu_throttling(s, stat, true);
    return cs;
}

/* ======================================================================================================
 * Memory
 * ====================================================================================================== */

/* usage, max_usage, failcnt, limit of "<prefix>usage_in_bytes" etc. (v1). */
static Grpc__MemoryData *mem_data_v1(struct ctr_stats *s, const char *dir, const char *prefix)
{
    Grpc__MemoryData *m = SA_NEW(s, Grpc__MemoryData, GRPC__MEMORY_DATA__INIT);
    if (!m)
        return NULL;
    char f[64];
    snprintf(f, sizeof(f), "%susage_in_bytes", prefix);
    m->usage = read_u64(dir, f, 0);
    snprintf(f, sizeof(f), "%smax_usage_in_bytes", prefix);
    m->max_usage = read_u64(dir, f, 0);
    snprintf(f, sizeof(f), "%sfailcnt", prefix);
    m->failcnt = read_u64(dir, f, 0);
    snprintf(f, sizeof(f), "%slimit_in_bytes", prefix);
    m->limit = read_u64(dir, f, UINT64_MAX);
    return m;
}

static void mem_stat_map(struct ctr_stats *s, Grpc__MemoryStats *ms, const char *text)
{
    char **keys = NULL;
    uint64_t *vals = NULL;
    size_t n = 0;
    if (stats_kv_all(text, STATS_MAX_MEM_KEYS, &keys, &vals, &n) < 0)
        return;
    ms->stats = n ? sa_alloc(s, n * sizeof(*ms->stats)) : NULL;
    for (size_t i = 0; ms->stats && i < n; i++) {
        Grpc__MemoryStats__StatsEntry *en =
            SA_NEW(s, Grpc__MemoryStats__StatsEntry, GRPC__MEMORY_STATS__STATS_ENTRY__INIT);
        char *k = sa_strdup(s, keys[i]);
        if (!en || !k)
            break;
        en->key = k;
        en->value = vals[i];
        ms->stats[ms->n_stats++] = en;
    }
    stats_kv_free(keys, vals, n);
}

static Grpc__MemoryStats *mem_v1(struct ctr_stats *s, const struct cgroup *cg)
{
    const char *d = cgroup_controller_dir(cg, "memory");
    if (!d || !exists_at(d, "memory.usage_in_bytes"))
        return NULL;
    Grpc__MemoryStats *ms = SA_NEW(s, Grpc__MemoryStats, GRPC__MEMORY_STATS__INIT);
    if (!ms)
        return NULL;
    cleanup_free char *stat = read_at(d, "memory.stat");
    if (stat) {
        stats_kv(stat, "cache", &ms->cache);
        mem_stat_map(s, ms, stat);
    }
    ms->use_hierarchy = read_u64(d, "memory.use_hierarchy", 0) == 1;
    ms->usage = mem_data_v1(s, d, "memory.");
    ms->swap_usage = mem_data_v1(s, d, "memory.memsw.");
    ms->kernel_usage = mem_data_v1(s, d, "memory.kmem.");
    return ms;
}

/* v2: usage from memory.current/peak/events/max; swap as memory+swap (v1's memsw, as runc); kernel from
 * memory.stat "kernel"; cache is memory.stat "file". */
static Grpc__MemoryStats *mem_v2(struct ctr_stats *s, const char *d)
{
    if (!exists_at(d, "memory.current"))
        return NULL;
    Grpc__MemoryStats *ms = SA_NEW(s, Grpc__MemoryStats, GRPC__MEMORY_STATS__INIT);
    Grpc__MemoryData *u = SA_NEW(s, Grpc__MemoryData, GRPC__MEMORY_DATA__INIT);
    Grpc__MemoryData *sw = SA_NEW(s, Grpc__MemoryData, GRPC__MEMORY_DATA__INIT);
    Grpc__MemoryData *k = SA_NEW(s, Grpc__MemoryData, GRPC__MEMORY_DATA__INIT);
    if (!ms || !u || !sw || !k)
        return NULL;
    cleanup_free char *stat = read_at(d, "memory.stat");
    if (stat) {
        stats_kv(stat, "file", &ms->cache);
        stats_kv(stat, "kernel", &k->usage);
        mem_stat_map(s, ms, stat);
    }
    ms->use_hierarchy = true;
    u->usage = read_u64(d, "memory.current", 0);
    u->max_usage = read_u64(d, "memory.peak", 0);
    u->failcnt = read_kv(d, "memory.events", "max");
    u->limit = read_u64(d, "memory.max", UINT64_MAX);
    if (exists_at(d, "memory.swap.current")) {
        uint64_t swap_limit = read_u64(d, "memory.swap.max", UINT64_MAX);
        sw->usage = u->usage + read_u64(d, "memory.swap.current", 0);
        sw->failcnt = read_kv(d, "memory.swap.events", "fail");
        sw->limit = swap_limit == UINT64_MAX || u->limit == UINT64_MAX ? UINT64_MAX : swap_limit + u->limit;
    }
    ms->usage = u;
    ms->swap_usage = sw;
    ms->kernel_usage = k;
    return ms;
}

/* ======================================================================================================
 * Pids, block I/O, hugetlb, network
 * ====================================================================================================== */

static Grpc__PidsStats *pids_stats(struct ctr_stats *s, const char *d)
{
    if (!d || !exists_at(d, "pids.current"))
        return NULL;
    Grpc__PidsStats *p = SA_NEW(s, Grpc__PidsStats, GRPC__PIDS_STATS__INIT);
    if (!p)
        return NULL;
    p->current = read_u64(d, "pids.current", 0);
    p->limit = read_u64(d, "pids.max", 0); /* "max" = 0, as upstream */
    return p;
}

static void blk_list(struct ctr_stats *s, const struct stats_blkio *v, size_t n, Grpc__BlkioStatsEntry ***out,
                     size_t *nout)
{
    *out = n ? sa_alloc(s, n * sizeof(**out)) : NULL;
    *nout = 0;
    for (size_t i = 0; *out && i < n; i++) {
        Grpc__BlkioStatsEntry *en = SA_NEW(s, Grpc__BlkioStatsEntry, GRPC__BLKIO_STATS_ENTRY__INIT);
        char *op = sa_strdup(s, v[i].op);
        if (!en || !op)
            return;
        en->major = v[i].major;
        en->minor = v[i].minor;
        en->op = op;
        en->value = v[i].value;
        (*out)[(*nout)++] = en;
    }
}

/* One v1 blkio file into a list; returns the number of entries. */
static size_t blk_file(struct ctr_stats *s, const char *dir, const char *file, bool with_op,
                       Grpc__BlkioStatsEntry ***out, size_t *nout)
{
    cleanup_free char *t = read_at(dir, file);
    struct stats_blkio *v = NULL;
    size_t n = 0;
    if (t && stats_parse_blkio_v1(t, with_op, STATS_MAX_ENTRIES, &v, &n) == 0)
        blk_list(s, v, n, out, nout);
    free(v);
    return n;
}

static bool blk_has_entries(const char *dir, const char *file)
{
    cleanup_free char *t = read_at(dir, file);
    struct stats_blkio *v = NULL;
    size_t n = 0;
    if (t && stats_parse_blkio_v1(t, true, 1, &v, &n) < 0)
        n = 0;
    free(v);
    return n > 0;
}

/* v1: the CFQ files, else BFQ's, else the throttle files (upstream falls back from CFQ to throttle; BFQ is
 * what current kernels have, as runc reads it). */
static Grpc__BlkioStats *blkio_v1(struct ctr_stats *s, const char *d)
{
    if (!d)
        return NULL;
    Grpc__BlkioStats *b = SA_NEW(s, Grpc__BlkioStats, GRPC__BLKIO_STATS__INIT);
    if (!b)
        return NULL;
    const char *pfx = blk_has_entries(d, "blkio.io_serviced_recursive")       ? "blkio."
                      : blk_has_entries(d, "blkio.bfq.io_serviced_recursive") ? "blkio.bfq."
                                                                              : NULL;
    char f[96];
#define BLK(name, field, op)                                                                                 \
    do {                                                                                                     \
        snprintf(f, sizeof(f), "%s" name, pfx);                                                              \
        blk_file(s, d, f, op, &b->field, &b->n_##field);                                                     \
    } while (0)
    if (pfx) {
        BLK("io_service_bytes_recursive", io_service_bytes_recursive, true);
        BLK("io_serviced_recursive", io_serviced_recursive, true);
        BLK("io_queued_recursive", io_queued_recursive, true);
        BLK("io_service_time_recursive", io_service_time_recursive, true);
        BLK("io_wait_time_recursive", io_wait_time_recursive, true);
        BLK("io_merged_recursive", io_merged_recursive, true);
        BLK("time_recursive", io_time_recursive, false);
        BLK("sectors_recursive", sectors_recursive, false);
        return b;
    }
#undef BLK
    const char *bytes = exists_at(d, "blkio.throttle.io_service_bytes_recursive")
                            ? "blkio.throttle.io_service_bytes_recursive"
                            : "blkio.throttle.io_service_bytes";
    const char *ios = exists_at(d, "blkio.throttle.io_serviced_recursive")
                          ? "blkio.throttle.io_serviced_recursive"
                          : "blkio.throttle.io_serviced";
    blk_file(s, d, bytes, true, &b->io_service_bytes_recursive, &b->n_io_service_bytes_recursive);
    blk_file(s, d, ios, true, &b->io_serviced_recursive, &b->n_io_serviced_recursive);
    return b;
}

/* v2 io.stat: every key into io_service_bytes_recursive (upstream), and rios/wios also as read/write in
 * io_serviced_recursive (what v1 consumers look for, as runc). */
static Grpc__BlkioStats *blkio_v2(struct ctr_stats *s, const char *d)
{
    cleanup_free char *t = exists_at(d, "io.stat") ? read_at(d, "io.stat") : NULL;
    if (!t)
        return NULL;
    Grpc__BlkioStats *b = SA_NEW(s, Grpc__BlkioStats, GRPC__BLKIO_STATS__INIT);
    struct stats_blkio *v = NULL;
    size_t n = 0;
    if (!b || stats_parse_io_stat(t, STATS_MAX_ENTRIES, &v, &n) < 0)
        return b;
    blk_list(s, v, n, &b->io_service_bytes_recursive, &b->n_io_service_bytes_recursive);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].op, "rios") == 0 || strcmp(v[i].op, "wios") == 0) {
            v[m] = v[i];
            snprintf(v[m].op, sizeof(v[m].op), "%s", v[i].op[0] == 'r' ? "read" : "write");
            m++;
        }
    }
    blk_list(s, v, m, &b->io_serviced_recursive, &b->n_io_serviced_recursive);
    free(v);
    return b;
}

static Grpc__HugetlbStats *huge_one(struct ctr_stats *s, const char *d, const char *size, bool v2)
{
    char f[96];
    snprintf(f, sizeof(f), v2 ? "hugetlb.%s.current" : "hugetlb.%s.usage_in_bytes", size);
    if (!exists_at(d, f))
        return NULL;
    Grpc__HugetlbStats *h = SA_NEW(s, Grpc__HugetlbStats, GRPC__HUGETLB_STATS__INIT);
    if (!h)
        return NULL;
    h->usage = read_u64(d, f, 0);
    if (v2) {
        snprintf(f, sizeof(f), "hugetlb.%s.events", size);
        h->failcnt = read_kv(d, f, "max");
    } else {
        snprintf(f, sizeof(f), "hugetlb.%s.max_usage_in_bytes", size);
        h->max_usage = read_u64(d, f, 0);
        snprintf(f, sizeof(f), "hugetlb.%s.failcnt", size);
        h->failcnt = read_u64(d, f, 0);
    }
    return h;
}

static void hugetlb_stats(struct ctr_stats *s, Grpc__CgroupStats *cs, const char *d, bool v2)
{
    DIR *dir = d ? opendir(HUGEPAGES_DIR) : NULL;
    if (!dir)
        return;
    cs->hugetlb_stats = sa_alloc(s, STATS_MAX_HUGE * sizeof(*cs->hugetlb_stats));
    for (struct dirent *de;
         cs->hugetlb_stats && cs->n_hugetlb_stats < STATS_MAX_HUGE && (de = readdir(dir));) {
        char size[32];
        if (!stats_hugepage_name(de->d_name, size, sizeof(size)))
            continue;
        Grpc__HugetlbStats *h = huge_one(s, d, size, v2);
        Grpc__CgroupStats__HugetlbStatsEntry *en =
            h ? SA_NEW(s, Grpc__CgroupStats__HugetlbStatsEntry, GRPC__CGROUP_STATS__HUGETLB_STATS_ENTRY__INIT)
              : NULL;
        char *key = en ? sa_strdup(s, size) : NULL;
        if (!key)
            continue;
        en->key = key;
        en->value = h;
        cs->hugetlb_stats[cs->n_hugetlb_stats++] = en;
    }
    closedir(dir);
}

/* The interfaces of the container's network namespace: /proc/<init pid>/net/dev is that namespace's view. */
static void net_stats(struct ctr_stats *s, struct container *c)
{
    if (!c->init || c->init->exited || c->init->pid <= 0)
        return;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/net", (int)c->init->pid);
    cleanup_free char *t = read_at(path, "dev");
    struct stats_netdev *v = NULL;
    size_t n = 0;
    if (!t || stats_parse_net_dev(t, STATS_MAX_IFACES, &v, &n) < 0 || n == 0) {
        free(v);
        return;
    }
    Grpc__StatsContainerResponse *r = &s->resp;
    r->network_stats = sa_alloc(s, n * sizeof(*r->network_stats));
    for (size_t i = 0; r->network_stats && i < n; i++) {
        Grpc__NetworkStats *ns = SA_NEW(s, Grpc__NetworkStats, GRPC__NETWORK_STATS__INIT);
        char *name = sa_strdup(s, v[i].name);
        if (!ns || !name)
            break;
        ns->name = name;
        ns->rx_bytes = v[i].rx_bytes;
        ns->rx_packets = v[i].rx_packets;
        ns->rx_errors = v[i].rx_errors;
        ns->rx_dropped = v[i].rx_dropped;
        ns->tx_bytes = v[i].tx_bytes;
        ns->tx_packets = v[i].tx_packets;
        ns->tx_errors = v[i].tx_errors;
        ns->tx_dropped = v[i].tx_dropped;
        r->network_stats[r->n_network_stats++] = ns;
    }
    free(v);
}

static Grpc__CgroupStats *cgroup_stats(struct ctr_stats *s, const struct cgroup *cg, bool v2)
{
    Grpc__CgroupStats *cs = SA_NEW(s, Grpc__CgroupStats, GRPC__CGROUP_STATS__INIT);
    if (!cs)
        return NULL;
    if (v2) {
        const char *d = cgroup_controller_dir(cg, "memory"); /* the unified directory */
        if (!d)
            return cs;
        cs->cpu_stats = cpu_v2(s, d);
        cs->memory_stats = mem_v2(s, d);
        cs->pids_stats = pids_stats(s, d);
        cs->blkio_stats = blkio_v2(s, d);
        hugetlb_stats(s, cs, d, true);
    } else {
        cs->cpu_stats = cpu_v1(s, cg);
        cs->memory_stats = mem_v1(s, cg);
        cs->pids_stats = pids_stats(s, cgroup_controller_dir(cg, "pids"));
        cs->blkio_stats = blkio_v1(s, cgroup_controller_dir(cg, "blkio"));
        hugetlb_stats(s, cs, cgroup_controller_dir(cg, "hugetlb"), false);
    }
    return cs;
}

int stats_collect(struct container *c, struct ctr_stats **out, ka_err *e)
{
    struct ctr_stats *s = calloc(1, sizeof(*s));
    if (!s)
        return ka_fail_errno(e, ENOMEM, "statistics of container %s", c->id);
    s->resp = (Grpc__StatsContainerResponse)GRPC__STATS_CONTAINER_RESPONSE__INIT;
    if (c->cg)
        s->resp.cgroup_stats = cgroup_stats(s, c->cg, cgroup_env_mode(c->sb->cgenv) == CGROUP_V2);
    net_stats(s, c);
    if (s->nomem) {
        stats_free(s);
        return ka_fail_errno(e, ENOMEM, "statistics of container %s", c->id);
    }
    *out = s;
    return 0;
}

/* ======================================================================================================
 * UpdateContainer: live resources, cpuset widening, the spec's copy
 * ====================================================================================================== */

/* A set of CPUs as a bitmap. */
struct cpuset {
    uint64_t *bits;
    size_t words;
};

static void cpuset_free(struct cpuset *c)
{
    free(c->bits);
    c->bits = NULL;
    c->words = 0;
}

static bool cpuset_set(struct cpuset *c, unsigned long cpu)
{
    size_t w = cpu / 64;
    if (cpu >= CPUSET_MAX_CPUS)
        return false;
    if (w >= c->words) {
        uint64_t *nb = realloc(c->bits, (w + 1) * sizeof(*nb));
        if (!nb)
            return false;
        memset(nb + c->words, 0, (w + 1 - c->words) * sizeof(*nb));
        c->bits = nb;
        c->words = w + 1;
    }
    c->bits[w] |= 1ULL << (cpu % 64);
    return true;
}

static bool cpuset_has(const struct cpuset *c, size_t cpu)
{
    return cpu / 64 < c->words && (c->bits[cpu / 64] >> (cpu % 64)) & 1;
}

/* "0-3,5" (empty = no cpus). false on syntax errors or too many cpus. */
static bool cpuset_parse(const char *s, struct cpuset *out)
{
    memset(out, 0, sizeof(*out));
    while (isspace((unsigned char)*s))
        s++;
    while (*s && *s != '\n') {
        uint64_t a, b;
        if (!parse_u64(s, &s, &a))
            goto bad;
        b = a;
        if (*s == '-' && !parse_u64(s + 1, &s, &b))
            goto bad;
        if (b < a || b >= CPUSET_MAX_CPUS)
            goto bad;
        for (uint64_t i = a; i <= b; i++)
            if (!cpuset_set(out, (unsigned long)i))
                goto bad;
        if (*s == ',')
            s++;
        else if (*s && *s != '\n')
            goto bad;
    }
    return true;
bad:
    cpuset_free(out);
    return false;
}

static bool cpuset_subset(const struct cpuset *a, const struct cpuset *b)
{
    for (size_t w = 0; w < a->words; w++)
        if (a->bits[w] & ~(w < b->words ? b->bits[w] : 0))
            return false;
    return true;
}

/* Ranges, "0-3,5". */
static void cpuset_format(const struct cpuset *c, char *buf, size_t n)
{
    size_t o = 0, max = c->words * 64;
    buf[0] = '\0';
    for (size_t i = 0; i < max; i++) {
        if (!cpuset_has(c, i))
            continue;
        size_t j = i;
        while (j + 1 < max && cpuset_has(c, j + 1))
            j++;
        int r = j > i ? snprintf(buf + o, n - o, "%s%zu-%zu", o ? "," : "", i, j)
                      : snprintf(buf + o, n - o, "%s%zu", o ? "," : "", i);
        if (r < 0 || (size_t)r >= n - o)
            return;
        o += (size_t)r;
        i = j;
    }
}

static int write_at(const char *dir, const char *file, const char *val, ka_err *e)
{
    char p[PATH_MAX];
    int r = snprintf(p, sizeof(p), "%s/%s", dir, file);
    if (r < 0 || (size_t)r >= sizeof(p))
        return ka_fail(e, KA_INVALID_ARGUMENT, "path too long: %s/%s", dir, file);
    return fs_write_file(p, val, (size_t)-1, e);
}

/* Make ancestor `dir` (a cpuset directory) allow want: its cpus become their union with want. */
static int widen_one(const char *dir, const struct cpuset *want, ka_err *e)
{
    cleanup_free char *cur = read_at(dir, "cpuset.cpus");
    struct cpuset have;
    if (!cur || !cpuset_parse(cur, &have))
        return 0;
    int rc = 0;
    if (have.words && !cpuset_subset(want, &have)) { /* v2: empty = inherited, nothing to widen */
        for (size_t i = 0; i < want->words * 64; i++)
            if (cpuset_has(want, i) && !cpuset_set(&have, (unsigned long)i))
                rc = ka_fail_errno(e, ENOMEM, "cpuset");
        char buf[8192];
        cpuset_format(&have, buf, sizeof(buf));
        if (rc == 0 && (rc = write_at(dir, "cpuset.cpus", buf, e)) == 0)
            log_info(SUB, "widened %s/cpuset.cpus to %s", dir, buf);
    }
    cpuset_free(&have);
    return rc;
}

/* The container's cgroup could not take the new cpus because an ancestor's cpuset is narrower (CPUs were
 * hot-added since): widen the ancestors from the top down, then write the container's cpus. As upstream, a
 * cpuset that cannot be applied is only a warning. */
static void widen_cpuset(struct container *c, const char *cpus)
{
    const char *d = cgroup_controller_dir(c->cg, "cpuset");
    const char *path = cgroup_get_path(c->cg);
    bool v2 = cgroup_env_mode(c->sb->cgenv) == CGROUP_V2;
    struct cpuset want, have;
    if (!d || !cpuset_parse(cpus, &want))
        return;
    cleanup_free char *cur = read_at(d, v2 ? "cpuset.cpus.effective" : "cpuset.cpus");
    bool ok = cur && cpuset_parse(cur, &have);
    bool done = ok && cpuset_subset(&want, &have) && (v2 || cpuset_subset(&have, &want));
    if (ok)
        cpuset_free(&have);
    size_t dl = strlen(d), pl = strlen(path);
    if (done || pl > dl || strcmp(d + dl - pl, path) != 0) {
        cpuset_free(&want);
        return;
    }
    ka_err e;
    char anc[PATH_MAX];
    int rc = 0;
    for (size_t i = 1; rc == 0 && i < pl; i++) { /* every ancestor below the hierarchy's root */
        if (path[i] != '/')
            continue;
        snprintf(anc, sizeof(anc), "%.*s", (int)(dl - pl + i), d);
        rc = widen_one(anc, &want, &e);
    }
    if (rc == 0)
        rc = write_at(d, "cpuset.cpus", cpus, &e);
    if (rc < 0)
        log_warn(SUB, "container %s: cpuset.cpus %s not applied: %s", c->id, cpus, e.msg);
    cpuset_free(&want);
}

/* A copy of res allocated the way c->spec was (protobuf-c unpack), so that free_unpacked frees it. */
static Grpc__LinuxResources *copy_resources(const Grpc__LinuxResources *res, ka_err *e)
{
    size_t n = protobuf_c_message_get_packed_size(&res->base);
    cleanup_free uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        ka_fail_errno(e, ENOMEM, "resources");
        return NULL;
    }
    protobuf_c_message_pack(&res->base, buf);
    Grpc__LinuxResources *copy = grpc__linux_resources__unpack(NULL, n, buf);
    if (!copy)
        ka_fail_errno(e, ENOMEM, "resources");
    return copy;
}

int ctr_update_resources(struct container *c, const Grpc__LinuxResources *res, ka_err *e)
{
    if (!c->cg || c->status == CTR_CREATING || c->status == CTR_REMOVING)
        return ka_fail(e, KA_FAILED_PRECONDITION, "container %s is %s: its resources cannot be updated",
                       c->id, container_status_name(c->status));
    Grpc__LinuxResources *copy = copy_resources(res, e); /* before any write: ENOMEM changes nothing */
    if (!copy)
        return ka_wrap(e, "update container %s", c->id);
    if (cgroup_apply(c->cg, res, true, e) < 0) {
        protobuf_c_message_free_unpacked(&copy->base, NULL);
        return ka_wrap(e, "update container %s", c->id);
    }
    if (res->cpu && res->cpu->cpus && res->cpu->cpus[0])
        widen_cpuset(c, res->cpu->cpus);
    Grpc__Linux *lx = c->spec->linux;
    if (lx->resources)
        protobuf_c_message_free_unpacked(&lx->resources->base, NULL);
    lx->resources = copy;
    log_info(SUB, "container %s: resources updated", c->id);
    return 0;
}

/* ======================================================================================================
 * UpdateEphemeralMounts
 * ====================================================================================================== */

/* Parsed remount options. */
struct remount_opts {
    unsigned long set, cleared;
    char data[MOUNT_DATA_MAX];
};

/* A remount changes per-mount and superblock flags only: binds, propagation and mandatory locks are refused,
 * "remount" itself is implied. */
static int remount_token(const char *tok, size_t len, struct remount_opts *o, ka_err *e)
{
    if (len == 0 || (len >= 5 && strncmp(tok, "fsgid", 5) == 0)) /* fsgid only applies at mount time */
        return 0;
    const struct mnt_word *k = mnt_word_find(tok, len);
    if (k && (k->propagation || (k->flag & (MS_BIND | MS_MANDLOCK))))
        return ka_fail(e, KA_INVALID_ARGUMENT, "option '%.*s' cannot be used to update a mount", (int)len,
                       tok);
    if (k) {
        struct mnt_flags f = {o->set, o->cleared, 0};
        if (k->flag != MS_REMOUNT)
            mnt_flags_apply(&f, k);
        o->set = f.set;
        o->cleared = f.cleared;
        return 0;
    }
    return mnt_data_append(o->data, sizeof(o->data), tok, len, e);
}

static int remount_parse(const Grpc__Storage *st, struct remount_opts *o, ka_err *e)
{
    memset(o, 0, sizeof(*o));
    for (size_t i = 0; i < st->n_options; i++) {
        for (const char *p = st->options[i];;) {
            size_t len = strcspn(p, ",");
            if (remount_token(p, len, o, e) < 0)
                return -1;
            if (!p[len])
                break;
            p += len + 1;
        }
    }
    return 0;
}

static bool refs_have(const struct storage_refs *r, const char *mp)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->mount_points[i], mp) == 0)
            return true;
    return false;
}

/* Is mp a storage mount point the sandbox or one of its containers holds? */
static bool sandbox_has_storage(struct sandbox *sb, const char *mp)
{
    if (refs_have(&sb->refs, mp))
        return true;
    list_for_each (pos, &sb->containers) {
        const struct container *c = container_of(pos, struct container, link);
        if (refs_have(&c->refs, mp))
            return true;
    }
    return false;
}

/* Open the mount point below base without following symlinks; it must be the root of a tmpfs mount. */
static int open_tmpfs_root(const char *base, const char *mp, ka_err *e)
{
    size_t bl = strlen(base);
    if (strncmp(mp, base, bl) != 0 || mp[bl] != '/' || !mp[bl + 1])
        return ka_fail(e, KA_INVALID_ARGUMENT, "mount point %s is outside %s", mp, base);
    cleanup_close int bfd = open(base, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (bfd < 0)
        return ka_fail_errno(e, errno, "open %s", base);
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
    cleanup_close int fd = (int)syscall(SYS_openat2, bfd, mp + bl + 1, &how, sizeof(how));
    if (fd < 0)
        return ka_fail_errno(e, errno, "open mount point %s", mp);
    struct statfs sf;
    struct stat st, parent;
    if (fstatfs(fd, &sf) < 0 || fstat(fd, &st) < 0 || fstatat(fd, "..", &parent, 0) < 0)
        return ka_fail_errno(e, errno, "stat %s", mp);
    if (sf.f_type != TMPFS_MAGIC || st.st_dev == parent.st_dev)
        return ka_fail(e, KA_FAILED_PRECONDITION, "%s is not a tmpfs mount point", mp);
    return steal_fd(fd);
}

/* Keep the mount's current per-mount and superblock flags unless the options change them. */
static unsigned long remount_flags_for(int fd, const struct remount_opts *o)
{
    const unsigned long keep = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_SYNCHRONOUS;
    struct statvfs sv;
    unsigned long cur = fstatvfs(fd, &sv) == 0 ? (sv.f_flag & keep) : 0; /* ST_* equal MS_* for these */
    return MS_REMOUNT | ((cur | o->set) & ~o->cleared);
}

/* The storages of one request, checked: each mount point, normalized and opened. */
struct eph_target {
    int fd;
    char *mp;
};

/* Check one storage; on success t holds its mount point. */
static int ephemeral_check(struct sandbox *sb, const Grpc__Storage *st, struct remount_opts *o,
                           struct eph_target *t, ka_err *e)
{
    char mp[PATH_MAX];
    if (strcmp(st->driver, "ephemeral") != 0)
        return ka_fail(e, KA_INVALID_ARGUMENT,
                       "Unsupported storage type for syncing mounts %s. Only ephemeral storage update is "
                       "supported",
                       st->driver);
    if (st->fstype[0] && strcmp(st->fstype, "tmpfs") != 0)
        return ka_fail(e, KA_INVALID_ARGUMENT, "ephemeral storage fstype '%s' is not supported (tmpfs only)",
                       st->fstype);
    if (fs_normalize_path("mount point", st->mount_point, mp, e) < 0 || remount_parse(st, o, e) < 0)
        return -1;
    if (!sandbox_has_storage(sb, mp))
        return ka_fail(e, KA_NOT_FOUND, "%s is not the mount point of a storage of this sandbox", mp);
    if (!(t->mp = strdup(mp)))
        return ka_fail_errno(e, ENOMEM, "storages");
    t->fd = open_tmpfs_root(sb->storages.base, mp, e);
    return t->fd < 0 ? -1 : 0;
}

static int remount_one(const Grpc__Storage *st, size_t idx, int fd, ka_err *e)
{
    struct remount_opts o;
    char p[32];
    if (remount_parse(st, &o, e) < 0) /* checked already: cannot fail */
        return -1;
    snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
    if (mount("tmpfs", p, "tmpfs", remount_flags_for(fd, &o), o.data) < 0)
        return ka_fail_errno(e, errno, "storage %zu (%s): remount (%s)", idx + 1, st->mount_point, o.data);
    log_info(SUB, "remounted %s (%s)", st->mount_point, o.data);
    return 0;
}

int mounts_update_ephemeral(struct sandbox *sb, Grpc__Storage *const *storages, size_t n, ka_err *e)
{
    if (n > EPHEMERAL_MAX_STORAGES)
        return ka_fail(e, KA_INVALID_ARGUMENT, "too many storages (%zu, at most %d)", n,
                       EPHEMERAL_MAX_STORAGES);
    if (!sb->storages.base)
        return ka_fail(e, KA_FAILED_PRECONDITION, "the sandbox has no storages");
    struct eph_target *t = calloc(n ? n : 1, sizeof(*t));
    if (!t)
        return ka_fail_errno(e, ENOMEM, "storages");
    int rc = 0;
    size_t opened = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) { /* every storage is checked before the first remount */
        struct remount_opts o;
        t[i].fd = -1;
        if (ephemeral_check(sb, storages[i], &o, &t[i], e) < 0)
            rc = ka_wrap(e, "storage %zu (%s)", i + 1, storages[i]->mount_point);
        opened = i + 1;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!storages[i]->n_options) /* none: nothing to change (upstream) */
            continue;
        rc = remount_one(storages[i], i, t[i].fd, e);
        if (rc == 0 &&
            storage_set_options(&sb->storages, t[i].mp, storages[i]->options, storages[i]->n_options, e) < 0)
            log_warn(SUB, "%s: options not recorded: %s", t[i].mp, e->msg); /* the remount itself succeeded */
    }
    for (size_t i = 0; i < opened; i++) {
        if (t[i].fd >= 0)
            close(t[i].fd);
        free(t[i].mp);
    }
    free(t);
    return rc < 0 ? ka_wrap(e, "Failed to update mounts") : 0;
}

/* ======================================================================================================
 * RemoveStaleVirtiofsShareMounts
 * ====================================================================================================== */

static unsigned scans_running; /* children alive, bounded by VIRTIOFS_MAX_SCANS */

struct virtiofs_scan {
    struct loop *l;
    struct loop_child child;
    struct loop_timer timer;
    struct loop_defer defer; /* nothing to stat: finish from the loop */
    int result_fd;           /* the child writes one int32 errno per path (0 = ok) */
    char **paths;
    size_t n;
    void (*done)(void *arg, const ka_err *err);
    void *arg;
};

static void scan_finish(struct virtiofs_scan *s)
{
    void (*done)(void *arg, const ka_err *err) = s->done;
    void *arg = s->arg;
    loop_timer_stop(s->l, &s->timer);
    loop_defer_cancel(&s->defer);
    if (s->result_fd >= 0)
        close(s->result_fd);
    stats_strv_free(s->paths, s->n);
    free(s);
    if (done)
        done(arg, NULL);
}

/* Log what the child found (upstream only logs the results too). */
static void scan_log(struct virtiofs_scan *s)
{
    size_t i = 0;
    for (int32_t err; i < s->n && read(s->result_fd, &err, sizeof(err)) == (ssize_t)sizeof(err); i++) {
        if (err)
            log_info(SUB, "stat %s: %s", s->paths[i], strerror(err));
        else
            log_info(SUB, "stat %s: ok", s->paths[i]);
    }
    for (; i < s->n; i++)
        log_warn(SUB, "stat %s: no result (the scan was stopped)", s->paths[i]);
}

static void scan_exited(struct loop_child *c, int status)
{
    struct virtiofs_scan *s = container_of(c, struct virtiofs_scan, child);
    scans_running--;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        log_warn(SUB, "virtio-fs share scan ended with status 0x%x", (unsigned)status);
    scan_log(s);
    scan_finish(s);
}

static void scan_timeout(struct loop_timer *t)
{
    struct virtiofs_scan *s = container_of(t, struct virtiofs_scan, timer);
    log_warn(SUB, "virtio-fs share scan still running after %llu s: killed",
             (unsigned long long)(VIRTIOFS_TIMEOUT / NS_PER_SEC));
    kill(s->child.pid, SIGKILL); /* reaped by the loop: scan_exited */
}

static void scan_empty(struct loop_defer *d)
{
    scan_finish(container_of(d, struct virtiofs_scan, defer));
}

/* The child: stat each (the stat makes virtiofsd drop what it holds for stale inodes). It keeps only the
 * result pipe (fd 3) and stdio: no copy of the agent's sockets stays open while a stat hangs. The results
 * (4 bytes per path, at most VIRTIOFS_MAX) fit in the pipe, so the child never blocks on it. */
__attribute__((noreturn)) static void scan_child(char **paths, size_t n, int wfd)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (dup2(wfd, 3) < 0)
        _exit(126);
    close_range(4, ~0U, 0);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        int32_t err = stat(paths[i], &st) == 0 ? 0 : errno;
        if (write(3, &err, sizeof(err)) != (ssize_t)sizeof(err))
            _exit(125);
    }
    _exit(0);
}

void virtiofs_scan_detach(struct virtiofs_scan *s)
{
    if (s)
        s->done = NULL;
}

static struct virtiofs_scan *scan_new(struct loop *l, char **paths, size_t n,
                                      void (*done)(void *arg, const ka_err *err), void *arg)
{
    struct virtiofs_scan *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->l = l;
    s->done = done;
    s->arg = arg;
    s->paths = paths;
    s->n = n;
    s->result_fd = -1;
    loop_timer_init(&s->timer, scan_timeout);
    loop_defer_init(&s->defer, scan_empty);
    return s;
}

static int scan_fork(struct virtiofs_scan *s, ka_err *e)
{
    int p[2];
    if (scans_running >= VIRTIOFS_MAX_SCANS)
        return ka_fail(e, KA_RESOURCE_EXHAUSTED, "%u virtio-fs share scans are already running",
                       scans_running);
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        return ka_fail_errno(e, errno, "pipe");
    if (fcntl(p[1], F_GETPIPE_SZ) < (int)(VIRTIOFS_MAX * sizeof(int32_t)))
        fcntl(p[1], F_SETPIPE_SZ, (int)(VIRTIOFS_MAX * sizeof(int32_t)));
    pid_t pid = fork();
    if (pid == 0)
        scan_child(s->paths, s->n, p[1]);
    int err = errno;
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return ka_fail_errno(e, err, "fork");
    }
    s->result_fd = p[0];
    s->child.pid = pid;
    s->child.exited = scan_exited;
    loop_child_watch(s->l, &s->child);
    loop_timer_start(s->l, &s->timer, VIRTIOFS_TIMEOUT);
    scans_running++;
    return 0;
}

int virtiofs_scan_start(struct loop *l, const char *mountinfo, void (*done)(void *arg, const ka_err *err),
                        void *arg, struct virtiofs_scan **out, ka_err *e)
{
    cleanup_free char *text = NULL;
    if (fs_read_file(mountinfo ? mountinfo : "/proc/self/mountinfo", &text, NULL, e) < 0)
        return ka_wrap(e, "RemoveStaleVirtiofsShareMounts");
    char **paths = NULL;
    size_t n = 0;
    if (stats_mountinfo_below(text, VIRTIOFS_SHARE_PREFIX, VIRTIOFS_MAX, &paths, &n) < 0)
        return ka_fail_errno(e, ENOMEM, "mountinfo");
    struct virtiofs_scan *s = scan_new(l, paths, n, done, arg);
    if (!s) {
        stats_strv_free(paths, n);
        return ka_fail_errno(e, ENOMEM, "virtio-fs scan");
    }
    if (n == 0) {
        loop_defer(l, &s->defer);
    } else if (scan_fork(s, e) < 0) {
        s->done = NULL;
        scan_finish(s);
        return -1;
    }
    *out = s;
    return 0;
}
