/* Guest control through sysfs and syscalls: CPU/memory onlining, cpuset widening, probe, RNG, clock. */
#include "sysctl_guest.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <unistd.h>

#include "../runtime/cgroup.h"
#include "../runtime/container.h"
#include "../runtime/sandbox.h"
#include "../util/cleanup.h"
#include "../util/fs.h"
#include "../util/log.h"

#define SUB             "guest"
#define ONLINE_WRITES   8   /* online writes per loop pass (bringing a CPU up takes milliseconds) */
#define ONLINE_READS    512 /* online files read per loop pass */
#define PROBE_BATCH     16  /* probe writes per loop pass */
#define MAX_DIR_ENTRIES (1u << 20)

/* ======================================================================================================
 * Directory listings: the N of every <prefix>N entry, sorted
 * ====================================================================================================== */

struct idlist {
    unsigned long *v;
    size_t n, cap;
};

static int cmp_ul(const void *a, const void *b)
{
    unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
    return x < y ? -1 : x > y;
}

/* name is <prefix> followed by decimal digits only. */
static bool parse_entry(const char *name, const char *prefix, unsigned long *id)
{
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0 || !isdigit((unsigned char)name[pl]))
        return false;
    char *end;
    errno = 0;
    *id = strtoul(name + pl, &end, 10);
    return !errno && !*end;
}

static int list_ids(const char *dir, const char *prefix, struct idlist *out, ka_err *e)
{
    DIR *d = opendir(dir);
    if (!d)
        return ka_fail_errno(e, errno, "read dir %s", dir);
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        unsigned long id;
        if (!parse_entry(de->d_name, prefix, &id))
            continue;
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 64;
            unsigned long *v = cap <= MAX_DIR_ENTRIES ? realloc(out->v, cap * sizeof(*v)) : NULL;
            if (!v) {
                rc = ka_fail(e, KA_RESOURCE_EXHAUSTED, "%s: too many entries", dir);
                break;
            }
            out->v = v;
            out->cap = cap;
        }
        out->v[out->n++] = id;
    }
    closedir(d);
    if (rc == 0 && out->n)
        qsort(out->v, out->n, sizeof(*out->v), cmp_ul);
    return rc;
}

static void idlist_free(struct idlist *l)
{
    free(l->v);
    *l = (struct idlist){0};
}

/* ======================================================================================================
 * OnlineCPUMem
 * ====================================================================================================== */

enum phase { PH_CPU, PH_MEM, PH_DONE };

struct guest_online {
    struct loop *l;
    char *sysfs;
    struct sandbox *sb;
    uint32_t want, onlined;
    bool cpu_only;
    int round;
    enum phase phase;
    struct idlist ids; /* the current listing; pos = next entry */
    bool listed;
    size_t pos;
    struct loop_defer defer;
    struct loop_timer timer;
    guest_done_cb done;
    void *arg;
};

static void online_free(struct guest_online *o)
{
    loop_defer_cancel(&o->defer);
    loop_timer_stop(o->l, &o->timer);
    idlist_free(&o->ids);
    free(o->sysfs);
    free(o);
}

static void online_finish(struct guest_online *o, const ka_err *err)
{
    guest_done_cb done = o->done;
    void *arg = o->arg;
    ka_err copy;
    if (err)
        copy = *err;
    online_free(o);
    done(arg, err ? &copy : NULL);
}

/* <sysfs>/devices/system/<kind> ("cpu", "memory"). */
static void kind_dir(const struct guest_online *o, const char *kind, char *buf, size_t n)
{
    snprintf(buf, n, "%s/devices/system/%s", o->sysfs, kind);
}

/* 1 = onlined, 0 = already online or unreadable/unwritable (skipped, as upstream). */
static int online_one(const char *dir, const char *kind, unsigned long id)
{
    char path[512];
    cleanup_free char *cur = NULL;
    ka_err e;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s%lu/online", dir, kind, id) >= sizeof(path))
        return 0;
    if (fs_read_file(path, &cur, NULL, &e) < 0)
        return 0; /* cpu0 often has no online file */
    const char *s = cur;
    while (isspace((unsigned char)*s))
        s++;
    if (*s != '0')
        return 0;
    if (fs_write_file(path, "1", 1, &e) < 0) {
        log_debug(SUB, "online %s%lu: %s", kind, id, e.msg);
        return 0;
    }
    log_info(SUB, "onlined %s%lu", kind, id);
    return 1;
}

/* Walk the listing of this phase a bounded amount. Returns true when the listing is finished (or, for
 * CPUs, enough were onlined), false when the pass is over with entries left. */
