/* OOM kills of a container's memory cgroup, one event per increase of oom_kill, into the sandbox OOM queue.
 */
#include "oom_watch.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "cgroup.h"
#include "container.h"
#include "oom_queue.h"
#include "stats.h"
#include "../util/cleanup.h"
#include "../util/fs.h"
#include "../util/log.h"

#define SUB "oom"
/* v1 notifies when the cgroup is out of memory, before the OOM killer picks a victim: the kill is confirmed
 * by oom_kill growing, checked again after 10, 20, 40 ... ms (about 2.5 s in all). */
#define RECHECK_FIRST_NS (10 * 1000000ULL)
#define RECHECKS         8

struct oom_watch {
    struct loop *l;
    struct oom_queue *q;
    char *cid;
    char *dir;         /* the memory cgroup directory */
    bool v2;           /* memory.events + inotify, else memory.oom_control + eventfd */
    struct loop_io io; /* the inotify fd or the eventfd; -1 once the cgroup is gone */
    int ctl_fd;        /* v1: memory.oom_control, open while the eventfd is registered */
    bool counted;      /* the kernel reports oom_kill (v2; v1 since Linux 4.13) */
    uint64_t kills;    /* oom_kill already reported */
    struct loop_timer recheck;
    unsigned rechecks;
};

/* The cgroup's oom_kill count; false if it cannot be read (the cgroup is gone) or is not reported. */
static bool read_kills(const struct oom_watch *w, uint64_t *kills)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", w->dir, w->v2 ? "memory.events" : "memory.oom_control");
    cleanup_free char *text = NULL;
    ka_err e;
    return fs_read_file(p, &text, NULL, &e) == 0 && stats_kv(text, "oom_kill", kills);
}

static void report(struct oom_watch *w)
{
    log_info(SUB, "container %s: OOM kill", w->cid);
    if (oom_queue_push(w->q, w->cid) < 0)
        log_error(SUB, "container %s: OOM event lost: out of memory", w->cid);
}

/* Report a grown oom_kill once; true if it grew. */
static bool check_kills(struct oom_watch *w)
{
    uint64_t k;
    if (!read_kills(w, &k) || k <= w->kills)
        return false;
    w->kills = k;
    report(w);
    return true;
}

static void stop_io(struct oom_watch *w)
{
    if (w->io.fd < 0)
        return;
    loop_io_del(w->l, &w->io);
    close(w->io.fd);
    w->io.fd = -1;
    if (w->ctl_fd >= 0)
        close(w->ctl_fd);
    w->ctl_fd = -1;
}

/* ---- v2: inotify IN_MODIFY on memory.events ---- */

static void on_inotify(struct loop_io *io, uint32_t revents)
{
    struct oom_watch *w = container_of(io, struct oom_watch, io);
    (void)revents;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool gone = false;
    for (int i = 0; i < 16; i++) { /* bounded: the next wake-up reads the rest */
        ssize_t n = read(io->fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_UNMOUNT))
                gone = true;
            p += sizeof(*ev) + ev->len;
        }
    }
    check_kills(w);
    if (gone) /* the cgroup was removed */
        stop_io(w);
}

static int start_v2(struct oom_watch *w, ka_err *e)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/memory.events", w->dir);
    if (access(p, F_OK) < 0)
        return ka_fail_errno(e, errno, "%s (no memory controller?)", p);
    w->io.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->io.fd < 0)
        return ka_fail_errno(e, errno, "inotify_init1");
    if (inotify_add_watch(w->io.fd, p, IN_MODIFY) < 0)
        return ka_fail_errno(e, errno, "inotify_add_watch %s", p);
    w->counted = true;
    w->io.cb = on_inotify;
    return 0;
}

/* ---- v1: eventfd registered on memory.oom_control ---- */

static void on_recheck(struct loop_timer *t)
{
    struct oom_watch *w = container_of(t, struct oom_watch, recheck);
    if (check_kills(w) || ++w->rechecks >= RECHECKS)
        return;
    loop_timer_start(w->l, &w->recheck, RECHECK_FIRST_NS << w->rechecks);
}

