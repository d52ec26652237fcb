/* Storages (spec §4.2): ephemeral tmpfs, local directories, bind mounts, shared filesystems (virtio-fs, 9p,
 * overlayfs), disks (blk, scsi, nvdimm, mmioblk) and watchable-bind copies (watchable.c), refcounted,
 * confined to a base. */
#include "storage.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "../util/fs.h"
#include "../util/log.h"
#include "../util/mount_opts.h"

#define SUB            "storage"
#define MOUNT_DATA_MAX 4096
#define FD_PATH_MAX    32

/* watchable-bind mount points live below one of these (relative to base), each a tmpfs while used */
#define WATCHABLE_DIR             "shared/containers/watchable"
#define WATCHABLE_PASSTHROUGH_DIR "shared/containers/passthrough/watchable"

struct storage_mount {
    struct list link;
    char *mount_point; /* normalized absolute path */
    const char *rel;   /* inside mount_point: the part below base */
    unsigned refs;
    /* what the first user asked for; later users must ask for the same */
    char *driver, *source, *fstype;
    size_t n_options;
    char **options;
    bool has_fs_group;
    uint32_t fs_gid;
    int fs_policy;
    /* what the agent did, undone when the last reference goes */
    bool mounted;
    unsigned long huge_pages, huge_kb; /* hugepages added to the pool of that size (hugetlbfs) */
    size_t n_created;
    char **created;    /* relative to base, outermost first */
    bool created_file; /* created[n_created - 1] is a regular file (bind of a file) */
    /* watchable-bind */
    struct watch *watch;         /* the copy kept in sync (NULL once the source is bind-mounted instead) */
    struct storage_mount *under; /* the tmpfs on the watchable directory, one reference held */
    bool internal;               /* this is that tmpfs: never shared with a Storage of a request */
};

/* Parsed Storage.options. */
struct mount_opts {
    unsigned long flags;       /* MS_* to set */
    unsigned long cleared;     /* MS_* explicitly cleared ("rw", "suid", ...) */
    unsigned long propagation; /* MS_SHARED/MS_PRIVATE/MS_SLAVE/MS_UNBINDABLE, | MS_REC */
    bool has_fsgid, has_mode;
    gid_t fsgid;
    mode_t mode;
    char data[MOUNT_DATA_MAX]; /* everything else, "a,b" */
};

/* The mount point once resolved: its parent directory and itself, both O_PATH. */
struct target {
    int parent, fd;
    const char *name; /* last component */
};

enum target_kind { TARGET_ANY, TARGET_DIR, TARGET_FILE };

/* Several errors reported as the first one plus a count (e may be NULL: log only). */
struct errs {
    ka_err *e;
    unsigned n;
};

typedef int (*storage_handler)(struct storage_set *s, struct storage_mount *m, const Grpc__Storage *st,
                               ka_err *e);

/* ---- small helpers ---- */

static void errs_add(struct errs *acc, const ka_err *err)
{
    log_warn(SUB, "%s", err->msg);
    if (acc->n++ == 0 && acc->e)
        *acc->e = *err;
}

static int errs_finish(struct errs *acc)
{
    if (!acc->n)
        return 0;
    if (acc->n > 1 && acc->e) {
        size_t len = strlen(acc->e->msg);
        snprintf(acc->e->msg + len, sizeof(acc->e->msg) - len, " (and %u more errors)", acc->n - 1);
    }
    return -1;
}

static void fd_path(char buf[FD_PATH_MAX], int fd)
{
    snprintf(buf, FD_PATH_MAX, "/proc/self/fd/%d", fd);
}

static void target_close(struct target *t)
{
    if (t->parent >= 0)
        close(t->parent);
    if (t->fd >= 0)
        close(t->fd);
    t->parent = t->fd = -1;
}

#define cleanup_target __attribute__((cleanup(target_close)))

static void strv_free(size_t n, char **v)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static char **strv_dup(size_t n, char *const *v)
{
    char **out = calloc(n ? n : 1, sizeof(*out));
    for (size_t i = 0; out && i < n; i++) {
        if (!(out[i] = strdup(v[i]))) {
            strv_free(i, out);
            return NULL;
        }
    }
    return out;
}

static bool strv_eq(size_t na, char *const *a, size_t nb, char *const *b)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

static bool has_option(const Grpc__Storage *st, const char *opt)
{
    for (size_t i = 0; i < st->n_options; i++)
        if (strcmp(st->options[i], opt) == 0)
            return true;
    return false;
}

/* ---- option parsing (the table of spec §4.2.c, in util/mount_opts.c) ---- */

static bool parse_flag(const char *tok, size_t len, struct mount_opts *o)
{
    const struct mnt_word *k = mnt_word_find(tok, len);
    if (!k)
        return false;
    struct mnt_flags f = {o->flags, o->cleared, o->propagation};
    mnt_flags_apply(&f, k);
    o->flags = f.set;
    o->cleared = f.cleared;
    o->propagation = f.prop;
    return true;
}

/* "<digits>" in base, at most max. */
static int parse_number(const char *tok, size_t len, int base, unsigned long max, unsigned long *out)
{
    char buf[24];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, tok, len);
    buf[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (buf[i] < '0' || buf[i] > (base == 8 ? '7' : '9'))
            return -1;
    errno = 0;
    unsigned long v = strtoul(buf, NULL, base);
    if (errno || v > max)
        return -1;
    *out = v;
    return 0;
}

/* fsgid=N always; mode=OOOO only when with_mode ("local"; for tmpfs it is mount data). */
static int parse_keyed(const char *tok, size_t len, bool with_mode, struct mount_opts *o, ka_err *e)
{
    unsigned long v;
    if (len >= 6 && strncmp(tok, "fsgid=", 6) == 0) {
        if (parse_number(tok + 6, len - 6, 10, UINT32_MAX - 1, &v) < 0)
            return ka_fail(e, KA_INVALID_ARGUMENT, "invalid option '%.*s'", (int)len, tok);
        o->has_fsgid = true;
        o->fsgid = (gid_t)v;
        return 1;
    }
    if (with_mode && len >= 5 && strncmp(tok, "mode=", 5) == 0) {
        if (parse_number(tok + 5, len - 5, 8, 07777, &v) < 0)
            return ka_fail(e, KA_INVALID_ARGUMENT, "invalid option '%.*s'", (int)len, tok);
        o->has_mode = true;
        o->mode = (mode_t)v;
        return 1;
    }
    return 0;
}