static bool online_walk(struct guest_online *o, const char *kind, bool *stop_early, ka_err *e, int *rc)
{
    char dir[512];
    kind_dir(o, kind, dir, sizeof(dir));
    *rc = 0;
    if (!o->listed) {
        if (list_ids(dir, kind, &o->ids, e) < 0) {
            *rc = -1;
            return true;
        }
        o->listed = true;
        o->pos = 0;
    }
    int writes = 0, reads = 0;
    while (o->pos < o->ids.n) {
        if (writes >= ONLINE_WRITES || reads >= ONLINE_READS)
            return false;
        reads++;
        if (online_one(dir, kind, o->ids.v[o->pos++])) {
            writes++;
            if (o->phase == PH_CPU && ++o->onlined == o->want) {
                *stop_early = true;
                return true;
            }
        }
    }
    return true;
}

static void listing_done(struct guest_online *o)
{
    idlist_free(&o->ids);
    o->listed = false;
    o->pos = 0;
}

static int widen(struct guest_online *o, ka_err *e)
{
    cleanup_free char *cpus = NULL;
    if (!o->want || !o->sb)
        return 0;
    if (guest_online_cpus(o->sysfs, &cpus, e) < 0)
        return -1;
    return guest_cpuset_widen(o->sb, cpus, e);
}

/* One pass: some work, then either the next pass (defer), the next round (timer) or the end. */
static void online_step(struct guest_online *o)
{
    ka_err e;
    int rc;
    for (;;) {
        if (o->phase == PH_CPU) {
            bool enough = false;
            if (!online_walk(o, "cpu", &enough, &e, &rc)) {
                loop_defer(o->l, &o->defer);
                return;
            }
            listing_done(o);
            if (rc < 0) {
                online_finish(o, &e);
                return;
            }
            if (o->onlined < o->want) {
                if (++o->round >= GUEST_ONLINE_RETRIES) {
                    ka_fail(&e, KA_INTERNAL,
                            "failed to online %" PRIu32 " CPU(s) after %d retries (%" PRIu32 " onlined)",
                            o->want, GUEST_ONLINE_RETRIES, o->onlined);
                    online_finish(o, &e);
                    return;
                }
                loop_timer_start(o->l, &o->timer, (uint64_t)GUEST_ONLINE_WAIT_MS * 1000000u);
                return;
            }
            log_info(SUB, "onlined %" PRIu32 " CPU(s) after %d retries", o->want, o->round);
            o->phase = PH_MEM;
        } else if (o->phase == PH_MEM) {
            bool unused = false;
            if (o->cpu_only) {
                o->phase = PH_DONE;
                continue;
            }
            if (!online_walk(o, "memory", &unused, &e, &rc)) {
                loop_defer(o->l, &o->defer);
                return;
            }
            listing_done(o);
            if (rc < 0) {
                online_finish(o, &e);
                return;
            }
            o->phase = PH_DONE;
        } else {
            online_finish(o, widen(o, &e) < 0 ? &e : NULL);
            return;
        }
    }
}

static void on_online_defer(struct loop_defer *d)
{
    online_step(container_of(d, struct guest_online, defer));
}

static void on_online_timer(struct loop_timer *t)
{
    online_step(container_of(t, struct guest_online, timer));
}

struct guest_online *guest_online_async(struct loop *l, const char *sysfs, struct sandbox *sb,
                                        uint32_t nb_cpus, bool cpu_only, guest_done_cb done, void *arg,
                                        ka_err *e)
{
    struct guest_online *o = calloc(1, sizeof(*o));
    if (!o || !(o->sysfs = strdup(sysfs))) {
        free(o);
        ka_fail_errno(e, ENOMEM, "OnlineCPUMem");
        return NULL;
    }
    o->l = l;
    o->sb = sb;
    o->want = nb_cpus;
    o->cpu_only = cpu_only;
    o->phase = nb_cpus ? PH_CPU : PH_MEM;
    o->done = done;
    o->arg = arg;
    loop_defer_init(&o->defer, on_online_defer);
    loop_timer_init(&o->timer, on_online_timer);
    loop_defer(l, &o->defer);
    return o;
}

void guest_online_cancel(struct guest_online *o)
{
    if (o)
        online_free(o);
}

/* ======================================================================================================
 * cpusets
 * ====================================================================================================== */

