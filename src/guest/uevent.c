/* Hot-plugged devices: the uevent listener, waits for one device (sysfs first, then uevents), PCI paths. */
#include "uevent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "../util/log.h"

#define SUB        "uevent"
#define UEVENT_BUF 8192 /* the kernel's uevent buffer is 2 KiB of variables plus the header */

struct uevent_mon {
    struct loop *loop;
    struct loop_io io;
    char *sysfs_root, *dev_root;
    struct list waiters; /* struct dev_wait */
};

struct dev_wait {
    struct list link;
    struct uevent_mon *m;
    enum dev_kind kind;
    char key[PATH_MAX];
    char path[PATH_MAX]; /* "/dev/<name>" once found */
    uint64_t timeout_ms;
    struct loop_timer timer;
    struct loop_defer found; /* completes a wait satisfied without sleeping */
    dev_wait_cb done;
    void *arg;
};

static const char *kind_name(enum dev_kind k)
{
    switch (k) {
    case DEV_VIRTIO_BLK:
        return "virtio-blk disk under";
    case DEV_SCSI:
        return "SCSI disk";
    case DEV_PMEM:
        return "pmem disk";
    }
    return "device";
}

/* ---- parsing and matching (pure) ---- */

bool uevent_parse(const char *buf, size_t len, struct uevent_msg *out)
{
    memset(out, 0, sizeof(*out));
    if (len == 0 || buf[len - 1] != '\0' || !strchr(buf, '@'))
        return false; /* libudev's own messages start "libudev"; they are not the kernel's */
    for (size_t off = strlen(buf) + 1; off < len; off += strlen(buf + off) + 1) {
        const char *kv = buf + off;
        if (strncmp(kv, "ACTION=", 7) == 0)
            out->action = kv + 7;
        else if (strncmp(kv, "DEVPATH=", 8) == 0)
            out->devpath = kv + 8;
        else if (strncmp(kv, "SUBSYSTEM=", 10) == 0)
            out->subsystem = kv + 10;
        else if (strncmp(kv, "DEVNAME=", 8) == 0)
            out->devname = kv + 8;
    }
    return out->action && out->devpath && out->subsystem;
}

/* A name under /dev: no "..", not absolute, not empty. */
static bool devname_ok(const char *n)
{
    if (!n || !*n || *n == '/' || strlen(n) >= 128)
        return false;
    for (const char *p = n; (p = strstr(p, "..")); p += 2)
        if ((p == n || p[-1] == '/') && (p[2] == '/' || p[2] == '\0'))
            return false;
    return true;
}

/* "virtio<digits>/block/" at s: the rest is the disk's name. */
static const char *after_virtio_block(const char *s)
{
    if (strncmp(s, "/virtio", 7) != 0 || s[7] < '0' || s[7] > '9')
        return NULL;
    s += 7;
    while (*s >= '0' && *s <= '9')
        s++;
    return strncmp(s, "/block/", 7) == 0 ? s + 7 : NULL;
}

/* "/<host>:0:<target>:<lun>/block/" somewhere in devpath, key being "<target>:<lun>". */
static bool scsi_path_matches(const char *devpath, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = strchr(devpath, '/'); p; p = strchr(p + 1, '/')) {
        const char *q = p + 1;
        if (*q < '0' || *q > '9')
            continue;
        while (*q >= '0' && *q <= '9')
            q++;
        if (strncmp(q, ":0:", 3) == 0 && strncmp(q + 3, key, kl) == 0 &&
            strncmp(q + 3 + kl, "/block/", 7) == 0)
            return true;
    }
    return false;
}

static bool wait_matches(const struct dev_wait *w, const struct uevent_msg *u)
{
    if (strcmp(u->action, "add") != 0 || strcmp(u->subsystem, "block") != 0 || !devname_ok(u->devname))
        return false;
    switch (w->kind) {
    case DEV_VIRTIO_BLK: {
        size_t kl = strlen(w->key);
        return strncmp(u->devpath, w->key, kl) == 0 && after_virtio_block(u->devpath + kl);
    }
    case DEV_SCSI:
        return scsi_path_matches(u->devpath, w->key);
    case DEV_PMEM: {
        size_t dl = strlen(u->devpath), kl = strlen(w->key);
        return strncmp(u->devpath, "/devices/LNXSYSTM", 17) == 0 && dl > kl + 7 &&
               strcmp(u->devpath + dl - kl, w->key) == 0 &&
               strncmp(u->devpath + dl - kl - 7, "/block/", 7) == 0;
    }
    }
    return false;
}

