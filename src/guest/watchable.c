/* watchable-bind: the bounded copy engine (scan the source, prune the destination, copy what differs) and
 * the 2 s timer that keeps every watched storage in sync. See watchable.h. */
#include "watchable.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "../util/log.h"

#define SUB            "watchable"
#define MAX_SCAN       (2 * WATCHABLE_MAX_ENTRIES + 1) /* files/symlinks, directories, the root */
#define TMP_NAME       ".kata-watchable.tmp"
#define REMOVE_MAX     4096 /* entries removed from the destination per sync (the container may write there) */
#define REMOVE_DEPTH   32
#define DIR_FLAGS      (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#define SRC_FILE_FLAGS (O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)

struct entry {
    char *rel; /* "" for the root, else "a/b" */
    struct stat st;
    char *link; /* symlink target */
};

struct scan {
    struct entry e[MAX_SCAN];
    size_t n, files, dirs;
    uint64_t bytes;
    bool too_big;
};

struct sync {
    const char *source;
    struct scan sc;
    int src_root, dst_root; /* directories (root is a directory) */
    uint64_t copied;        /* bytes written this sync */
    unsigned removed;
};

/* A DIR reading directory fd through a duplicate (fd stays the caller's); NULL with errno set. */
static DIR *dir_of(int fd)
{
    int d = dup(fd);
    DIR *dir = d >= 0 ? fdopendir(d) : NULL;
    if (!dir && d >= 0) {
        int err = errno;
        close(d);
        errno = err;
    }
    return dir;
}

static void scan_free(struct scan *sc)
{
    for (size_t i = 0; i < sc->n; i++) {
        free(sc->e[i].rel);
        free(sc->e[i].link);
    }
    sc->n = 0;
}

static char *join(const char *rel, const char *name)
{
    char *out;
    if (asprintf(&out, "%s%s%s", rel, *rel ? "/" : "", name) < 0)
        return NULL;
    return out;
}

/* ---- scanning the source ---- */

static int scan_add(struct scan *sc, int dfd, const char *rel, const char *name, const struct stat *st,
                    ka_err *e)
{
    struct entry *en = &sc->e[sc->n];
    memset(en, 0, sizeof(*en));
    en->st = *st;
    if (!(en->rel = join(rel, name)))
        return ka_fail_errno(e, ENOMEM, "watchable scan");
    sc->n++;
    if (S_ISLNK(st->st_mode)) {
        char buf[PATH_MAX];
        ssize_t len = readlinkat(dfd, name, buf, sizeof(buf) - 1);
        if (len < 0)
            return ka_fail_errno(e, errno, "readlink %s", en->rel);
        buf[len] = '\0';
        if (!(en->link = strdup(buf)))
            return ka_fail_errno(e, ENOMEM, "watchable scan");
    }
    return 0;
}

static int scan_dir(struct scan *sc, int dfd, const char *rel, ka_err *e);

/* One name of directory dfd: counted, recorded, and a directory scanned in turn. */
static int scan_one(struct scan *sc, int dfd, const char *rel, const char *name, ka_err *e)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : ka_fail_errno(e, errno, "stat %s%s%s", rel, *rel ? "/" : "", name);
    if (S_ISDIR(st.st_mode))
        sc->dirs++;
    else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode))
        sc->files++;
    else
        return 0; /* devices, fifos, sockets: not copied */
    if (S_ISREG(st.st_mode))
        sc->bytes += (uint64_t)st.st_size;
    if (sc->files > WATCHABLE_MAX_ENTRIES || sc->dirs > WATCHABLE_MAX_ENTRIES ||
        sc->bytes > WATCHABLE_MAX_BYTES) {
        sc->too_big = true;
        return 0;
    }
    if (scan_add(sc, dfd, rel, name, &st, e) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode))
        return 0;
    cleanup_close int sub = openat(dfd, name, DIR_FLAGS);
    if (sub < 0)
        return ka_fail_errno(e, errno, "open %s", sc->e[sc->n - 1].rel);
    return scan_dir(sc, sub, sc->e[sc->n - 1].rel, e);
}