int guest_online_cpus(const char *sysfs, char **out, ka_err *e)
{
    char path[512];
    char *s = NULL;
    snprintf(path, sizeof(path), "%s/devices/system/cpu/online", sysfs);
    if (fs_read_file(path, &s, NULL, e) < 0)
        return -1;
    char *b = s, *end;
    while (isspace((unsigned char)*b))
        b++;
    end = b + strlen(b);
    while (end > b && isspace((unsigned char)end[-1]))
        *--end = '\0';
    for (const char *p = b; *p; p++) {
        if (!isdigit((unsigned char)*p) && *p != ',' && *p != '-') {
            ka_fail(e, KA_INTERNAL, "%s: unexpected content '%s'", path, b);
            free(s);
            return -1;
        }
    }
    if (!*b) {
        free(s);
        return ka_fail(e, KA_INTERNAL, "%s is empty", path);
    }
    memmove(s, b, strlen(b) + 1);
    *out = s;
    return 0;
}

/* An ancestor's cpuset.cpus is rewritten only when set (v2: empty means "the parent's"). */
static int widen_ancestor(const char *dir, const char *cpus, ka_err *e)
{
    char path[4096];
    cleanup_free char *cur = NULL;
    if ((size_t)snprintf(path, sizeof(path), "%s/cpuset.cpus", dir) >= sizeof(path))
        return ka_fail(e, KA_INTERNAL, "cgroup path too long: %s", dir);
    if (fs_read_file(path, &cur, NULL, e) < 0)
        return e->errnum == ENOENT ? 0 : -1;
    char *p = cur;
    while (isspace((unsigned char)*p))
        p++;
    if (!*p)
        return 0;
    return fs_write_file(path, cpus, (size_t)-1, e);
}

static int widen_container(struct container *c, const char *cpus, ka_err *e)
{
    const char *dir = cgroup_controller_dir(c->cg, "cpuset");
    const char *path = cgroup_get_path(c->cg);
    if (!dir || !path)
        return 0; /* no cpuset hierarchy */
    size_t dl = strlen(dir), pl = strlen(path);
    if (pl < dl && strcmp(dir + dl - pl, path) == 0) {
        char anc[4096];
        for (size_t i = 1; i < pl; i++) {
            if (path[i] != '/' || dl - pl + i >= sizeof(anc))
                continue;
            memcpy(anc, dir, dl - pl + i);
            anc[dl - pl + i] = '\0';
            if (widen_ancestor(anc, cpus, e) < 0)
                return ka_wrap(e, "container %s: cpuset of %s", c->id, anc);
        }
    }
    const Grpc__Linux *lx = c->spec ? c->spec->linux : NULL;
    const char *own = lx && lx->resources && lx->resources->cpu ? lx->resources->cpu->cpus : NULL;
    Grpc__LinuxCPU cpu = GRPC__LINUX_CPU__INIT;
    Grpc__LinuxResources res = GRPC__LINUX_RESOURCES__INIT;
    cpu.cpus = (char *)(own && *own ? own : cpus);
    res.cpu = &cpu;
    if (cgroup_apply(c->cg, &res, true, e) < 0)
        return ka_wrap(e, "container %s", c->id);
    log_info(SUB, "container %s: cpuset %s", c->id, cpu.cpus);
    return 0;
}

int guest_cpuset_widen(struct sandbox *sb, const char *cpus, ka_err *e)
{
    int rc = 0;
    list_for_each (pos, &sb->containers) {
        struct container *c = container_of(pos, struct container, link);
        ka_err one;
        if (!c->cg || widen_container(c, cpus, &one) == 0)
            continue;
        log_warn(SUB, "%s", one.msg);
        if (rc == 0)
            *e = one;
        rc = -1;
    }
    return rc;
}

/* ======================================================================================================
 * MemHotplugByProbe
 * ====================================================================================================== */

struct guest_probe {
    struct loop *l;
    char *path;
    uint64_t *addrs;
    size_t n, pos;
    struct loop_defer defer;
    guest_done_cb done;
    void *arg;
};

void guest_probe_format(uint64_t addr, char *buf, size_t n)
{
    snprintf(buf, n, "0x%" PRIX64, addr);
}

static void probe_free(struct guest_probe *p)
{
    loop_defer_cancel(&p->defer);
    free(p->path);
    free(p->addrs);
    free(p);
}

static void probe_finish(struct guest_probe *p, const ka_err *err)
{
    guest_done_cb done = p->done;
    void *arg = p->arg;
    ka_err copy;
    if (err)
        copy = *err;
    probe_free(p);
    done(arg, err ? &copy : NULL);
}