/* ---- sysfs: is the device already there? ---- */

/* The only entry of a directory (a disk's "block" directory holds its one name). */
static bool only_entry(const char *dir, char *name, size_t n)
{
    cleanup_closedir DIR *d = opendir(dir);
    struct dirent *de;
    bool found = false;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (found || (size_t)snprintf(name, n, "%s", de->d_name) >= n)
            return false; /* two entries, or a name too long to be what we look for */
        found = true;
    }
    return found;
}

/* The disk's kernel name if sysfs already shows it. */
static bool sysfs_lookup(const struct uevent_mon *m, const struct dev_wait *w, char *name, size_t n)
{
    char dir[PATH_MAX + 64];
    struct dirent *de;
    switch (w->kind) {
    case DEV_VIRTIO_BLK: {
        snprintf(dir, sizeof(dir), "%s%s", m->sysfs_root, w->key);
        cleanup_closedir DIR *d = opendir(dir);
        while (d && (de = readdir(d))) {
            char sub[PATH_MAX + 400];
            if (strncmp(de->d_name, "virtio", 6) != 0)
                continue;
            snprintf(sub, sizeof(sub), "%s/%s/block", dir, de->d_name);
            if (only_entry(sub, name, n))
                return true;
        }
        return false;
    }
    case DEV_SCSI: {
        snprintf(dir, sizeof(dir), "%s/bus/scsi/devices", m->sysfs_root);
        cleanup_closedir DIR *d = opendir(dir);
        while (d && (de = readdir(d))) {
            char sub[PATH_MAX + 400], probe[300];
            snprintf(probe, sizeof(probe), "/%s/block/", de->d_name);
            if (!scsi_path_matches(probe, w->key))
                continue;
            snprintf(sub, sizeof(sub), "%s/%s/block", dir, de->d_name);
            if (only_entry(sub, name, n))
                return true;
        }
        return false;
    }
    case DEV_PMEM: {
        struct stat st;
        snprintf(dir, sizeof(dir), "%s/block/%s", m->sysfs_root, w->key);
        if (lstat(dir, &st) < 0)
            return false;
        return (size_t)snprintf(name, n, "%s", w->key) < n;
    }
    }
    return false;
}

/* The /dev node of a disk, if devtmpfs has made it (it does before the kernel sends the uevent). */
static bool dev_node(const struct uevent_mon *m, const char *name, char *path, size_t n)
{
    struct stat st;
    if (!devname_ok(name) || (size_t)snprintf(path, n, "%s/%s", m->dev_root, name) >= n)
        return false;
    return stat(path, &st) == 0 && S_ISBLK(st.st_mode);
}

/* ---- waits ---- */

static void wait_free(struct dev_wait *w)
{
    loop_timer_stop(w->m->loop, &w->timer);
    loop_defer_cancel(&w->found);
    list_del(&w->link);
    free(w);
}

static void wait_finish(struct dev_wait *w, const ka_err *err)
{
    dev_wait_cb done = w->done;
    void *arg = w->arg;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s", w->path);
    wait_free(w);
    done(arg, err ? NULL : path, err);
}

static void on_found(struct loop_defer *d)
{
    wait_finish(container_of(d, struct dev_wait, found), NULL);
}

static void on_timeout(struct loop_timer *t)
{
    struct dev_wait *w = container_of(t, struct dev_wait, timer);
    ka_err e;
    if (loop_defer_pending(&w->found))
        return; /* found in the same round: the disk wins */
    ka_fail(&e, KA_INTERNAL, "timeout after %llu ms waiting for the %s %s", (unsigned long long)w->timeout_ms,
            kind_name(w->kind), w->key);
    wait_finish(w, &e);
}