static int scan_dir(struct scan *sc, int dfd, const char *rel, ka_err *e)
{
    cleanup_closedir DIR *dir = dir_of(dfd);
    if (!dir)
        return ka_fail_errno(e, errno, "read directory %s", *rel ? rel : ".");
    struct dirent *de;
    errno = 0;
    while (!sc->too_big && (de = readdir(dir))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (scan_one(sc, dfd, rel, de->d_name, e) < 0)
            return -1;
        errno = 0;
    }
    if (!sc->too_big && errno)
        return ka_fail_errno(e, errno, "read directory %s", *rel ? rel : ".");
    return 0;
}

static const struct entry *scan_find(const struct scan *sc, const char *rel)
{
    for (size_t i = 0; i < sc->n; i++)
        if (strcmp(sc->e[i].rel, rel) == 0)
            return &sc->e[i];
    return NULL;
}

/* ---- removing from the destination ---- */

static int remove_at(struct sync *y, int dfd, const char *name, const struct stat *st, dev_t dev, int depth,
                     ka_err *e);

/* Everything inside directory fd (on device dev). */
static int remove_contents(struct sync *y, int fd, dev_t dev, int depth, ka_err *e)
{
    cleanup_closedir DIR *dir = dir_of(fd);
    if (!dir)
        return ka_fail_errno(e, errno, "read directory");
    struct dirent *de;
    struct stat st;
    while ((de = readdir(dir))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;
            return ka_fail_errno(e, errno, "stat %s", de->d_name);
        }
        if (remove_at(y, fd, de->d_name, &st, dev, depth + 1, e) < 0)
            return -1;
    }
    return 0;
}

/* Remove name (whose lstat is st) from dfd; a directory with its contents, never on another device. */
static int remove_at(struct sync *y, int dfd, const char *name, const struct stat *st, dev_t dev, int depth,
                     ka_err *e)
{
    if (++y->removed > REMOVE_MAX)
        return ka_fail(e, KA_RESOURCE_EXHAUSTED, "more than %d entries to remove", REMOVE_MAX);
    if (!S_ISDIR(st->st_mode)) {
        if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
            return ka_fail_errno(e, errno, "remove %s", name);
        return 0;
    }
    if (st->st_dev != dev)
        return ka_fail(e, KA_FAILED_PRECONDITION, "%s is a mount point (not removed)", name);
    if (depth > REMOVE_DEPTH)
        return ka_fail(e, KA_RESOURCE_EXHAUSTED, "%s: directories nested too deep to remove", name);
    cleanup_close int fd = openat(dfd, name, DIR_FLAGS);
    if (fd < 0)
        return errno == ENOENT ? 0 : ka_fail_errno(e, errno, "open %s", name);
    if (remove_contents(y, fd, dev, depth, e) < 0)
        return ka_wrap(e, "%s", name);
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return ka_fail_errno(e, errno, "remove %s", name);
    return 0;
}

/* Remove what the source does not have (or has as another type) from directory fd, which is rel. */
static int prune_dir(struct sync *y, int fd, const char *rel, dev_t dev, ka_err *e)
{
    cleanup_closedir DIR *dir = dir_of(fd);
    if (!dir)
        return ka_fail_errno(e, errno, "read directory %s", *rel ? rel : ".");
    struct dirent *de;
    struct stat st;
    while ((de = readdir(dir))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        cleanup_free char *sub = join(rel, de->d_name);
        if (!sub)
            return ka_fail_errno(e, ENOMEM, "watchable prune");
        if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;
            return ka_fail_errno(e, errno, "stat %s", sub);
        }
        const struct entry *en = scan_find(&y->sc, sub);
        if (!en || (en->st.st_mode & S_IFMT) != (st.st_mode & S_IFMT)) {
            if (remove_at(y, fd, de->d_name, &st, dev, 0, e) < 0)
                return ka_wrap(e, "remove %s", sub);
            continue;
        }
        if (!S_ISDIR(st.st_mode))
            continue;
        if (st.st_dev != dev)
            return ka_fail(e, KA_FAILED_PRECONDITION, "%s is a mount point", sub);
        cleanup_close int child = openat(fd, de->d_name, DIR_FLAGS);
        if (child < 0)
            return ka_fail_errno(e, errno, "open %s", sub);
        if (prune_dir(y, child, sub, dev, e) < 0)
            return -1;
    }
    return 0;
}