static void on_probe_defer(struct loop_defer *d)
{
    struct guest_probe *p = container_of(d, struct guest_probe, defer);
    for (int i = 0; i < PROBE_BATCH && p->pos < p->n; i++, p->pos++) {
        char addr[24];
        ka_err e;
        guest_probe_format(p->addrs[p->pos], addr, sizeof(addr));
        if (fs_write_file(p->path, addr, (size_t)-1, &e) < 0) {
            ka_wrap(&e, "memory hot-add by probe of %s (address %zu of %zu)", addr, p->pos + 1, p->n);
            probe_finish(p, &e);
            return;
        }
        log_info(SUB, "memory hot-add by probe: %s", addr);
    }
    if (p->pos < p->n)
        loop_defer(p->l, &p->defer);
    else
        probe_finish(p, NULL);
}

struct guest_probe *guest_probe_async(struct loop *l, const char *sysfs, const uint64_t *addrs, size_t n,
                                      guest_done_cb done, void *arg, ka_err *e)
{
    if (n > GUEST_PROBE_MAX) {
        ka_fail(e, KA_INVALID_ARGUMENT, "too many memory probe addresses: %zu (at most %d)", n,
                GUEST_PROBE_MAX);
        return NULL;
    }
    struct guest_probe *p = calloc(1, sizeof(*p));
    if (!p || asprintf(&p->path, "%s/devices/system/memory/probe", sysfs) < 0 ||
        (n && !(p->addrs = malloc(n * sizeof(*addrs))))) {
        if (p)
            free(p->path);
        free(p);
        ka_fail_errno(e, ENOMEM, "MemHotplugByProbe");
        return NULL;
    }
    if (n)
        memcpy(p->addrs, addrs, n * sizeof(*addrs));
    p->l = l;
    p->n = n;
    p->done = done;
    p->arg = arg;
    loop_defer_init(&p->defer, on_probe_defer);
    loop_defer(l, &p->defer);
    return p;
}

void guest_probe_cancel(struct guest_probe *p)
{
    if (p)
        probe_free(p);
}

/* ======================================================================================================
 * ReseedRandomDev, SetGuestDateTime
 * ====================================================================================================== */

int guest_reseed_random(const char *dev, const uint8_t *data, size_t len, ka_err *e)
{
    if (!len)
        return ka_fail(e, KA_INVALID_ARGUMENT, "missing entropy data");
    if (len > GUEST_ENTROPY_MAX)
        return ka_fail(e, KA_INVALID_ARGUMENT, "entropy data of %zu bytes exceeds %u", len,
                       GUEST_ENTROPY_MAX);
    cleanup_close int fd = open(dev, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return ka_fail_errno(e, errno, "open %s", dev);
    cleanup_free struct rand_pool_info *info = malloc(sizeof(*info) + len + sizeof(info->buf[0]));
    if (!info)
        return ka_fail_errno(e, ENOMEM, "entropy data");
    /* As upstream, the byte count is credited as bits: the host's data is mixed in but credited low. */
    info->entropy_count = (int)len;
    info->buf_size = (int)len;
    memcpy(info->buf, data, len);
    if (ioctl(fd, RNDADDENTROPY, info) < 0)
        return ka_fail_errno(e, errno, "ioctl RNDADDENTROPY on %s", dev);
    if (ioctl(fd, RNDRESEEDCRNG) < 0)
        return ka_fail_errno(e, errno, "ioctl RNDRESEEDCRNG on %s", dev);
    log_info(SUB, "random device reseeded with %zu bytes", len);
    return 0;
}

int guest_set_time_check(int64_t sec, int64_t usec, ka_err *e)
{
    /* An all-default request is a missing time, not 1970 (upstream would set the epoch). */
    if (sec == 0 && usec == 0)
        return ka_fail(e, KA_INVALID_ARGUMENT, "missing time: sec and usec are both 0");
    if (usec < 0 || usec > 999999)
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid usec %" PRId64 ": must be in [0, 999999]", usec);
    if (sec < 0 || sec >= GUEST_TIME_SEC_MAX)
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid sec %" PRId64 ": must be in [0, %lld)", sec,
                       GUEST_TIME_SEC_MAX);
    return 0;
}

int guest_set_time(int64_t sec, int64_t usec, ka_err *e)
{
    if (guest_set_time_check(sec, usec, e) < 0)
        return -1;
    struct timeval tv = {.tv_sec = (time_t)sec, .tv_usec = (suseconds_t)usec};
    if (settimeofday(&tv, NULL) < 0)
        return ka_fail_errno(e, errno, "settimeofday(%" PRId64 ".%06" PRId64 ")", sec, usec);
    log_info(SUB, "guest clock set to %" PRId64 ".%06" PRId64, sec, usec);
    return 0;
}