static int parse_token(const char *tok, size_t len, bool with_mode, struct mount_opts *o, ka_err *e)
{
    if (len == 0 || parse_flag(tok, len, o))
        return 0;
    int r = parse_keyed(tok, len, with_mode, o, e);
    if (r != 0)
        return r < 0 ? -1 : 0;
    return mnt_data_append(o->data, sizeof(o->data), tok, len, e);
}

/* Each option may itself be "a,b,c". */
static int parse_options(const Grpc__Storage *st, bool with_mode, struct mount_opts *o, ka_err *e)
{
    memset(o, 0, sizeof(*o));
    for (size_t i = 0; i < st->n_options; i++) {
        const char *p = st->options[i];
        for (;;) {
            size_t len = strcspn(p, ",");
            if (parse_token(p, len, with_mode, o, e) < 0)
                return -1;
            if (!p[len])
                break;
            p += len + 1;
        }
    }
    return 0;
}

/* ---- mount point resolution below base ---- */

/* Without openat2 (old kernels, valgrind): one component at a time is just as safe with O_NOFOLLOW, since
 * names never contain '/' or "..". */
static int openat_component(int dirfd, const char *name, int flags, mode_t mode)
{
    struct stat sb;
    if (flags & O_CREAT)
        return openat(dirfd, name, flags | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, mode);
    int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int err = fstat(fd, &sb) < 0                                ? errno
              : S_ISLNK(sb.st_mode)                             ? ELOOP
              : ((flags & O_DIRECTORY) && !S_ISDIR(sb.st_mode)) ? ENOTDIR
                                                                : 0;
    if (err) {
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* Open one component (name has no '/') of dirfd, never through a symlink. */
static int openat2_beneath(int dirfd, const char *name, int flags, mode_t mode)
{
    static bool no_openat2;
    /* openat2 refuses O_PATH with flags that do not apply to it */
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC | ((flags & O_PATH) ? 0 : O_NOCTTY)),
        .mode = mode,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    if (!no_openat2) {
        int fd = (int)syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
        if (fd >= 0 || errno != ENOSYS)
            return fd;
        no_openat2 = true;
    }
    return openat_component(dirfd, name, flags, mode);
}

/* "/a//./b/" -> "/a/b"; ".." is refused; the result must be strictly below base. */
static int normalize_mount_point(const char *base, const char *in, char out[PATH_MAX], const char **rel,
                                 ka_err *e)
{
    if (fs_normalize_path("mount point", in, out, e) < 0)
        return -1;
    size_t len = strlen(out);
    size_t bl = strlen(base);
    if (len <= bl + 1 || strncmp(out, base, bl) != 0 || out[bl] != '/')
        return ka_fail(e, KA_INVALID_ARGUMENT, "mount point %s is outside %s", in, *base ? base : "/");
    *rel = out + bl + 1;
    return 0;
}

static int resolve_error(const struct storage_set *s, const char *rel, size_t rlen, int err, ka_err *e)
{
    switch (err) {
    case ELOOP:
        return ka_fail(e, KA_INVALID_ARGUMENT, "%s/%.*s is a symlink (not allowed in a mount point)", s->base,
                       (int)rlen, rel);
    case EXDEV:
        return ka_fail(e, KA_INVALID_ARGUMENT, "%s/%.*s escapes %s", s->base, (int)rlen, rel, s->base);
    case ENOTDIR:
        return ka_fail(e, KA_INVALID_ARGUMENT, "%s/%.*s is not a directory", s->base, (int)rlen, rel);
    case ENOENT:
        return ka_fail(e, KA_NOT_FOUND, "%s/%.*s does not exist", s->base, (int)rlen, rel);
    default:
        return ka_fail_errno(e, err, "open %s/%.*s", s->base, (int)rlen, rel);
    }
}

static int record_created(struct storage_mount *m, const char *rel, size_t rlen, bool is_file)
{
    char **v = realloc(m->created, (m->n_created + 1) * sizeof(*v));
    if (!v)
        return -1;
    m->created = v;
    if (!(v[m->n_created] = strndup(rel, rlen)))
        return -1;
    m->n_created++;
    m->created_file = is_file;
    return 0;
}

/* Create name (a directory, or an empty file) in dir and remember it in m; "exists already" is fine. */
static int make_entry(int dir, const char *name, bool is_dir, struct storage_mount *m, const char *rel,
                      size_t rlen, ka_err *e)
{
    int r = is_dir ? mkdirat(dir, name, 0755) : openat2_beneath(dir, name, O_CREAT | O_EXCL | O_RDONLY, 0644);
    if (r < 0)
        return errno == EEXIST ? 0 : ka_fail_errno(e, errno, "create %.*s", (int)rlen, rel);
    if (!is_dir)
        close(r);
    if (record_created(m, rel, rlen, !is_dir) < 0) {
        unlinkat(dir, name, is_dir ? AT_REMOVEDIR : 0);
        return ka_fail_errno(e, ENOMEM, "create %.*s", (int)rlen, rel);
    }
    return 0;
}

/* One directory step; missing directories are created for creator (NULL: only look). */
static int step_dir(const struct storage_set *s, int dir, const char *name, const char *rel, size_t rlen,
                    struct storage_mount *creator, ka_err *e)
{
    int fd = openat2_beneath(dir, name, O_PATH | O_DIRECTORY, 0);
    if (fd < 0 && errno == ENOENT && creator) {
        if (make_entry(dir, name, true, creator, rel, rlen, e) < 0)
            return -1;
        fd = openat2_beneath(dir, name, O_PATH | O_DIRECTORY, 0);
    }
    if (fd < 0)
        return resolve_error(s, rel, rlen, errno, e);
    return fd;
}

static int open_base(const struct storage_set *s, ka_err *e)
{
    const char *base = *s->base ? s->base : "/";
    int fd = open(base, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ka_fail_errno(e, errno, "open %s", base);
    return fd;
}

/* The directory holding rel's last component. */
static int walk_parent(const struct storage_set *s, const char *rel, struct storage_mount *creator, ka_err *e)
{
    cleanup_close int dir = open_base(s, e);
    if (dir < 0)
        return -1;
    for (const char *p = rel;;) {
        const char *slash = strchr(p, '/');
        if (!slash)
            return steal_fd(dir);
        char name[NAME_MAX + 1];
        size_t len = (size_t)(slash - p);
        if (len > NAME_MAX)
            return ka_fail(e, KA_INVALID_ARGUMENT, "%s/%s: name too long", s->base, rel);
        memcpy(name, p, len);
        name[len] = '\0';
        int next = step_dir(s, dir, name, rel, (size_t)(slash - rel), creator, e);
        if (next < 0)
            return -1;
        close(dir);
        dir = next;
        p = slash + 1;
    }
}

static int check_kind(const struct storage_set *s, int fd, const char *rel, enum target_kind kind, ka_err *e)
{
    struct stat sb;
    if (kind == TARGET_ANY)
        return 0;
    if (fstat(fd, &sb) < 0)
        return ka_fail_errno(e, errno, "stat %s/%s", s->base, rel);
    if (kind == TARGET_DIR && !S_ISDIR(sb.st_mode))
        return ka_fail(e, KA_FAILED_PRECONDITION, "%s/%s exists and is not a directory", s->base, rel);
    if (kind == TARGET_FILE && S_ISDIR(sb.st_mode))
        return ka_fail(e, KA_FAILED_PRECONDITION, "%s/%s is a directory but the bind source is not", s->base,
                       rel);
    return 0;
}

/* Resolve rel below base without following any symlink, creating what is missing for creator. */
static int target_open(const struct storage_set *s, const char *rel, struct storage_mount *creator,
                       enum target_kind kind, struct target *t, ka_err *e)
{
    const char *slash = strrchr(rel, '/');
    t->fd = -1;
    t->name = slash ? slash + 1 : rel;
    t->parent = walk_parent(s, rel, creator, e);
    if (t->parent < 0)
        return -1;
    t->fd = openat2_beneath(t->parent, t->name, O_PATH, 0);
    if (t->fd < 0 && errno == ENOENT && creator) {
        if (make_entry(t->parent, t->name, kind != TARGET_FILE, creator, rel, strlen(rel), e) < 0)
            return -1;
        t->fd = openat2_beneath(t->parent, t->name, O_PATH, 0);
    }
    if (t->fd < 0)
        return resolve_error(s, rel, strlen(rel), errno, e);
    return check_kind(s, t->fd, rel, kind, e);
}

/* After mounting: the fd must name the new mount's root, not the directory underneath. */
static int target_reopen(const struct storage_set *s, struct target *t, const char *rel, ka_err *e)
{
    int fd = openat2_beneath(t->parent, t->name, O_PATH, 0);
    if (fd < 0)
        return resolve_error(s, rel, strlen(rel), errno, e);
    close(t->fd);
    t->fd = fd;
    return 0;
}

/* ---- undoing ---- */

static int unmount_storage(const struct storage_set *s, struct storage_mount *m, ka_err *e)
{
    cleanup_target struct target t = {-1, -1, NULL};
    char p[FD_PATH_MAX];
    if (target_open(s, m->rel, NULL, TARGET_ANY, &t, e) < 0) {
        if (e->status != KA_NOT_FOUND)
            return ka_wrap(e, "umount %s", m->mount_point);
        log_warn(SUB, "%s is gone already (detached with a mount above it?)", m->mount_point);
        m->mounted = false;
        return 0;
    }
    fd_path(p, t.fd);
    if (umount2(p, MNT_DETACH) < 0) {
        if (errno != EINVAL)
            return ka_fail_errno(e, errno, "umount %s", m->mount_point);
        log_warn(SUB, "%s was not mounted any more", m->mount_point);
    }
    m->mounted = false;
    return 0;
}

static int remove_created_one(const struct storage_set *s, const char *rel, bool is_file, ka_err *e)
{
    const char *slash = strrchr(rel, '/');
    cleanup_close int dir = walk_parent(s, rel, NULL, e);
    if (dir < 0)
        return e->status == KA_NOT_FOUND ? 0 : -1;
    if (unlinkat(dir, slash ? slash + 1 : rel, is_file ? 0 : AT_REMOVEDIR) < 0) {
        if (errno == ENOENT || errno == ENOTEMPTY || errno == EEXIST)
            return 0; /* gone already, or now shared with another storage */
        return ka_fail_errno(e, errno, "remove %s/%s", s->base, rel);
    }
    return 0;
}

/* Unmount, then remove what was created, innermost first (never recursively). */
static int hugepages_adjust(const struct storage_set *s, unsigned long kb, long delta, ka_err *e);

static void drop_ref(struct storage_set *s, struct storage_mount *m, struct errs *acc);
static int target_open(const struct storage_set *s, const char *rel, struct storage_mount *creator,
                       enum target_kind kind, struct target *t, ka_err *e);

/* What a watchable-bind copy put inside its mount point (once nothing is mounted there). */
static int clear_copy(const struct storage_set *s, struct storage_mount *m, ka_err *e)
{
    cleanup_target struct target t = {-1, -1, NULL};
    if (target_open(s, m->rel, NULL, TARGET_ANY, &t, e) < 0)
        return e->status == KA_NOT_FOUND ? 0 : -1;
    if (watchable_clear(t.parent, t.name, e) < 0)
        return ka_wrap(e, "remove the copy in %s", m->mount_point);
    return 0;
}

static void mount_teardown(struct storage_set *s, struct storage_mount *m, struct errs *acc)
{
    ka_err err;
    if (m->watch)
        watch_remove(&s->watchable, m->watch);
    m->watch = NULL;
    if (m->mounted && unmount_storage(s, m, &err) < 0) {
        errs_add(acc, &err);
        return; /* still mounted: its directory is busy */
    }
    if (m->under && clear_copy(s, m, &err) < 0)
        errs_add(acc, &err);
    if (m->huge_pages && hugepages_adjust(s, m->huge_kb, -(long)m->huge_pages, &err) < 0)
        errs_add(acc, &err);
    m->huge_pages = 0;
    for (size_t i = m->n_created; i-- > 0;) {
        bool is_file = m->created_file && i == m->n_created - 1;
        if (remove_created_one(s, m->created[i], is_file, &err) < 0)
            errs_add(acc, &err);
    }
    struct storage_mount *under = m->under;
    m->under = NULL;
    if (under)
        drop_ref(s, under, acc);
}

static void mount_free(struct storage_mount *m)
{
    if (!m)
        return;
    free(m->mount_point);
    free(m->driver);
    free(m->source);
    free(m->fstype);
    strv_free(m->n_options, m->options);
    strv_free(m->n_created, m->created);
    free(m);
}

static void drop_ref(struct storage_set *s, struct storage_mount *m, struct errs *acc)
{
    if (--m->refs > 0)
        return;
    list_del(&m->link);
    mount_teardown(s, m, acc);
    log_info(SUB, "released storage at %s", m->mount_point);
    mount_free(m);
}

/* ---- applying ownership and mount attributes ---- */

/* fsgid=N: group N plus the setgid bit; mode=OOOO ("local"): that mode. */
static int apply_group_mode(int fd, const struct mount_opts *o, ka_err *e)
{
    struct stat sb;
    char p[FD_PATH_MAX];
    if (!o->has_fsgid && !o->has_mode)
        return 0;
    if (o->has_fsgid && fchownat(fd, "", (uid_t)-1, o->fsgid, AT_EMPTY_PATH) < 0)
        return ka_fail_errno(e, errno, "chown to group %u", (unsigned)o->fsgid);
    if (fstat(fd, &sb) < 0)
        return ka_fail_errno(e, errno, "stat");
    mode_t mode = o->has_mode ? o->mode : (sb.st_mode & 07777);
    if (o->has_fsgid)
        mode |= S_ISGID;
    fd_path(p, fd);
    if (chmod(p, mode) < 0)
        return ka_fail_errno(e, errno, "chmod %o", (unsigned)mode);
    return 0;
}

/* Storage.fs_group on the (fresh) root directory: group, g+rw (g+r if ro), x and setgid. */
static int apply_fs_group(int fd, const Grpc__FSGroup *g, bool ro, ka_err *e)
{
    struct stat sb;
    char p[FD_PATH_MAX];
    if (!g)
        return 0;
    if (fstat(fd, &sb) < 0)
        return ka_fail_errno(e, errno, "stat");
    mode_t want = (ro ? 0440 : 0660) | 0110 | S_ISGID;
    if (g->group_change_policy == TYPES__FSGROUP_CHANGE_POLICY__OnRootMismatch && sb.st_gid == g->group_id &&
        (sb.st_mode & want) == want)
        return 0;
    if (fchownat(fd, "", (uid_t)-1, g->group_id, AT_EMPTY_PATH) < 0)
        return ka_fail_errno(e, errno, "chown to fs_group %u", g->group_id);
    fd_path(p, fd);
    if (chmod(p, (sb.st_mode & 07777) | want) < 0)
        return ka_fail_errno(e, errno, "chmod for fs_group");
    return 0;
}

static int apply_propagation(int fd, unsigned long propagation, ka_err *e)
{
    char p[FD_PATH_MAX];
    if (!propagation)
        return 0;
    fd_path(p, fd);
    if (mount("none", p, "none", propagation, NULL) < 0)
        return ka_fail_errno(e, errno, "set mount propagation");
    return 0;
}

static void atime_attr(const struct mount_opts *o, struct mount_attr *attr)
{
    uint64_t atime;
    if (o->flags & MS_NOATIME)
        atime = MOUNT_ATTR_NOATIME;
    else if (o->flags & MS_STRICTATIME)
        atime = MOUNT_ATTR_STRICTATIME;
    else if (o->flags & MS_RELATIME)
        atime = MOUNT_ATTR_RELATIME;
    else
        return;
    attr->attr_clr |= MOUNT_ATTR__ATIME;
    attr->attr_set |= atime;
}

/* Without mount_setattr (Linux < 5.12, valgrind): a bind remount, which only changes the top mount. */
static int remount_bind(int fd, const struct mount_opts *o, ka_err *e)
{
    const unsigned long atime = MS_NOATIME | MS_RELATIME | MS_STRICTATIME;
    const unsigned long simple = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NODIRATIME;
    struct statvfs sv;
    char p[FD_PATH_MAX];
    fd_path(p, fd);
    if (statvfs(p, &sv) < 0)
        return ka_fail_errno(e, errno, "statvfs");
    unsigned long flags = sv.f_flag & (simple | atime); /* ST_* equal MS_* for these */
    if (o->flags & atime)
        flags = (flags & ~atime) | (o->flags & atime);
    flags = (flags | (o->flags & simple)) & ~(o->cleared & simple);
    if (o->flags & MS_REC)
        log_warn(SUB, "mount_setattr unavailable: flags of submounts are left unchanged");
    if (mount("none", p, "none", MS_REMOUNT | MS_BIND | flags, NULL) < 0)
        return ka_fail_errno(e, errno, "remount bind");
    return 0;
}

/* The per-mount flags of a bind (ro, nosuid, ...), recursively for rbind. */
static int apply_bind_attrs(int fd, const struct mount_opts *o, ka_err *e)
{
    static const struct {
        unsigned long ms;
        uint64_t attr;
    } map[] = {{MS_RDONLY, MOUNT_ATTR_RDONLY},
               {MS_NOSUID, MOUNT_ATTR_NOSUID},
               {MS_NODEV, MOUNT_ATTR_NODEV},
               {MS_NOEXEC, MOUNT_ATTR_NOEXEC},
               {MS_NODIRATIME, MOUNT_ATTR_NODIRATIME}};
    struct mount_attr attr = {0};
    for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
        if (o->flags & map[i].ms)
            attr.attr_set |= map[i].attr;
        else if (o->cleared & map[i].ms)
            attr.attr_clr |= map[i].attr;
    }
    atime_attr(o, &attr);
    if (!attr.attr_set && !attr.attr_clr)
        return 0;
    unsigned flags = AT_EMPTY_PATH | ((o->flags & MS_REC) ? AT_RECURSIVE : 0);
    if (mount_setattr(fd, "", flags, &attr, sizeof(attr)) == 0)
        return 0;
    if (errno == ENOSYS)
        return remount_bind(fd, o, e);
    return ka_fail_errno(e, errno, "set bind mount flags");
}

/* ---- handlers ---- */

/* Every storage that mounts something: mount(source, the mount point, fstype, o's flags and data), then
 * group and mode, the fs_group and the propagation on the fresh mount. */
static int mount_target(struct storage_set *s, struct storage_mount *m, const Grpc__Storage *st,
                        const char *source, const char *fstype, const struct mount_opts *o, ka_err *e)
{
    cleanup_target struct target t = {-1, -1, NULL};
    char p[FD_PATH_MAX];
    if (target_open(s, m->rel, m, TARGET_DIR, &t, e) < 0)
        return -1;
    struct statx sx;
    if (strcmp(source, "kataShared") == 0 && statx(t.fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx) == 0 &&
        (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT)) {
        /* the host share is already there (mounted by the guest image or an earlier agent): use it, as
         * upstream does, and leave it mounted on release */
        log_info(SUB, "%s is already mounted: using it", m->mount_point);
        return 0;
    }
    fd_path(p, t.fd);
    if (mount(source, p, fstype, o->flags, o->data) < 0)
        return ka_fail_errno(e, errno, "mount %s (%s) %s", source, fstype, o->data);
    m->mounted = true;
    if (target_reopen(s, &t, m->rel, e) < 0 || apply_group_mode(t.fd, o, e) < 0 ||
        apply_fs_group(t.fd, st->fs_group, o->flags & MS_RDONLY, e) < 0)
        return -1;
    return apply_propagation(t.fd, o->propagation, e);
}

/* ---- hugetlbfs ---- */

#define HUGE_MAX_PAGES (1UL << 24) /* 32 TiB of 2 MiB pages: beyond is a typo */

/* Grow (delta > 0) or shrink the pool of kb-sized hugepages; growing checks what the kernel managed to
 * allocate and gives back a partial allocation. */
static int hugepages_adjust(const struct storage_set *s, unsigned long kb, long delta, ka_err *e)
{
    char path[PATH_MAX], num[32];
    cleanup_free char *cur_s = NULL, *now_s = NULL;
    snprintf(path, sizeof(path), "%s/kernel/mm/hugepages/hugepages-%lukB/nr_hugepages",
             s->sysfs_root ? s->sysfs_root : "/sys", kb);
    if (fs_read_file(path, &cur_s, NULL, e) < 0)
        return ka_wrap(e, "hugepages of %lu kB", kb);
    long cur = strtol(cur_s, NULL, 10), want = cur + delta;
    if (want < 0)
        want = 0;
    snprintf(num, sizeof(num), "%ld", want);
    if (fs_write_file(path, num, strlen(num), e) < 0)
        return ka_wrap(e, "hugepages of %lu kB", kb);
    if (delta <= 0)
        return 0;
    long now = fs_read_file(path, &now_s, NULL, e) == 0 ? strtol(now_s, NULL, 10) : -1;
    if (now == want)
        return 0;
    snprintf(num, sizeof(num), "%ld", cur);
    ka_err ignored;
    fs_write_file(path, num, strlen(num), &ignored); /* give back what a partial allocation took */
    return ka_fail(e, KA_RESOURCE_EXHAUSTED, "Only allocated %ld of %ld hugepages of size %lu",
                   now < cur ? 0 : now - cur, delta, kb * 1024);
}

/* "pagesize=<bytes>" and "size=<bytes>" in the mount data. */
static int huge_params(const char *data, unsigned long *pagesize, unsigned long *size, ka_err *e)
{
    *pagesize = *size = 0;
    for (const char *p = data; *p;) {
        size_t len = strcspn(p, ",");
        unsigned long *dst = len > 9 && !strncmp(p, "pagesize=", 9) ? pagesize
                             : len > 5 && !strncmp(p, "size=", 5)   ? size
                                                                    : NULL;
        if (dst &&
            parse_number(strchr(p, '=') + 1, len - (size_t)(strchr(p, '=') + 1 - p), 10, ULONG_MAX, dst) < 0)
            return ka_fail(e, KA_INVALID_ARGUMENT, "invalid hugetlbfs option '%.*s' (bytes expected)",
                           (int)len, p);
        p += len + (p[len] == ',');
    }
    if (!*pagesize || (*pagesize & (*pagesize - 1)) || *pagesize < 4096 || !*size || *size % *pagesize ||
        *size / *pagesize > HUGE_MAX_PAGES)
        return ka_fail(e, KA_INVALID_ARGUMENT,
                       "hugetlbfs storage needs pagesize=<power of two bytes> and size=<a multiple of it>");
    return 0;
}

/* A hugetlbfs mount backed by size/pagesize pages added to the pool (upstream sets the pool to that count,
 * whatever else used it). */
static int handle_hugetlbfs(struct storage_set *s, struct storage_mount *m, const Grpc__Storage *st,
                            const struct mount_opts *o, ka_err *e)
{
    unsigned long pagesize, size;
    if (huge_params(o->data, &pagesize, &size, e) < 0)
        return -1;
    if (hugepages_adjust(s, pagesize / 1024, (long)(size / pagesize), e) < 0)
        return -1;
    m->huge_pages = size / pagesize;
    m->huge_kb = pagesize / 1024;
    return mount_target(s, m, st, *st->source ? st->source : "nodev", "hugetlbfs", o, e);
}

/* tmpfs with its options (upstream drops them); fsgid=N applied after mounting. */
static int handle_ephemeral(struct storage_set *s, struct storage_mount *m, const Grpc__Storage *st,
                            ka_err *e)
{
    struct mount_opts o;
    if (strcmp(st->fstype, "hugetlbfs") == 0) {
        if (parse_options(st, false, &o, e) < 0)
            return -1;
        if (o.flags & (MS_BIND | MS_REMOUNT))
            return ka_fail(e, KA_INVALID_ARGUMENT, "bind/rbind/remount options are not valid for hugetlbfs");
        return handle_hugetlbfs(s, m, st, &o, e);
    }
    if (strcmp(st->fstype, "tmpfs") != 0)
        return ka_fail(e, KA_INVALID_ARGUMENT, "ephemeral storage fstype '%s' is not supported (tmpfs only)",
                       st->fstype);
    if (parse_options(st, false, &o, e) < 0)
        return -1;
    if (o.flags & (MS_BIND | MS_REMOUNT))
        return ka_fail(e, KA_INVALID_ARGUMENT,
                       "bind/rbind/remount options are not valid for ephemeral storage");
    return mount_target(s, m, st, *st->source ? st->source : "tmpfs", "tmpfs", &o, e);
}

/* A directory, no mount: mode=OOOO and fsgid=N. */
static int handle_local(struct storage_set *s, struct storage_mount *m, const Grpc__Storage *st, ka_err *e)
{
    cleanup_target struct target t = {-1, -1, NULL};
    struct mount_opts o;
    if (parse_options(st, true, &o, e) < 0)
        return -1;
    if (o.flags || o.cleared || o.propagation || o.data[0])
        log_warn(SUB, "local storage %s: mount options ignored", m->mount_point);
    if (target_open(s, m->rel, m, TARGET_DIR, &t, e) < 0 || apply_group_mode(t.fd, &o, e) < 0)
        return -1;
    return apply_fs_group(t.fd, st->fs_group, o.flags & MS_RDONLY, e);
}

static int bind_check_options(const Grpc__Storage *st, const struct mount_opts *o, ka_err *e)
{
    if (o->data[0])
        return ka_fail(e, KA_INVALID_ARGUMENT, "options not supported for a bind mount: %s", o->data);
    if (o->has_fsgid)
        return ka_fail(e, KA_INVALID_ARGUMENT, "fsgid is not supported for a bind mount");
    if (o->flags & (MS_REMOUNT | MS_SYNCHRONOUS | MS_DIRSYNC | MS_MANDLOCK))
        return ka_fail(e, KA_INVALID_ARGUMENT, "remount/sync/dirsync/mand cannot be applied to a bind mount");
    if (st->fs_group)
        return ka_fail(e, KA_UNIMPLEMENTED, "fs_group on a bind storage is not supported yet");
    if (st->source[0] != '/')
        return ka_fail(e, KA_INVALID_ARGUMENT, "bind source '%s' is not an absolute path", st->source);
    return 0;
}

static int open_bind_source(const char *source, enum target_kind *kind, ka_err *e)
{
    struct stat sb;
    int fd = open(source, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return ka_fail_errno(e, errno, "open bind source %s", source);
    if (fstat(fd, &sb) < 0) {
        close(fd);
        return ka_fail_errno(e, errno, "stat bind source %s", source);
    }
    *kind = S_ISDIR(sb.st_mode) ? TARGET_DIR : TARGET_FILE;
    return fd;
}

/* A guest path bound onto the mount point (a file for a file source), then ro/nosuid/... applied. */
static int handle_bind(struct storage_set *s, struct storage_mount *m, const Grpc__Storage *st, ka_err *e)
{
    cleanup_target struct target t = {-1, -1, NULL};
    struct mount_opts o;
    enum target_kind kind = TARGET_ANY;
    char src[FD_PATH_MAX], dst[FD_PATH_MAX];
    if (parse_options(st, false, &o, e) < 0 || bind_check_options(st, &o, e) < 0)
        return -1;
    cleanup_close int sfd = open_bind_source(st->source, &kind, e);
    if (sfd < 0 || target_open(s, m->rel, m, kind, &t, e) < 0)
        return -1;
    fd_path(src, sfd);
    fd_path(dst, t.fd);
    if (mount(src, dst, "none", MS_BIND | (o.flags & MS_REC), NULL) < 0)
        return ka_fail_errno(e, errno, "bind mount %s", st->source);
    m->mounted = true;
    if (target_reopen(s, &t, m->rel, e) < 0 || apply_bind_attrs(t.fd, &o, e) < 0)
        return -1;
    return apply_propagation(t.fd, o.propagation, e);
}

/* A filesystem the host shares or a disk's filesystem: mount(source, mount point, fstype, flags, data). */
static int mount_generic(struct storage_set *s, struct storage_mount *m, const Grpc__Storage *st,
                         const char *source, ka_err *e)
{
    struct mount_opts o;
    if (!st->fstype[0])
        return ka_fail(e, KA_INVALID_ARGUMENT, "%s storage needs an fstype", st->driver);
    if (parse_options(st, false, &o, e) < 0)
        return -1;
    if (o.flags & (MS_BIND | MS_REMOUNT))
        return ka_fail(e, KA_INVALID_ARGUMENT, "bind/rbind/remount options are not valid for %s storage",
                       st->driver);
    return mount_target(s, m, st, source, st->fstype, &o, e);
}

/* virtio-fs, 9p, overlayfs: the source is a tag or what the filesystem makes of it. */
static int handle_shared_fs(struct storage_set *s, struct storage_mount *m, const Grpc__Storage *st,
                            ka_err *e)
{
    if (!st->source[0])
        return ka_fail(e, KA_INVALID_ARGUMENT, "%s storage has no source", st->driver);
    return mount_generic(s, m, st, st->source, e);
}

/* blk, scsi, nvdimm (their source already resolved to the guest's /dev path by the device layer), mmioblk:
 * the source must be a block device (upstream also accepts directories and character devices). */
static int handle_block(struct storage_set *s, struct storage_mount *m, const Grpc__Storage *st, ka_err *e)
{
    struct stat sb;
    if (st->source[0] != '/')
        return ka_fail(e, KA_INVALID_ARGUMENT, "%s storage source \"%.64s\" is not a device path", st->driver,
                       st->source);
    if (stat(st->source, &sb) < 0)
        return ka_fail_errno(e, errno, "%s storage source %s", st->driver, st->source);
    if (!S_ISBLK(sb.st_mode))
        return ka_fail(e, KA_INVALID_ARGUMENT, "%s storage source %s is not a block device", st->driver,
                       st->source);
    return mount_generic(s, m, st, st->source, e);
}

/* ---- watchable-bind ---- */

static struct storage_mount *find_mount(struct storage_set *s, const char *mount_point);
static struct storage_mount *mount_new(const Grpc__Storage *st, const char *mount_point, const char *base);

/* The watchable directory (relative to base) rel is strictly below, NULL if none. */
static const char *watchable_dir_of(const char *rel)
{
    static const char *const dirs[] = {WATCHABLE_DIR, WATCHABLE_PASSTHROUGH_DIR};
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        size_t len = strlen(dirs[i]);
        if (strncmp(rel, dirs[i], len) == 0 && rel[len] == '/')
            return dirs[i];
    }
    return NULL;
}

/* A reference on the tmpfs over base/dir, mounted by the first watchable-bind storage below it. */
static int watchable_tmpfs(struct storage_set *s, const char *dir, struct storage_mount **out, ka_err *e)
{
    char mp[PATH_MAX];
    snprintf(mp, sizeof(mp), "%s/%s", s->base, dir);
    struct storage_mount *u = find_mount(s, mp);
    if (u) {
        if (!u->internal)
            return ka_fail(e, KA_FAILED_PRECONDITION, "%s is used by a %s storage", mp, u->driver);
        u->refs++;
        *out = u;
        return 0;
    }
    Grpc__Storage st = GRPC__STORAGE__INIT;
    st.driver = (char *)"watchable-tmpfs";
    st.source = st.fstype = (char *)"tmpfs";
    st.mount_point = mp;
    if (!(u = mount_new(&st, mp, s->base)))
        return ka_fail_errno(e, ENOMEM, "storage");
    u->internal = true;
    struct mount_opts o;
    memset(&o, 0, sizeof(o));
    o.flags = MS_NOSUID | MS_NODEV;
    snprintf(o.data, sizeof(o.data), "mode=755");
    if (mount_target(s, u, &st, "tmpfs", "tmpfs", &o, e) < 0) {
        struct errs acc = {NULL, 0};
        mount_teardown(s, u, &acc);
        mount_free(u);
        return ka_wrap(e, "tmpfs on %s", mp);
    }
    list_add_tail(&s->mounts, &u->link);
    log_info(SUB, "mounted the watchable-bind tmpfs on %s", mp);
    *out = u;
    return 0;
}

/* The source is too large to copy: bind-mount it on the mount point (t) instead. */
static int watchable_bind(const struct storage_set *s, struct storage_mount *m, const struct target *t,
                          ka_err *e)
{
    enum target_kind kind;
    char src[FD_PATH_MAX], dst[FD_PATH_MAX];
    cleanup_close int sfd = open_bind_source(m->source, &kind, e);
    if (sfd < 0 || check_kind(s, t->fd, m->rel, kind, e) < 0)
        return -1;
    fd_path(src, sfd);
    fd_path(dst, t->fd);
    if (mount(src, dst, "none", MS_BIND, NULL) < 0)
        return ka_fail_errno(e, errno, "bind mount %s", m->source);
    m->mounted = true;
    log_info(SUB,
             "watchable storage at %s: %s has more than %d entries or %u bytes, bind-mounted (not watched)",
             m->mount_point, m->source, WATCHABLE_MAX_ENTRIES, WATCHABLE_MAX_BYTES);
    return 0;
}

/* The timer found the source too large now: bind-mount it and stop watching (retried at the next round if
 * that fails). */
static void on_watch_overflow(struct watchable *ws, struct watch *w, void *data)
{
    struct storage_set *s = container_of(ws, struct storage_set, watchable);
    struct storage_mount *m = data;
    cleanup_target struct target t = {-1, -1, NULL};
    ka_err e;
    if (target_open(s, m->rel, NULL, TARGET_ANY, &t, &e) < 0 || watchable_bind(s, m, &t, &e) < 0) {
        log_warn(SUB, "watchable storage at %s: %s", m->mount_point, e.msg);
        return;
    }
    watch_remove(ws, w);
    m->watch = NULL;
}

/* A copy of the source on the tmpfs over the watchable directory, synced every 2 s; a source too large to
 * copy is bind-mounted instead. Options are ignored, as upstream does. */
static int handle_watchable(struct storage_set *s, struct storage_mount *m, const Grpc__Storage *st,
                            ka_err *e)
{
    cleanup_target struct target t = {-1, -1, NULL};
    struct stat sb;
    if (!s->loop)
        return ka_fail(e, KA_FAILED_PRECONDITION, "watchable-bind storage needs the event loop");
    if (st->source[0] != '/')
        return ka_fail(e, KA_INVALID_ARGUMENT, "watchable-bind source '%s' is not an absolute path",
                       st->source);
    const char *dir = watchable_dir_of(m->rel);
    if (!dir)
        return ka_fail(e, KA_INVALID_ARGUMENT, "watchable-bind mount point %s is not below %s/%s or %s/%s",
                       m->mount_point, s->base, WATCHABLE_DIR, s->base, WATCHABLE_PASSTHROUGH_DIR);
    if (stat(st->source, &sb) < 0) {
        if (errno == ENOENT)
            return ka_fail(e, KA_NOT_FOUND, "watchable mount source not found: %s", st->source);
        return ka_fail_errno(e, errno, "watchable mount source %s", st->source);
    }
    if (!S_ISDIR(sb.st_mode) && !S_ISREG(sb.st_mode))
        return ka_fail(e, KA_INVALID_ARGUMENT, "watchable mount source %s is neither a directory nor a file",
                       st->source);
    if (watchable_tmpfs(s, dir, &m->under, e) < 0 ||
        target_open(s, m->rel, m, S_ISDIR(sb.st_mode) ? TARGET_DIR : TARGET_FILE, &t, e) < 0)
        return -1;
    int rc = watchable_sync(st->source, t.parent, t.name, e);
    if (rc < 0)
        return ka_wrap(e, "copy %s", st->source);
    if (rc == WATCHABLE_TOO_BIG)
        return watchable_bind(s, m, &t, e);
    m->watch = watch_add(&s->watchable, s->loop, st->source, t.parent, t.name, m->mount_point,
                         on_watch_overflow, m, e);
    return m->watch ? 0 : -1;
}

static bool is_bind(const Grpc__Storage *st)
{
    return strcmp(st->fstype, "bind") == 0 || has_option(st, "bind") || has_option(st, "rbind");
}

static storage_handler pick_handler(const Grpc__Storage *st, ka_err *e)
{
    const char *d = st->driver;
    if (strcmp(d, "ephemeral") == 0)
        return handle_ephemeral;
    if (strcmp(d, "bind") == 0 || ((!*d || strcmp(d, "local") == 0) && is_bind(st)))
        return handle_bind;
    if (strcmp(d, "local") == 0)
        return handle_local;
    if (strcmp(d, "blk") == 0 || strcmp(d, "mmioblk") == 0 || strcmp(d, "scsi") == 0 ||
        strcmp(d, "nvdimm") == 0)
        return handle_block;
    if (strcmp(d, "virtio-fs") == 0 || strcmp(d, "9p") == 0 || strcmp(d, "overlayfs") == 0)
        return handle_shared_fs;
    if (strcmp(d, "watchable-bind") == 0)
        return handle_watchable;
    if (!*d)
        ka_fail(e, KA_INVALID_ARGUMENT, "storage driver is empty");
    else
        ka_fail(e, KA_UNIMPLEMENTED, "storage driver %s is not supported yet", d);
    return NULL;
}

/* ---- the set ---- */

static struct storage_mount *find_mount(struct storage_set *s, const char *mount_point)
{
    list_for_each (pos, &s->mounts) {
        struct storage_mount *m = container_of(pos, struct storage_mount, link);
        if (strcmp(m->mount_point, mount_point) == 0)
            return m;
    }
    return NULL;
}

/* Which part of st differs from what the mount point was first set up with, NULL if none. */
static const char *mount_mismatch(const struct storage_mount *m, const Grpc__Storage *st)
{
    if (strcmp(m->driver, st->driver) != 0)
        return "driver";
    if (strcmp(m->source, st->source) != 0)
        return "source";
    if (strcmp(m->fstype, st->fstype) != 0)
        return "fstype";
    if (!strv_eq(m->n_options, m->options, st->n_options, st->options))
        return "options";
    if (m->has_fs_group != (st->fs_group != NULL))
        return "fs_group";
    if (st->fs_group &&
        (m->fs_gid != st->fs_group->group_id || m->fs_policy != (int)st->fs_group->group_change_policy))
        return "fs_group";
    return NULL;
}

static struct storage_mount *mount_new(const Grpc__Storage *st, const char *mount_point, const char *base)
{
    struct storage_mount *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    list_init(&m->link);
    m->refs = 1;
    m->mount_point = strdup(mount_point);
    m->driver = strdup(st->driver);
    m->source = strdup(st->source);
    m->fstype = strdup(st->fstype);
    m->options = strv_dup(st->n_options, st->options);
    m->n_options = m->options ? st->n_options : 0;
    if (!m->mount_point || !m->driver || !m->source || !m->fstype || !m->options) {
        mount_free(m);
        return NULL;
    }
    m->rel = m->mount_point + strlen(base) + 1;
    m->has_fs_group = st->fs_group != NULL;
    m->fs_gid = st->fs_group ? st->fs_group->group_id : 0;
    m->fs_policy = st->fs_group ? (int)st->fs_group->group_change_policy : 0;
    return m;
}

static int take_existing(struct storage_mount *m, const Grpc__Storage *st, ka_err *e)
{
    if (m->internal)
        return ka_fail(e, KA_FAILED_PRECONDITION, "mount point %s is the watchable-bind tmpfs",
                       m->mount_point);
    const char *diff = mount_mismatch(m, st);
    if (diff)
        return ka_fail(e, KA_FAILED_PRECONDITION,
                       "mount point %s is already used by a storage with a different %s", m->mount_point,
                       diff);
    m->refs++;
    return 0;
}

static int take_new(struct storage_set *s, const Grpc__Storage *st, const char *mp,
                    struct storage_mount **out, ka_err *e)
{
    storage_handler handler = pick_handler(st, e);
    if (!handler)
        return -1;
    struct storage_mount *m = mount_new(st, mp, s->base);
    if (!m)
        return ka_fail_errno(e, ENOMEM, "storage");
    if (handler(s, m, st, e) < 0) {
        struct errs acc = {NULL, 0};
        mount_teardown(s, m, &acc);
        mount_free(m);
        return -1;
    }
    list_add_tail(&s->mounts, &m->link);
    log_info(SUB, "mounted %s storage at %s", st->driver, m->mount_point);
    *out = m;
    return 0;
}

/* Mount st, or take one more reference on what is already at its mount point. */
static int take_one(struct storage_set *s, const Grpc__Storage *st, struct storage_mount **out, ka_err *e)
{
    char mp[PATH_MAX];
    const char *rel;
    if (normalize_mount_point(s->base, st->mount_point, mp, &rel, e) < 0)
        return -1;
    struct storage_mount *m = find_mount(s, mp);
    if (!m)
        return take_new(s, st, mp, out, e);
    if (take_existing(m, st, e) < 0)
        return -1;
    *out = m;
    return 0;
}

static void rollback(struct storage_set *s, struct storage_mount **taken, char **names, size_t n)
{
    struct errs acc = {NULL, 0};
    for (size_t i = n; i-- > 0;) {
        drop_ref(s, taken[i], &acc);
        free(names[i]);
    }
}

static int refs_reserve(struct storage_refs *refs, size_t n, ka_err *e)
{
    char **v = realloc(refs->mount_points, (refs->n + n) * sizeof(*v));
    if (!v)
        return ka_fail_errno(e, ENOMEM, "storage references");
    refs->mount_points = v;
    return 0;
}

static int add_all(struct storage_set *s, Grpc__Storage *const *storages, size_t n,
                   struct storage_mount **taken, char **names, ka_err *e)
{
    for (size_t i = 0; i < n; i++) {
        const Grpc__Storage *st = storages[i];
        if (take_one(s, st, &taken[i], e) < 0) {
            rollback(s, taken, names, i);
            return ka_wrap(e, "storage %zu (%s at %s)", i + 1, st->driver, st->mount_point);
        }
        if (!(names[i] = strdup(taken[i]->mount_point))) {
            rollback(s, taken, names, i + 1);
            return ka_fail_errno(e, ENOMEM, "storage %zu", i + 1);
        }
    }
    return 0;
}

void storage_set_init(struct storage_set *s, const char *base)
{
    list_init(&s->mounts);
    s->loop = NULL;
    watchable_init(&s->watchable);
    s->base = strdup(base);
    if (!s->base)
        return;
    size_t len = strlen(s->base);
    while (len > 0 && s->base[len - 1] == '/')
        s->base[--len] = '\0';
}

int storage_add(struct storage_set *s, Grpc__Storage *const *storages, size_t n, struct storage_refs *refs,
                ka_err *e)
{
    if (!s->base)
        return ka_fail(e, KA_FAILED_PRECONDITION, "storage set is not initialised");
    if (n == 0)
        return 0;
    for (size_t i = 0; refs->sandbox && i < n; i++)
        if (strcmp(storages[i]->driver, "watchable-bind") == 0)
            return ka_fail(
                e, KA_UNIMPLEMENTED,
                "storage %zu (watchable-bind at %s): storage driver watchable-bind is only supported "
                "for a container's storages",
                i + 1, storages[i]->mount_point);
    if (refs_reserve(refs, n, e) < 0)
        return -1;
    struct storage_mount **taken = calloc(n, sizeof(*taken));
    char **names = calloc(n, sizeof(*names));
    int rc =
        (!taken || !names) ? ka_fail_errno(e, ENOMEM, "storages") : add_all(s, storages, n, taken, names, e);
    if (rc == 0) {
        memcpy(refs->mount_points + refs->n, names, n * sizeof(*names));
        refs->n += n;
    }
    free(taken);
    free(names);
    return rc;
}

int storage_set_options(struct storage_set *s, const char *mount_point, char *const *options, size_t n,
                        ka_err *e)
{
    struct storage_mount *m = find_mount(s, mount_point);
    if (!m)
        return ka_fail(e, KA_NOT_FOUND, "no storage is mounted at %s", mount_point);
    char **keep = calloc(n ? n : 1, sizeof(*keep));
    size_t k = 0;
    for (size_t i = 0; keep && i < n; i++)
        if (strcmp(options[i], "remount") != 0)
            keep[k++] = options[i];
    char **copy = keep ? strv_dup(k, keep) : NULL;
    free(keep);
    if (!copy)
        return ka_fail_errno(e, ENOMEM, "storage options");
    strv_free(m->n_options, m->options);
    m->options = copy;
    m->n_options = k;
    return 0;
}

int storage_release(struct storage_set *s, struct storage_refs *refs, ka_err *e)
{
    struct errs acc = {e, 0};
    for (size_t i = refs->n; i-- > 0;) {
        struct storage_mount *m = find_mount(s, refs->mount_points[i]);
        if (m)
            drop_ref(s, m, &acc);
        else
            log_warn(SUB, "storage at %s was already released", refs->mount_points[i]);
        free(refs->mount_points[i]);
    }
    free(refs->mount_points);
    refs->mount_points = NULL;
    refs->n = 0;
    return errs_finish(&acc);
}

int storage_set_release_all(struct storage_set *s, ka_err *e)
{
    struct errs acc = {e, 0};
    while (!list_empty(&s->mounts)) {
        struct storage_mount *m = container_of(s->mounts.prev, struct storage_mount, link);
        m->refs = 1;
        drop_ref(s, m, &acc);
    }
    free(s->base);
    s->base = NULL;
    return errs_finish(&acc);
}