/* ---- copying into the destination ---- */

/* The directory holding rel's last component below root (components opened without following). */
static int open_parent(int root, const char *rel, const char **name, ka_err *e)
{
    const char *slash = strrchr(rel, '/');
    *name = slash ? slash + 1 : rel;
    int fd = dup(root);
    if (fd < 0)
        return ka_fail_errno(e, errno, "dup");
    for (const char *p = rel; slash && p <= slash;) {
        char comp[NAME_MAX + 1];
        size_t len = strcspn(p, "/");
        if (len > NAME_MAX) {
            close(fd);
            return ka_fail(e, KA_INVALID_ARGUMENT, "%s: name too long", rel);
        }
        memcpy(comp, p, len);
        comp[len] = '\0';
        int next = openat(fd, comp, DIR_FLAGS);
        int err = errno;
        close(fd);
        if (next < 0)
            return ka_fail_errno(e, err, "open %.*s", (int)(p + len - rel), rel);
        fd = next;
        p += len + 1;
    }
    return fd;
}

static bool same_attrs(const struct stat *a, const struct stat *b)
{
    return a->st_mode == b->st_mode && a->st_uid == b->st_uid && a->st_gid == b->st_gid;
}

static bool same_file(const struct stat *src, const struct stat *dst)
{
    return S_ISREG(dst->st_mode) && same_attrs(src, dst) && src->st_size == dst->st_size &&
           src->st_mtim.tv_sec == dst->st_mtim.tv_sec && src->st_mtim.tv_nsec == dst->st_mtim.tv_nsec;
}

/* Owner, then mode (chown clears set-id bits), then times, of an open file or directory. */
static int set_attrs(int fd, const struct stat *st, bool times, ka_err *e)
{
    if (fchown(fd, st->st_uid, st->st_gid) < 0)
        return ka_fail_errno(e, errno, "chown %u:%u", (unsigned)st->st_uid, (unsigned)st->st_gid);
    if (fchmod(fd, st->st_mode & 07777) < 0)
        return ka_fail_errno(e, errno, "chmod %o", (unsigned)(st->st_mode & 07777));
    struct timespec ts[2] = {st->st_atim, st->st_mtim};
    if (times && futimens(fd, ts) < 0)
        return ka_fail_errno(e, errno, "set times");
    return 0;
}