static void on_eventfd(struct loop_io *io, uint32_t revents)
{
    struct oom_watch *w = container_of(io, struct oom_watch, io);
    (void)revents;
    uint64_t v;
    if (read(io->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_warn(SUB, "container %s: read eventfd: %s", w->cid, strerror(errno));
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/cgroup.event_control", w->dir);
    if (access(p, F_OK) < 0) { /* the kernel signals the eventfd when the cgroup is removed */
        stop_io(w);
        return;
    }
    if (!w->counted) { /* no oom_kill counter (Linux < 4.13): every notification, as upstream */
        report(w);
        return;
    }
    if (check_kills(w))
        return;
    w->rechecks = 0;
    loop_timer_start(w->l, &w->recheck, RECHECK_FIRST_NS);
}

static int start_v1(struct oom_watch *w, ka_err *e)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/memory.oom_control", w->dir);
    w->ctl_fd = open(p, O_RDONLY | O_CLOEXEC);
    if (w->ctl_fd < 0)
        return ka_fail_errno(e, errno, "open %s", p);
    w->io.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->io.fd < 0)
        return ka_fail_errno(e, errno, "eventfd");
    char reg[64];
    snprintf(reg, sizeof(reg), "%d %d", w->io.fd, w->ctl_fd);
    snprintf(p, sizeof(p), "%s/cgroup.event_control", w->dir);
    if (fs_write_file(p, reg, (size_t)-1, e) < 0)
        return ka_wrap(e, "register for OOM notifications");
    uint64_t k;
    w->counted = read_kills(w, &k);
    w->io.cb = on_eventfd;
    return 0;
}

/* ---- start, stop ---- */

/* Watch the memory cgroup at dir for cid's OOM kills. */
static int watch_dir(struct loop *l, const char *dir, bool v2, struct oom_queue *q, const char *cid,
                     struct oom_watch **out, ka_err *e)
{
    struct oom_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return ka_fail_errno(e, ENOMEM, "OOM watch");
    w->l = l;
    w->q = q;
    w->v2 = v2;
    w->io.fd = w->ctl_fd = -1;
    w->io.events = EPOLLIN;
    loop_timer_init(&w->recheck, on_recheck);
    w->cid = strdup(cid);
    w->dir = strdup(dir);
    if (!w->cid || !w->dir) {
        oom_watch_stop(w);
        return ka_fail_errno(e, ENOMEM, "OOM watch");
    }
    if ((v2 ? start_v2(w, e) : start_v1(w, e)) < 0 || loop_io_add(l, &w->io, e) < 0) {
        if (w->io.fd >= 0) /* not in the loop */
            close(w->io.fd);
        w->io.fd = -1;
        oom_watch_stop(w);
        return -1;
    }
    /* the cgroup is new (cgroup_create refuses an existing one): kills before the start count too */
    check_kills(w);
    *out = w;
    return 0;
}

int oom_watch_start(struct container *c, struct oom_watch **out, ka_err *e)
{
    *out = NULL;
    if (!c->cg || !c->sb->oom)
        return ka_fail(e, KA_FAILED_PRECONDITION, "container %s has no cgroup", c->id);
    const char *dir = cgroup_controller_dir(c->cg, "memory");
    if (!dir) /* upstream panics here (BUG) */
        return ka_fail(e, KA_FAILED_PRECONDITION, "no memory cgroup for container %s", c->id);
    return watch_dir(c->sb->loop, dir, cgroup_env_mode(c->sb->cgenv) == CGROUP_V2, c->sb->oom, c->id, out, e);
}

void oom_watch_stop(struct oom_watch *w)
{
    if (!w)
        return;
    stop_io(w);
    if (w->ctl_fd >= 0)
        close(w->ctl_fd);
    loop_timer_stop(w->l, &w->recheck);
    free(w->cid);
    free(w->dir);
    free(w);
}