/* Offer one event to the waiters; a matching one completes (others may match the same disk too). */
static void offer(struct uevent_mon *m, const struct uevent_msg *u)
{
    struct list *pos, *next;
    for (pos = m->waiters.next; pos != &m->waiters; pos = next) {
        next = pos->next; /* nothing is freed here (completion is deferred), but stay safe */
        struct dev_wait *w = container_of(pos, struct dev_wait, link);
        if (loop_defer_pending(&w->found) || !wait_matches(w, u))
            continue;
        snprintf(w->path, sizeof(w->path), "%s/%s", m->dev_root, u->devname);
        log_info(SUB, "%s %s is %s", kind_name(w->kind), w->key, w->path);
        loop_defer(m->loop, &w->found);
    }
}

/* After lost events (a full socket buffer), look at sysfs again for everyone still waiting. */
static void recheck_all(struct uevent_mon *m)
{
    list_for_each (pos, &m->waiters) {
        struct dev_wait *w = container_of(pos, struct dev_wait, link);
        char name[256];
        if (!loop_defer_pending(&w->found) && sysfs_lookup(m, w, name, sizeof(name)) &&
            dev_node(m, name, w->path, sizeof(w->path)))
            loop_defer(m->loop, &w->found);
    }
}

static void on_uevent(struct loop_io *io, uint32_t revents)
{
    struct uevent_mon *m = container_of(io, struct uevent_mon, io);
    char buf[UEVENT_BUF];
    (void)revents;
    for (int i = 0; i < 64; i++) { /* a bounded batch per wake-up */
        struct sockaddr_nl from = {0};
        struct iovec iov = {buf, sizeof(buf) - 1};
        struct msghdr msg = {
            .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &iov, .msg_iovlen = 1};
        ssize_t r = recvmsg(io->fd, &msg, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == ENOBUFS) {
                log_warn(SUB, "uevents were lost (receive buffer full); rechecking sysfs");
                recheck_all(m);
                continue;
            }
            if (errno != EAGAIN && errno != EINTR)
                log_warn(SUB, "uevent socket: %s", strerror(errno));
            return;
        }
        /* only the kernel: a process with CAP_NET_ADMIN in the VM's network namespace (a container's) could
         * otherwise announce a disk of its choosing */
        if (from.nl_pid != 0 || (msg.msg_flags & MSG_TRUNC))
            continue;
        buf[r] = '\0';
        struct uevent_msg u;
        if (uevent_parse(buf, (size_t)r + 1, &u) && !list_empty(&m->waiters))
            offer(m, &u);
    }
}

struct uevent_mon *uevent_mon_new(struct loop *l, const char *sysfs_root, const char *dev_root, ka_err *e)
{
    struct uevent_mon *m = calloc(1, sizeof(*m));
    if (m)
        m->io.fd = -1;
    if (!m || !(m->sysfs_root = strdup(sysfs_root)) || !(m->dev_root = strdup(dev_root))) {
        uevent_mon_free(m);
        ka_fail_errno(e, ENOMEM, "uevent monitor");
        return NULL;
    }
    m->loop = l;
    list_init(&m->waiters);
    m->io.fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = 1};
    int rcvbuf = 1 << 20;
    if (m->io.fd < 0 || bind(m->io.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        ka_fail_errno(e, errno, "uevent socket");
        uevent_mon_free(m);
        return NULL;
    }
    setsockopt(m->io.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
               sizeof(rcvbuf)); /* capped by rmem_max: best effort */
    m->io.events = EPOLLIN;
    m->io.cb = on_uevent;
    if (loop_io_add(l, &m->io, e) < 0) {
        uevent_mon_free(m);
        return NULL;
    }
    return m;
}

void uevent_mon_free(struct uevent_mon *m)
{
    if (!m)
        return;
    while (!list_empty(&m->waiters))
        wait_free(container_of(m->waiters.next, struct dev_wait, link));
    if (m->io.fd >= 0) {
        loop_io_del(m->loop, &m->io);
        close(m->io.fd);
    }
    free(m->sysfs_root);
    free(m->dev_root);
    free(m);
}