/* Copy the regular file sfd into dfd (both open), at most budget bytes. */
static int copy_data(int sfd, int dfd, uint64_t *copied, ka_err *e)
{
    char buf[16384];
    for (;;) {
        ssize_t n = read(sfd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ka_fail_errno(e, errno, "read");
        if (n == 0)
            return 0;
        *copied += (uint64_t)n;
        if (*copied > WATCHABLE_MAX_BYTES)
            return ka_fail(e, KA_RESOURCE_EXHAUSTED, "the source grew beyond %u bytes during the copy",
                           WATCHABLE_MAX_BYTES);
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(dfd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return ka_fail_errno(e, errno, "write");
            off += w;
        }
    }
}

static int open_source_file(int sdir, const char *name, struct stat *st, ka_err *e)
{
    int fd = openat(sdir, name, SRC_FILE_FLAGS);
    if (fd < 0)
        return ka_fail_errno(e, errno, "open source");
    if (fstat(fd, st) < 0) {
        int err = errno;
        close(fd);
        return ka_fail_errno(e, err, "stat source");
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return ka_fail(e, KA_FAILED_PRECONDITION, "source is no longer a file");
    }
    return fd;
}

/* name in sdir -> a temporary file in ddir, renamed over name. */
static int copy_file(struct sync *y, int sdir, int ddir, const char *name, ka_err *e)
{
    struct stat st;
    cleanup_close int sfd = open_source_file(sdir, name, &st, e);
    if (sfd < 0)
        return -1;
    if (unlinkat(ddir, TMP_NAME, 0) < 0 && errno != ENOENT)
        return ka_fail_errno(e, errno, "remove %s", TMP_NAME);
    cleanup_close int dfd =
        openat(ddir, TMP_NAME, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (dfd < 0)
        return ka_fail_errno(e, errno, "create %s", TMP_NAME);
    int rc = copy_data(sfd, dfd, &y->copied, e);
    if (rc == 0)
        rc = set_attrs(dfd, &st, true, e);
    if (rc == 0 && renameat(ddir, TMP_NAME, ddir, name) < 0)
        rc = ka_fail_errno(e, errno, "rename");
    if (rc < 0)
        unlinkat(ddir, TMP_NAME, 0);
    return rc;
}

static int copy_symlink(int ddir, const char *name, const struct entry *en, ka_err *e)
{
    if (unlinkat(ddir, TMP_NAME, 0) < 0 && errno != ENOENT)
        return ka_fail_errno(e, errno, "remove %s", TMP_NAME);
    if (symlinkat(en->link, ddir, TMP_NAME) < 0)
        return ka_fail_errno(e, errno, "symlink");
    if (fchownat(ddir, TMP_NAME, en->st.st_uid, en->st.st_gid, AT_SYMLINK_NOFOLLOW) < 0 ||
        renameat(ddir, TMP_NAME, ddir, name) < 0) {
        int err = errno;
        unlinkat(ddir, TMP_NAME, 0);
        return ka_fail_errno(e, err, "symlink");
    }
    return 0;
}

static int sync_dir_entry(int ddir, const char *name, const struct entry *en, bool exists, ka_err *e)
{
    if (!exists && mkdirat(ddir, name, 0700) < 0)
        return ka_fail_errno(e, errno, "mkdir");
    cleanup_close int fd = openat(ddir, name, DIR_FLAGS);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return ka_fail_errno(e, errno, "open");
    return same_attrs(&en->st, &st) ? 0 : set_attrs(fd, &en->st, false, e);
}

static bool same_link(int ddir, const char *name, const struct entry *en, const struct stat *st)
{
    char buf[PATH_MAX];
    if (!S_ISLNK(st->st_mode) || st->st_uid != en->st.st_uid || st->st_gid != en->st.st_gid)
        return false;
    ssize_t len = readlinkat(ddir, name, buf, sizeof(buf) - 1);
    if (len < 0)
        return false;
    buf[len] = '\0';
    return strcmp(buf, en->link) == 0;
}

/* One entry (not the root), its parent directories being in place already. */
static int sync_entry(struct sync *y, const struct entry *en, ka_err *e)
{
    const char *name;
    struct stat st;
    cleanup_close int ddir = open_parent(y->dst_root, en->rel, &name, e);
    if (ddir < 0)
        return -1;
    bool exists = fstatat(ddir, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT)
        return ka_fail_errno(e, errno, "stat");
    if (S_ISDIR(en->st.st_mode))
        return sync_dir_entry(ddir, name, en, exists, e);
    if (S_ISLNK(en->st.st_mode))
        return exists && same_link(ddir, name, en, &st) ? 0 : copy_symlink(ddir, name, en, e);
    if (exists && same_file(&en->st, &st))
        return 0;
    cleanup_close int sdir = open_parent(y->src_root, en->rel, &name, e);
    if (sdir < 0)
        return ka_wrap(e, "source");
    return copy_file(y, sdir, ddir, name, e);
}

static int sync_tree(struct sync *y, int dst_dir, const char *dst_name, ka_err *e)
{
    struct stat st;
    y->dst_root = openat(dst_dir, dst_name, DIR_FLAGS);
    if (y->dst_root < 0 || fstat(y->dst_root, &st) < 0)
        return ka_fail_errno(e, errno, "open the destination");
    if (prune_dir(y, y->dst_root, "", st.st_dev, e) < 0)
        return -1;
    if (!same_attrs(&y->sc.e[0].st, &st) && set_attrs(y->dst_root, &y->sc.e[0].st, false, e) < 0)
        return -1;
    for (size_t i = 1; i < y->sc.n; i++)
        if (sync_entry(y, &y->sc.e[i], e) < 0)
            return ka_wrap(e, "%s", y->sc.e[i].rel);
    return 0;
}

/* A source that is a file: rewritten in place (the mount point's inode may be bind-mounted already). */
static int sync_root_file(struct sync *y, int src, int dst_dir, const char *dst_name, ka_err *e)
{
    struct stat st, dst;
    char p[32];
    snprintf(p, sizeof(p), "/proc/self/fd/%d", src);
    cleanup_close int sfd = open(p, SRC_FILE_FLAGS & ~O_NOFOLLOW);
    if (sfd < 0 || fstat(sfd, &st) < 0)
        return ka_fail_errno(e, errno, "open the source");
    if (!S_ISREG(st.st_mode))
        return ka_fail(e, KA_FAILED_PRECONDITION, "the source is no longer a file");
    if (fstatat(dst_dir, dst_name, &dst, AT_SYMLINK_NOFOLLOW) < 0)
        return ka_fail_errno(e, errno, "stat the destination");
    if (same_file(&st, &dst))
        return 0;
    if (!S_ISREG(dst.st_mode))
        return ka_fail(e, KA_FAILED_PRECONDITION, "the destination is not a regular file");
    cleanup_close int dfd = openat(dst_dir, dst_name, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return ka_fail_errno(e, errno, "open the destination");
    if (copy_data(sfd, dfd, &y->copied, e) < 0)
        return -1;
    return set_attrs(dfd, &st, true, e);
}

int watchable_sync(const char *source, int dst_dir, const char *dst_name, ka_err *e)
{
    struct sync *y = calloc(1, sizeof(*y));
    if (!y)
        return ka_fail_errno(e, ENOMEM, "watchable sync");
    y->source = source;
    y->src_root = y->dst_root = -1;
    int rc = -1;
    struct stat st;
    cleanup_close int src = open(source, O_PATH | O_CLOEXEC);
    if (src < 0 || fstat(src, &st) < 0) {
        int err = errno;
        ka_fail_errno(e, err, "open source %s", source);
        if (err == ENOENT)
            e->status = KA_NOT_FOUND;
        goto out;
    }
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
        ka_fail(e, KA_INVALID_ARGUMENT, "source %s is neither a directory nor a regular file", source);
        goto out;
    }
    y->sc.e[0].st = st;
    if (!(y->sc.e[0].rel = strdup(""))) {
        ka_fail_errno(e, ENOMEM, "watchable sync");
        goto out;
    }
    y->sc.n = 1;
    if (S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size > WATCHABLE_MAX_BYTES)
            rc = WATCHABLE_TOO_BIG;
        else
            rc = sync_root_file(y, src, dst_dir, dst_name, e);
        goto out;
    }
    if ((y->src_root = openat(src, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        ka_fail_errno(e, errno, "open source %s", source);
        goto out;
    }
    if (scan_dir(&y->sc, y->src_root, "", e) < 0) {
        ka_wrap(e, "scan %s", source);
        goto out;
    }
    rc = y->sc.too_big ? WATCHABLE_TOO_BIG : sync_tree(y, dst_dir, dst_name, e);
out:
    if (y->src_root >= 0)
        close(y->src_root);
    if (y->dst_root >= 0)
        close(y->dst_root);
    scan_free(&y->sc);
    free(y);
    return rc;
}

int watchable_clear(int dst_dir, const char *dst_name, ka_err *e)
{
    struct sync y = {.src_root = -1, .dst_root = -1};
    struct stat st;
    cleanup_close int fd = openat(dst_dir, dst_name, DIR_FLAGS);
    if (fd < 0)
        return errno == ENOENT || errno == ENOTDIR ? 0 : ka_fail_errno(e, errno, "open %s", dst_name);
    struct stat parent;
    if (fstat(fd, &st) < 0 || fstat(dst_dir, &parent) < 0)
        return ka_fail_errno(e, errno, "stat %s", dst_name);
    if (st.st_dev != parent.st_dev)
        return ka_fail(e, KA_FAILED_PRECONDITION, "%s is a mount point (its contents are not removed)",
                       dst_name);
    return remove_contents(&y, fd, st.st_dev, 0, e);
}

/* ---- the watches and their timer ---- */

struct watch {
    struct list link;
    char *source, *dst_name, *label;
    int dst_dir;
    bool failing; /* the last sync failed (warned once, until it works again) */
    watch_overflow_cb overflow;
    void *data;
};

static void watch_sync(struct watchable *ws, struct watch *w)
{
    ka_err e = {0};
    int rc = watchable_sync(w->source, w->dst_dir, w->dst_name, &e);
    if (rc < 0) {
        if (!w->failing)
            log_warn(SUB, "watchable storage at %s: sync from %s failed, the previous copy stays: %s",
                     w->label, w->source, e.msg);
        w->failing = true;
        return;
    }
    if (w->failing)
        log_info(SUB, "watchable storage at %s: in sync again", w->label);
    w->failing = false;
    if (rc == WATCHABLE_TOO_BIG) {
        log_info(SUB,
                 "watchable storage at %s: %s now has more than %d entries or %u bytes, bind-mounting it",
                 w->label, w->source, WATCHABLE_MAX_ENTRIES, WATCHABLE_MAX_BYTES);
        w->overflow(ws, w, w->data);
    }
}

void watchable_sync_all(struct watchable *ws)
{
    list_for_each_safe (pos, tmp, &ws->watches)
        watch_sync(ws, container_of(pos, struct watch, link));
}

static void on_timer(struct loop_timer *t)
{
    struct watchable *ws = container_of(t, struct watchable, timer);
    watchable_sync_all(ws);
    if (!list_empty(&ws->watches) && !loop_timer_armed(&ws->timer))
        loop_timer_start(ws->loop, &ws->timer, WATCHABLE_INTERVAL_NS);
}

void watchable_init(struct watchable *ws)
{
    list_init(&ws->watches);
    ws->loop = NULL;
    loop_timer_init(&ws->timer, on_timer);
}

static void watch_free(struct watch *w)
{
    if (w->dst_dir >= 0)
        close(w->dst_dir);
    free(w->source);
    free(w->dst_name);
    free(w->label);
    free(w);
}

struct watch *watch_add(struct watchable *ws, struct loop *l, const char *source, int dst_dir,
                        const char *dst_name, const char *label, watch_overflow_cb overflow, void *data,
                        ka_err *e)
{
    struct watch *w = calloc(1, sizeof(*w));
    if (!w) {
        ka_fail_errno(e, ENOMEM, "watch");
        return NULL;
    }
    w->dst_dir = fcntl(dst_dir, F_DUPFD_CLOEXEC, 0);
    w->source = strdup(source);
    w->dst_name = strdup(dst_name);
    w->label = strdup(label);
    if (w->dst_dir < 0 || !w->source || !w->dst_name || !w->label) {
        ka_fail_errno(e, w->dst_dir < 0 ? errno : ENOMEM, "watch %s", label);
        watch_free(w);
        return NULL;
    }
    w->overflow = overflow;
    w->data = data;
    ws->loop = l;
    list_add_tail(&ws->watches, &w->link);
    if (!loop_timer_armed(&ws->timer))
        loop_timer_start(l, &ws->timer, WATCHABLE_INTERVAL_NS);
    return w;
}

void watch_remove(struct watchable *ws, struct watch *w)
{
    list_del(&w->link);
    watch_free(w);
    if (list_empty(&ws->watches) && ws->loop)
        loop_timer_stop(ws->loop, &ws->timer);
}