struct dev_wait *dev_wait_start(struct uevent_mon *m, enum dev_kind kind, const char *key,
                                uint64_t timeout_ms, dev_wait_cb done, void *arg, ka_err *e)
{
    if (!m) {
        ka_fail(e, KA_UNAVAILABLE, "device hot-plug is not available (no uevent listener)");
        return NULL;
    }
    struct dev_wait *w = calloc(1, sizeof(*w));
    if (!w) {
        ka_fail_errno(e, ENOMEM, "device wait");
        return NULL;
    }
    if ((size_t)snprintf(w->key, sizeof(w->key), "%s", key) >= sizeof(w->key)) {
        free(w);
        ka_fail(e, KA_INVALID_ARGUMENT, "device address is too long");
        return NULL;
    }
    w->m = m;
    w->kind = kind;
    w->timeout_ms = timeout_ms;
    w->done = done;
    w->arg = arg;
    loop_timer_init(&w->timer, on_timeout);
    loop_defer_init(&w->found, on_found);
    list_add_tail(&m->waiters, &w->link);
    char name[256];
    if (sysfs_lookup(m, w, name, sizeof(name)) && dev_node(m, name, w->path, sizeof(w->path))) {
        loop_defer(m->loop, &w->found);
        return w;
    }
    log_info(SUB, "waiting up to %llu ms for the %s %s", (unsigned long long)timeout_ms, kind_name(kind),
             key);
    loop_timer_start(m->loop, &w->timer, timeout_ms * 1000000ull);
    return w;
}

void dev_wait_cancel(struct dev_wait *w)
{
    if (w)
        wait_free(w);
}

/* ---- PCI paths ---- */

/* One "SS[.F]" hop in hex. */
static int parse_hop(const char *s, size_t len, unsigned *slot, unsigned *fn)
{
    char tok[8];
    char *end;
    if (len == 0 || len >= sizeof(tok))
        return -1;
    memcpy(tok, s, len);
    tok[len] = '\0';
    for (const char *c = tok; *c; c++) /* hex digits and one '.', no sign, space or 0x */
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') || (*c >= 'A' && *c <= 'F') || *c == '.'))
            return -1;
    unsigned long v = strtoul(tok, &end, 16);
    *fn = 0;
    if (*end == '.') {
        char *end2;
        if (end[1] < '0' || end[1] > '7')
            return -1;
        *fn = (unsigned)strtoul(end + 1, &end2, 16);
        end = end2;
    }
    if (*end || v > 0x1f || *fn > 7)
        return -1;
    *slot = (unsigned)v;
    return 0;
}

int pci_path_to_sysfs(const char *sysfs_root, const char *pci_path, char *out, size_t outlen, ka_err *e)
{
    static const char root[] = "/devices/pci0000:00"; /* x86_64, s390x, ppc64 */
    char bus[32] = "0000:00";
    size_t len = (size_t)snprintf(out, outlen, "%s", root);
    const char *p = pci_path;
    int hops = 1;
    for (const char *q = p; *q; q++)
        hops += *q == '/';
    if (!*p || hops > 16)
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid PCI path \"%.64s\" (1 to 16 hops)", pci_path);
    for (int hop = 0;; hop++) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        unsigned slot, fn;
        if (parse_hop(p, n, &slot, &fn) < 0)
            return ka_fail(e, KA_INVALID_ARGUMENT, "invalid PCI path \"%.64s\"", pci_path);
        if (hop > 0) { /* the bridge of the previous hop has exactly one secondary bus */
            char dir[PATH_MAX + 64];
            snprintf(dir, sizeof(dir), "%s%s/pci_bus", sysfs_root, out);
            if (!only_entry(dir, bus, sizeof(bus)))
                return ka_fail(e, KA_NOT_FOUND, "PCI path %.64s: %s is not a bridge with one bus", pci_path,
                               out);
        }
        len += (size_t)snprintf(out + len, outlen > len ? outlen - len : 0, "/%s:%02x.%x", bus, slot, fn);
        if (len >= outlen)
            return ka_fail(e, KA_INVALID_ARGUMENT, "PCI path \"%.64s\" is too long", pci_path);
        if (!slash)
            return 0;
        p = slash + 1;
    }
}
