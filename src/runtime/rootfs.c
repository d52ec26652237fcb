/* Container root file system (spec 4.4, 4.7): option parsing, validation, mounts resolved inside the rootfs.
 */
#include "rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "../util/fs.h"
#include "../util/log.h"
#include "../util/mount_opts.h"

#define MOUNT_DATA_MAX 4096 /* mount(2) copies at most one page of data */
#define WALK_DEPTH     256
#define WALK_LINKS     40
#define FD_PATH_LEN    32
#define PROP_MASK      (MS_PRIVATE | MS_SHARED | MS_SLAVE | MS_UNBINDABLE)
#define ATIME_MASK     (MS_NOATIME | MS_RELATIME | MS_STRICTATIME)

/* ---- mount options ---- */

static int parse_words(char **opts, size_t n, struct mnt_flags *f, char *data, size_t datasz, ka_err *e)
{
    memset(f, 0, sizeof(*f));
    if (data && datasz)
        data[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *w = opts[i];
        if (!w || !*w)
            continue;
        const struct mnt_word *k = mnt_word_find(w, strlen(w));
        if (k)
            mnt_flags_apply(f, k);
        else if (!data || mnt_data_append(data, datasz, w, strlen(w), e) < 0)
            return data ? -1 : ka_fail(e, KA_INVALID_ARGUMENT, "unknown mount option '%s'", w);
    }
    return 0;
}

int mount_options_parse(char **opts, size_t n_opts, unsigned long *flags, unsigned long *propagation,
                        char *data, size_t datasz, ka_err *e)
{
    struct mnt_flags f;
    if (parse_words(opts, n_opts, &f, data, datasz, e) < 0)
        return -1;
    *flags = f.set;
    if (propagation)
        *propagation = f.prop;
    else
        *flags |= f.prop;
    return 0;
}

/* ---- paths ---- */

static bool has_dotdot(const char *p)
{
    for (const char *s = p; *s;) {
        const char *c = s;
        while (*s && *s != '/')
            s++;
        if (s - c == 2 && c[0] == '.' && c[1] == '.')
            return true;
        while (*s == '/')
            s++;
    }
    return false;
}

/* Lexical clean of an absolute path: "//" collapsed, "." dropped, no trailing '/'. */
static int clean_path(const char *in, char *out, size_t outsz)
{
    size_t o = 0;
    for (const char *p = in; *p;) {
        while (*p == '/')
            p++;
        const char *s = p;
        while (*p && *p != '/')
            p++;
        size_t n = (size_t)(p - s);
        if (n == 0 || (n == 1 && s[0] == '.'))
            continue;
        if (o + n + 2 > outsz)
            return -1;
        out[o++] = '/';
        memcpy(out + o, s, n);
        o += n;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    return 0;
}

static bool path_under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (strcmp(dir, "/") == 0)
        return path[0] == '/';
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Absolute, no ".." component, cleaned into out. */
static int check_abs(const char *what, const char *p, char *out, size_t outsz, ka_err *e)
{
    if (!p || p[0] != '/' || has_dotdot(p) || clean_path(p, out, outsz) < 0)
        return ka_fail(e, KA_INVALID_ARGUMENT, "the %s %s is invalid", what, p ? p : "(null)");
    return 0;
}

static void fd_path(int fd, char buf[FD_PATH_LEN])
{
    snprintf(buf, FD_PATH_LEN, "/proc/self/fd/%d", fd);
}

/* ---- resolution inside the rootfs ---- */

enum resolve_mode {
    RES_EXISTING, /* fail with ENOENT when missing */
    RES_MKDIR,    /* create missing components as directories */
    RES_MKFILE,   /* missing parents as directories, the last one as an empty file */
};

struct walker {
    int fd[WALK_DEPTH + 1]; /* fd[0] is the rootfs (borrowed) */
    int depth;
    char rest[2 * PATH_MAX]; /* what remains to walk, from off */
    size_t off;
    int links;
};

static void walker_pop(struct walker *w)
{
    if (w->depth > 0)
        close(w->fd[w->depth--]);
}

static void walker_reset(struct walker *w)
{
    while (w->depth > 0)
        walker_pop(w);
}

/* Next component of rest into comp; false at the end. */
static int walker_next(struct walker *w, char comp[NAME_MAX + 1], bool *last)
{
    const char *p = w->rest + w->off;
    while (*p == '/')
        p++;
    if (!*p)
        return 0;
    const char *s = p;
    while (*p && *p != '/')
        p++;
    if ((size_t)(p - s) > NAME_MAX)
        return -ENAMETOOLONG;
    memcpy(comp, s, (size_t)(p - s));
    comp[p - s] = '\0';
    w->off = (size_t)(p - w->rest);
    while (*p == '/')
        p++;
    *last = *p == '\0';
    return 1;
}

/* A symlink: rest := target + "/" + rest; absolute targets restart at the rootfs. */
static int walker_follow(struct walker *w, int linkfd)
{
    char target[PATH_MAX], tmp[2 * PATH_MAX];
    if (++w->links > WALK_LINKS)
        return -ELOOP;
    ssize_t n = readlinkat(linkfd, "", target, sizeof(target) - 1);
    if (n < 0)
        return -errno;
    target[n] = '\0';
    if (target[0] == '/')
        walker_reset(w);
    int r = snprintf(tmp, sizeof(tmp), "%s/%s", target, w->rest + w->off);
    if (r < 0 || (size_t)r >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(w->rest, tmp, (size_t)r + 1);
    w->off = 0;
    return 0;
}

static int create_entry(int dirfd, const char *name, bool file)
{
    if (!file)
        return mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST ? -errno : 0;
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0644);
    if (fd < 0)
        return errno == EEXIST ? 0 : -errno;
    close(fd);
    return 0;
}

/* One component: open it without following, create it if asked, expand symlinks textually. */
static int walker_step(struct walker *w, const char *comp, bool last, enum resolve_mode mode)
{
    int cur = w->fd[w->depth];
    int fd = openat(cur, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && mode != RES_EXISTING) {
        int r = create_entry(cur, comp, last && mode == RES_MKFILE);
        if (r < 0)
            return r;
        fd = openat(cur, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    if (S_ISLNK(st.st_mode)) {
        int r = walker_follow(w, fd);
        close(fd);
        return r;
    }
    int err = !last && !S_ISDIR(st.st_mode) ? ENOTDIR : w->depth == WALK_DEPTH ? ENAMETOOLONG : 0;
    if (err) {
        close(fd);
        return -err;
    }
    w->fd[++w->depth] = fd;
    return 0;
}

/* Component-by-component walk relative to rootfd: ".." never climbs above the rootfs, symlinks are read and
 * re-walked from the rootfs (absolute) or the current directory (relative), and every open is a single
 * name with O_NOFOLLOW, so nothing can redirect the walk outside the rootfs. Returns an O_PATH fd or -errno.
 */
static int resolve_walk(int rootfd, const char *path, enum resolve_mode mode)
{
    struct walker *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->fd[0] = rootfd;
    int rc = 0;
    if (snprintf(w->rest, sizeof(w->rest), "%s", path) >= (int)sizeof(w->rest))
        rc = -ENAMETOOLONG;
    char comp[NAME_MAX + 1];
    bool last = false;
    while (rc == 0 && (rc = walker_next(w, comp, &last)) > 0) {
        rc = 0;
        if (strcmp(comp, "..") == 0)
            walker_pop(w);
        else if (strcmp(comp, ".") != 0)
            rc = walker_step(w, comp, last, mode);
    }
    if (rc == 0 && w->depth > 0) {
        rc = w->fd[w->depth--];
    } else if (rc == 0) {
        rc = openat(rootfd, ".", O_PATH | O_CLOEXEC);
        rc = rc < 0 ? -errno : rc;
    }
    walker_reset(w);
    free(w);
    return rc;
}

/* Resolve path inside the rootfs: openat2(RESOLVE_IN_ROOT) first, the creating walk when something is missing
 * (or openat2 is unavailable). Returns an O_PATH fd or -errno. */
static int resolve(int rootfd, const char *path, enum resolve_mode mode)
{
    const char *rel = path;
    while (*rel == '/')
        rel++;
    struct open_how how = {
        .flags = O_PATH | O_CLOEXEC,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, rootfd, *rel ? rel : ".", &how, sizeof(how));
    if (fd >= 0)
        return fd;
    int err = errno;
    if ((err == ENOENT && mode == RES_EXISTING) ||
        (err != ENOENT && err != EAGAIN && err != ENOSYS && err != E2BIG))
        return -err;
    return resolve_walk(rootfd, path, mode);
}

/* ---- mount primitives on O_PATH fds ---- */

static int mount_fd(const char *src, int fd, const char *type, unsigned long flags, const char *data)
{
    char p[FD_PATH_LEN];
    fd_path(fd, p);
    return mount(src, p, type, flags, data) < 0 ? -errno : 0;
}

/* Per-mount flags of the mount fd is on, the ones a bind remount must keep (locked in a user ns). */
static unsigned long mnt_flags_of(int fd)
{
    static const struct {
        unsigned long st, ms;
    } map[] = {
        {ST_NOSUID, MS_NOSUID},   {ST_NODEV, MS_NODEV},           {ST_NOEXEC, MS_NOEXEC},
        {ST_NOATIME, MS_NOATIME}, {ST_NODIRATIME, MS_NODIRATIME}, {ST_RELATIME, MS_RELATIME},
    };
    struct statvfs sv;
    unsigned long out = 0;
    if (fstatvfs(fd, &sv) < 0)
        return 0;
    for (size_t i = 0; i < ARRAY_SIZE(map); i++)
        if (sv.f_flag & map[i].st)
            out |= map[i].ms;
    return out;
}

/* Bind remount of the mount now on top of path (re-resolved: an fd taken before the mount names the lower
 * one), keeping nosuid/nodev/noexec/atime flags the options do not explicitly clear or replace. */
static int remount_path(int rootfd, const char *path, unsigned long flags, unsigned long cleared, ka_err *e)
{
    cleanup_close int fd = resolve(rootfd, path, RES_EXISTING);
    if (fd < 0)
        return ka_fail_errno(e, -fd, "resolve %s", path);
    unsigned long keep = mnt_flags_of(fd) & ~cleared;
    if (flags & ATIME_MASK)
        keep &= ~ATIME_MASK;
    unsigned long f = (flags & ~(PROP_MASK | MS_REC | MS_BIND | MS_REMOUNT)) | keep;
    int r = mount_fd(NULL, fd, NULL, MS_BIND | MS_REMOUNT | f, NULL);
    return r < 0 ? ka_fail_errno(e, -r, "remount %s", path) : 0;
}

static int propagate_path(int rootfd, const char *path, unsigned long prop, ka_err *e)
{
    if (!prop)
        return 0;
    cleanup_close int fd = resolve(rootfd, path, RES_EXISTING);
    if (fd < 0)
        return ka_fail_errno(e, -fd, "resolve %s", path);
    int r = mount_fd(NULL, fd, NULL, prop, NULL);
    return r < 0 ? ka_fail_errno(e, -r, "set propagation of %s", path) : 0;
}

/* ---- mountinfo ---- */

struct mntinfo {
    char *root;
    char *mountpoint;
    char *fstype;
    bool shared;
};

static void unescape_octal(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' &&
            s[3] <= '7') {
            *o++ = (char)(((s[1] - '0') << 6) | ((s[2] - '0') << 3) | (s[3] - '0'));
            s += 3;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

static int parse_mountinfo_line(char *line, struct mntinfo *mi)
{
    char *save = NULL, *f[6];
    for (int i = 0; i < 6; i++)
        if (!(f[i] = strtok_r(i ? NULL : line, " ", &save)))
            return -1;
    mi->root = f[3];
    mi->mountpoint = f[4];
    mi->shared = false;
    char *t;
    while ((t = strtok_r(NULL, " ", &save)) && strcmp(t, "-") != 0)
        mi->shared |= strncmp(t, "shared:", 7) == 0;
    if (!t || !(mi->fstype = strtok_r(NULL, " ", &save)))
        return -1;
    unescape_octal(mi->root);
    unescape_octal(mi->mountpoint);
    return 0;
}

typedef int (*mountinfo_fn)(const struct mntinfo *mi, void *arg, ka_err *e);

/* Calls fn for every line of our mountinfo (read in one go, so fn may change the mount table). */
static int mountinfo_each(mountinfo_fn fn, void *arg, ka_err *e)
{
    cleanup_free char *buf = NULL;
    if (fs_read_file("/proc/self/mountinfo", &buf, NULL, e) < 0)
        return -1;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        struct mntinfo mi;
        if (parse_mountinfo_line(line, &mi) == 0 && fn(&mi, arg, e) < 0)
            return -1;
    }
    return 0;
}

/* ---- validation ---- */

struct spec_mount {
    const Grpc__Mount *m;
    char dest[PATH_MAX];
    struct mnt_flags f;
    bool bind;
    char data[MOUNT_DATA_MAX];
};

static const char *const proc_bind_ok[] = {
    "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat",
    "/proc/swaps",   "/proc/uptime",    "/proc/loadavg", "/proc/net/dev",
};

static bool proc_whitelisted(const char *dest)
{
    for (size_t i = 0; i < ARRAY_SIZE(proc_bind_ok); i++)
        if (strcmp(dest, proc_bind_ok[i]) == 0)
            return true;
    return false;
}

/* Bind mounts into /proc: only the whitelist, or /proc itself from a procfs source. */
static int check_proc_bind(const struct spec_mount *sm, ka_err *e)
{
    if (!path_under(sm->dest, "/proc") || proc_whitelisted(sm->dest))
        return 0;
    struct statfs sfs;
    if (strcmp(sm->dest, "/proc") == 0 && statfs(sm->m->source, &sfs) == 0 && sfs.f_type == PROC_SUPER_MAGIC)
        return 0;
    return ka_fail(e, KA_INVALID_ARGUMENT, "%s cannot be mounted to %s because it is inside /proc",
                   sm->m->source, sm->dest);
}

static bool valid_fstype(const char *t)
{
    if (!*t)
        return false;
    for (; *t; t++)
        if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') || (*t >= '0' && *t <= '9') || *t == '.' ||
              *t == '_' || *t == '-'))
            return false;
    return true;
}

/* Destination, type and options of one spec mount, parsed into sm. */
static int check_mount(const Grpc__Mount *m, struct spec_mount *sm, ka_err *e)
{
    sm->m = m;
    if (check_abs("mount destination", m->destination, sm->dest, sizeof(sm->dest), e) < 0)
        return -1;
    if (parse_words(m->options, m->n_options, &sm->f, sm->data, sizeof(sm->data), e) < 0)
        return ka_wrap(e, "mount %s", sm->dest);
    const char *type = m->type ? m->type : "";
    sm->bind = (sm->f.set & MS_BIND) || strcmp(type, "bind") == 0;
    if (!sm->bind && !valid_fstype(type))
        return ka_fail(e, KA_INVALID_ARGUMENT, "mount %s: invalid type '%s'", sm->dest, type);
    if (sm->bind && (!m->source || m->source[0] != '/'))
        return ka_fail(e, KA_INVALID_ARGUMENT, "mount %s: bind source '%s' is not absolute", sm->dest,
                       m->source ? m->source : "");
    return sm->bind ? check_proc_bind(sm, e) : 0;
}

static int device_type(const char *t, mode_t *fmt)
{
    if (strcmp(t, "c") == 0 || strcmp(t, "u") == 0)
        *fmt = S_IFCHR;
    else if (strcmp(t, "b") == 0)
        *fmt = S_IFBLK;
    else if (strcmp(t, "p") == 0)
        *fmt = S_IFIFO;
    else
        return -1;
    return 0;
}

static int check_device(const Grpc__LinuxDevice *d, char *clean, size_t cleansz, ka_err *e)
{
    mode_t fmt;
    if (!d->path || d->path[0] != '/' || has_dotdot(d->path) || clean_path(d->path, clean, cleansz) < 0 ||
        !path_under(clean, "/dev") || strcmp(clean, "/dev") == 0)
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid spec: device path %s is not under /dev",
                       d->path ? d->path : "");
    if (!d->type || device_type(d->type, &fmt) < 0)
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid spec: device %s has invalid type '%s'", d->path,
                       d->type ? d->type : "");
    if (d->major < 0 || d->major > 0xfff || d->minor < 0 || d->minor > 0xfffff)
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid spec: device %s has invalid numbers %lld:%lld",
                       d->path, (long long)d->major, (long long)d->minor);
    return 0;
}

static bool has_ns(const Grpc__Spec *spec, const char *type)
{
    if (!spec->linux)
        return false;
    for (size_t i = 0; i < spec->linux->n_namespaces; i++)
        if (spec->linux->namespaces[i]->type && strcmp(spec->linux->namespaces[i]->type, type) == 0)
            return true;
    return false;
}

/* Key syntax: dotted names, nothing that could walk out of /proc/sys once dots become slashes. */
static bool sysctl_key_ok(const char *k)
{
    if (!k || !*k || *k == '.' || k[strlen(k) - 1] == '.' || strstr(k, ".."))
        return false;
    for (; *k; k++)
        if (*k == '/' || *k <= ' ' || *k == 0x7f)
            return false;
    return true;
}

static int check_sysctl(const Grpc__Spec *spec, const char *key, ka_err *e)
{
    static const char *const ipc_keys[] = {"kernel.msgmax", "kernel.msgmnb",         "kernel.msgmni",
                                           "kernel.sem",    "kernel.shmall",         "kernel.shmmax",
                                           "kernel.shmmni", "kernel.shm_rmid_forced"};
    if (!sysctl_key_ok(key))
        return ka_fail(e, KA_INVALID_ARGUMENT, "Sysctl config contains invalid settings: '%s'",
                       key ? key : "");
    bool ipc = strncmp(key, "fs.mqueue.", 10) == 0;
    for (size_t i = 0; i < ARRAY_SIZE(ipc_keys); i++)
        ipc |= strcmp(key, ipc_keys[i]) == 0;
    if (ipc && has_ns(spec, "ipc"))
        return 0;
    if (ipc)
        return ka_fail(e, KA_INVALID_ARGUMENT, "sysctl %s is not allowed without a new ipc namespace", key);
    if (strncmp(key, "net.", 4) == 0)
        return 0;
    if (has_ns(spec, "uts") && strcmp(key, "kernel.domainname") == 0)
        return 0;
    if (strcmp(key, "kernel.hostname") == 0)
        return ka_fail(e, KA_INVALID_ARGUMENT,
                       "sysctl kernel.hostname is not allowed: use the spec hostname");
    return ka_fail(e, KA_INVALID_ARGUMENT, "Sysctl config contains invalid settings: %s", key);
}

static int check_namespaces(const Grpc__Spec *spec, ka_err *e)
{
    static const char *const known[] = {"mount", "ipc", "uts", "pid", "network", "cgroup", "user"};
    const Grpc__Linux *l = spec->linux;
    for (size_t i = 0; i < l->n_namespaces; i++) {
        const char *t = l->namespaces[i]->type ? l->namespaces[i]->type : "";
        bool ok = false;
        for (size_t k = 0; k < ARRAY_SIZE(known); k++)
            ok |= strcmp(t, known[k]) == 0;
        if (!ok)
            return ka_fail(e, KA_INVALID_ARGUMENT, "invalid namespace type '%s'", t);
    }
    if (spec->hostname && *spec->hostname && !has_ns(spec, "uts"))
        return ka_fail(e, KA_INVALID_ARGUMENT, "hostname requires a uts namespace");
    if ((l->n_maskedpaths || l->n_readonlypaths) && !has_ns(spec, "mount"))
        return ka_fail(e, KA_INVALID_ARGUMENT, "masked and readonly paths require a mount namespace");
    return 0;
}

static int propagation_flags(const char *s, unsigned long *out)
{
    if (!s || !*s) {
        *out = MS_SLAVE;
        return 0;
    }
    const struct mnt_word *k = mnt_word_find(s, strlen(s));
    if (!k || !k->propagation)
        return -1;
    *out = k->flag & ~(unsigned long)MS_REC;
    return 0;
}

static int check_linux(const Grpc__Spec *spec, ka_err *e)
{
    const Grpc__Linux *l = spec->linux;
    char clean[PATH_MAX];
    unsigned long prop;
    if (check_namespaces(spec, e) < 0)
        return -1;
    if (propagation_flags(l->rootfspropagation, &prop) < 0)
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid rootfs propagation '%s'", l->rootfspropagation);
    for (size_t i = 0; i < l->n_devices; i++)
        if (check_device(l->devices[i], clean, sizeof(clean), e) < 0)
            return -1;
    for (size_t i = 0; i < l->n_maskedpaths; i++)
        if (check_abs("masked path", l->maskedpaths[i], clean, sizeof(clean), e) < 0)
            return -1;
    for (size_t i = 0; i < l->n_readonlypaths; i++)
        if (check_abs("readonly path", l->readonlypaths[i], clean, sizeof(clean), e) < 0)
            return -1;
    for (size_t i = 0; i < l->n_sysctl; i++)
        if (check_sysctl(spec, l->sysctl[i]->key, e) < 0)
            return -1;
    return 0;
}

int rootfs_validate(const Grpc__Spec *spec, ka_err *e)
{
    if (!spec || !spec->linux)
        return ka_fail(e, KA_INVALID_ARGUMENT, "the spec has no linux section");
    if (!spec->root || !spec->root->path || spec->root->path[0] != '/')
        return ka_fail(e, KA_INVALID_ARGUMENT, "rootfs: the root path must be absolute");
    struct spec_mount *sm = malloc(sizeof(*sm));
    if (!sm)
        return ka_fail_errno(e, ENOMEM, "validate");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < spec->n_mounts; i++)
        rc = check_mount(spec->mounts[i], sm, e);
    free(sm);
    return rc < 0 ? -1 : check_linux(spec, e);
}

/* ---- prepare: propagation and the rootfs bind ---- */

struct rootfs_state {
    const struct rootfs_ctx *ctx;
    int rootfd;
    bool dev_bind;
};

static int set_root_propagation(const Grpc__Spec *spec, ka_err *e)
{
    unsigned long prop;
    const char *s = spec && spec->linux ? spec->linux->rootfspropagation : NULL;
    if (propagation_flags(s, &prop) < 0)
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid rootfs propagation '%s'", s);
    if (mount(NULL, "/", NULL, MS_REC | prop, NULL) < 0)
        return ka_fail_errno(e, errno, "set propagation of /");
    return 0;
}

struct parent_mount {
    const char *rootfs;
    char best[PATH_MAX];
    bool shared;
};

static int find_parent_mount(const struct mntinfo *mi, void *arg, ka_err *e)
{
    struct parent_mount *pm = arg;
    (void)e;
    size_t n = strlen(mi->mountpoint);
    if (!path_under(pm->rootfs, mi->mountpoint) || n < strlen(pm->best) || n >= sizeof(pm->best))
        return 0;
    memcpy(pm->best, mi->mountpoint, n + 1);
    pm->shared = mi->shared;
    return 0;
}

/* pivot_root refuses a shared parent mount of the new root. */
static int make_parent_private(const char *rootfs, ka_err *e)
{
    struct parent_mount pm = {.rootfs = rootfs};
    if (mountinfo_each(find_parent_mount, &pm, e) < 0)
        return -1;
    if (pm.shared && mount(NULL, pm.best, NULL, MS_PRIVATE, NULL) < 0)
        return ka_fail_errno(e, errno, "make %s private", pm.best);
    return 0;
}

static int bind_rootfs(const char *rootfs, ka_err *e)
{
    if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
        return ka_fail_errno(e, errno, "bind rootfs %s", rootfs);
    return 0;
}

/* ---- prepare: spec mounts ---- */

static int mount_bind(struct rootfs_state *st, struct spec_mount *sm, ka_err *e)
{
    struct stat sst;
    if (stat(sm->m->source, &sst) < 0)
        return ka_fail_errno(e, errno, "bind source %s", sm->m->source);
    cleanup_close int fd = resolve(st->rootfd, sm->dest, S_ISDIR(sst.st_mode) ? RES_MKDIR : RES_MKFILE);
    if (fd < 0)
        return ka_fail_errno(e, -fd, "resolve %s in the rootfs", sm->dest);
    struct statfs tfs;
    if (fstatfs(fd, &tfs) == 0 && tfs.f_type == PROC_SUPER_MAGIC && !proc_whitelisted(sm->dest))
        return ka_fail(e, KA_INVALID_ARGUMENT, "%s resolves inside /proc and cannot be bind-mounted",
                       sm->dest);
    int r = mount_fd(sm->m->source, fd, NULL, MS_BIND | (sm->f.set & MS_REC), NULL);
    if (r < 0)
        return ka_fail_errno(e, -r, "bind %s", sm->m->source);
    if ((sm->f.set & ~(MS_BIND | MS_REC | MS_REMOUNT)) &&
        remount_path(st->rootfd, sm->dest, sm->f.set, sm->f.cleared, e) < 0)
        return -1;
    return propagate_path(st->rootfd, sm->dest, sm->f.prop, e);
}

static int mount_fs(struct rootfs_state *st, struct spec_mount *sm, ka_err *e)
{
    const char *type = sm->m->type;
    cleanup_close int fd = resolve(st->rootfd, sm->dest, RES_MKDIR);
    if (fd < 0)
        return ka_fail_errno(e, -fd, "resolve %s in the rootfs", sm->dest);
    struct stat tst;
    if ((strcmp(type, "proc") == 0 || strcmp(type, "sysfs") == 0) &&
        (fstat(fd, &tst) < 0 || !S_ISDIR(tst.st_mode)))
        return ka_fail(e, KA_INVALID_ARGUMENT, "%s is not a directory", sm->dest);
    const char *src = sm->m->source && *sm->m->source ? sm->m->source : type;
    int r = mount_fd(src, fd, type, sm->f.set & ~MS_REC, sm->data[0] ? sm->data : NULL);
    if (r < 0)
        return ka_fail_errno(e, -r, "mount %s", type);
    return propagate_path(st->rootfd, sm->dest, sm->f.prop, e);
}

struct cgroup2_find {
    char mountpoint[PATH_MAX];
};

static int find_cgroup2(const struct mntinfo *mi, void *arg, ka_err *e)
{
    struct cgroup2_find *f = arg;
    (void)e;
    if (!f->mountpoint[0] && strcmp(mi->fstype, "cgroup2") == 0 && strcmp(mi->root, "/") == 0)
        snprintf(f->mountpoint, sizeof(f->mountpoint), "%s", mi->mountpoint);
    return 0;
}

/* The agent's own cgroup2 mount: /sys/fs/cgroup on a v2 agent, the unified mount of a hybrid one. */
static int agent_cgroup2(const struct rootfs_ctx *ctx, char *out, size_t outsz, ka_err *e)
{
    struct cgroup2_find f = {.mountpoint = ""};
    if (ctx->cgroup_v2) {
        snprintf(out, outsz, "/sys/fs/cgroup");
        return 0;
    }
    if (mountinfo_each(find_cgroup2, &f, e) < 0)
        return -1;
    if (!f.mountpoint[0])
        return ka_fail(e, KA_FAILED_PRECONDITION, "the agent has no cgroup2 mount to bind");
    snprintf(out, outsz, "%s", f.mountpoint);
    return 0;
}

/* cgroup2: a fresh mount only inside a new cgroup ns (outside one, even an option-less mount reconfigures
 * the host's cgroup2 superblock, e.g. drops nsdelegate); otherwise a bind of the agent's view. */
static int mount_cgroup2(struct rootfs_state *st, struct spec_mount *sm, ka_err *e)
{
    cleanup_close int fd = resolve(st->rootfd, sm->dest, RES_MKDIR);
    if (fd < 0)
        return ka_fail_errno(e, -fd, "resolve %s in the rootfs", sm->dest);
    unsigned long fl = sm->f.set & ~(MS_BIND | MS_REC | MS_REMOUNT);
    if (st->ctx->cgroup_ns) {
        int r = mount_fd("cgroup2", fd, "cgroup2", fl, sm->data[0] ? sm->data : NULL);
        return r < 0 ? ka_fail_errno(e, -r, "mount cgroup2") : 0;
    }
    char src[PATH_MAX];
    if (agent_cgroup2(st->ctx, src, sizeof(src), e) < 0)
        return -1;
    int r = mount_fd(src, fd, NULL, MS_BIND | MS_REC, NULL);
    if (r < 0)
        return ka_fail_errno(e, -r, "bind %s", src);
    return remount_path(st->rootfd, sm->dest, fl | MS_NOSUID | MS_NODEV | MS_NOEXEC, sm->f.cleared, e);
}

static bool valid_cgroup_name(const char *n)
{
    return n && *n && !strchr(n, '/') && strcmp(n, ".") != 0 && strcmp(n, "..") != 0;
}

/* "cpu,cpuacct": cpu -> cpu,cpuacct and cpuacct -> cpu,cpuacct next to the hierarchy. */
static int cgroup_comount_links(int dirfd, const char *name, ka_err *e)
{
    if (!strchr(name, ','))
        return 0;
    char buf[NAME_MAX + 1];
    snprintf(buf, sizeof(buf), "%s", name);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (symlinkat(name, dirfd, t) < 0 && errno != EEXIST)
            return ka_fail_errno(e, errno, "symlink %s -> %s", t, name);
    return 0;
}

/* One v1 hierarchy: the container's cgroup dir bound at <dest>/<name>. */
static int cgroup_v1_one(struct rootfs_state *st, struct spec_mount *sm, int tmpfd, size_t i, ka_err *e)
{
    const char *name = st->ctx->cgroup_names[i], *dir = st->ctx->cgroup_dirs[i];
    if (!valid_cgroup_name(name) || !dir)
        return ka_fail(e, KA_INTERNAL, "invalid cgroup hierarchy name '%s'", name ? name : "");
    if (mkdirat(tmpfd, name, 0755) < 0 && errno != EEXIST)
        return ka_fail_errno(e, errno, "mkdir %s/%s", sm->dest, name);
    cleanup_close int fd = openat(tmpfd, name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ka_fail_errno(e, errno, "open %s/%s", sm->dest, name);
    int r = mount_fd(dir, fd, NULL, MS_BIND | MS_REC, NULL);
    if (r < 0)
        return ka_fail_errno(e, -r, "bind %s", dir);
    char sub[PATH_MAX];
    if (snprintf(sub, sizeof(sub), "%s/%s", sm->dest, name) >= (int)sizeof(sub))
        return ka_fail(e, KA_INVALID_ARGUMENT, "%s/%s: path too long", sm->dest, name);
    unsigned long fl = (sm->f.set | MS_NOSUID | MS_NODEV | MS_NOEXEC) & ~(MS_BIND | MS_REC | MS_REMOUNT);
    if (strcmp(name, "systemd") == 0)
        fl &= ~(unsigned long)MS_RDONLY;
    if (remount_path(st->rootfd, sub, fl, sm->f.cleared, e) < 0)
        return -1;
    return cgroup_comount_links(tmpfd, name, e);
}

/* cgroup v1: a tmpfs at dest holding one bind per hierarchy, read-only at the end if asked. */
static int mount_cgroup_v1(struct rootfs_state *st, struct spec_mount *sm, ka_err *e)
{
    cleanup_close int fd = resolve(st->rootfd, sm->dest, RES_MKDIR);
    if (fd < 0)
        return ka_fail_errno(e, -fd, "resolve %s in the rootfs", sm->dest);
    int r = mount_fd("tmpfs", fd, "tmpfs", MS_NOEXEC | MS_NOSUID | MS_NODEV, "mode=755");
    if (r < 0)
        return ka_fail_errno(e, -r, "mount tmpfs");
    cleanup_close int tmpfd = resolve(st->rootfd, sm->dest, RES_EXISTING);
    if (tmpfd < 0)
        return ka_fail_errno(e, -tmpfd, "resolve %s", sm->dest);
    for (size_t i = 0; i < st->ctx->n_cgroups; i++)
        if (cgroup_v1_one(st, sm, tmpfd, i, e) < 0)
            return -1;
    if ((sm->f.set & MS_RDONLY) &&
        remount_path(st->rootfd, sm->dest, MS_RDONLY | MS_NOEXEC | MS_NOSUID | MS_NODEV, 0, e) < 0)
        return -1;
    return propagate_path(st->rootfd, sm->dest, sm->f.prop, e);
}

static int mount_one(struct rootfs_state *st, const Grpc__Mount *m, struct spec_mount *sm, ka_err *e)
{
    if (check_mount(m, sm, e) < 0)
        return -1;
    if (strcmp(sm->dest, "/dev") == 0) {
        sm->f.set &= ~(unsigned long)MS_RDONLY; /* nodes are created below; ro is applied in finish */
        st->dev_bind = sm->bind;
    }
    const char *type = m->type ? m->type : "";
    int rc;
    if (sm->bind)
        rc = mount_bind(st, sm, e);
    else if (strcmp(type, "cgroup2") == 0 || (strcmp(type, "cgroup") == 0 && st->ctx->cgroup_v2))
        rc = mount_cgroup2(st, sm, e);
    else if (strcmp(type, "cgroup") == 0)
        rc = mount_cgroup_v1(st, sm, e);
    else
        rc = mount_fs(st, sm, e);
    return rc < 0 ? ka_wrap(e, "mount %s", sm->dest) : 0;
}

static int mount_all(struct rootfs_state *st, ka_err *e)
{
    const Grpc__Spec *spec = st->ctx->spec;
    struct spec_mount *sm = malloc(sizeof(*sm));
    if (!sm)
        return ka_fail_errno(e, ENOMEM, "mounts");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < spec->n_mounts; i++)
        rc = mount_one(st, spec->mounts[i], sm, e);
    free(sm);
    return rc;
}

/* ---- prepare: /dev ---- */

static int dev_symlinks(int devfd, ka_err *e)
{
    static const char *const links[][2] = {
        {"/proc/self/fd", "fd"},
        {"/proc/self/fd/0", "stdin"},
        {"/proc/self/fd/1", "stdout"},
        {"/proc/self/fd/2", "stderr"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(links); i++)
        if (symlinkat(links[i][0], devfd, links[i][1]) < 0 && errno != EEXIST)
            return ka_fail_errno(e, errno, "symlink /dev/%s", links[i][1]);
    if (access("/proc/kcore", F_OK) == 0 && symlinkat("/proc/kcore", devfd, "kcore") < 0 && errno != EEXIST)
        return ka_fail_errno(e, errno, "symlink /dev/kcore");
    return 0;
}

struct dev_node {
    const char *name; /* last component, created in dirfd */
    const char *host; /* the agent's node, bound in a user ns */
    mode_t mode;      /* S_IF* | permissions */
    dev_t rdev;
    uid_t uid;
    gid_t gid;
};

/* mknod (or, in a user ns, an empty file with the host node bound over it), replacing what the image had. */
static int make_node(const struct rootfs_state *st, int dirfd, const struct dev_node *n, ka_err *e)
{
    if (unlinkat(dirfd, n->name, 0) < 0 && errno != ENOENT)
        return ka_fail_errno(e, errno, "remove %s", n->host);
    if (!st->ctx->in_userns) {
        if (mknodat(dirfd, n->name, n->mode, n->rdev) < 0)
            return ka_fail_errno(e, errno, "mknod %s", n->host);
        if (fchownat(dirfd, n->name, n->uid, n->gid, AT_SYMLINK_NOFOLLOW) < 0)
            return ka_fail_errno(e, errno, "chown %s", n->host);
        return 0;
    }
    int r = create_entry(dirfd, n->name, true);
    if (r < 0)
        return ka_fail_errno(e, -r, "create %s", n->host);
    cleanup_close int fd = openat(dirfd, n->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return ka_fail_errno(e, errno, "open %s", n->host);
    r = mount_fd(n->host, fd, NULL, MS_BIND, NULL);
    return r < 0 ? ka_fail_errno(e, -r, "bind %s", n->host) : 0;
}

static int dev_default_nodes(const struct rootfs_state *st, int devfd, ka_err *e)
{
    static const struct {
        const char *name;
        unsigned maj, min;
    } defs[] = {{"null", 1, 3}, {"zero", 1, 5},    {"full", 1, 7},
                {"tty", 5, 0},  {"urandom", 1, 9}, {"random", 1, 8}};
    for (size_t i = 0; i < ARRAY_SIZE(defs); i++) {
        char host[32];
        snprintf(host, sizeof(host), "/dev/%s", defs[i].name);
        struct dev_node n = {defs[i].name, host, S_IFCHR | 0666, makedev(defs[i].maj, defs[i].min), 0, 0};
        if (make_node(st, devfd, &n, e) < 0)
            return -1;
    }
    return 0;
}

static int dev_spec_node(const struct rootfs_state *st, const Grpc__LinuxDevice *d, ka_err *e)
{
    char clean[PATH_MAX];
    mode_t fmt = 0;
    if (check_device(d, clean, sizeof(clean), e) < 0)
        return -1;
    device_type(d->type, &fmt);
    char *slash = strrchr(clean, '/');
    *slash = '\0';
    cleanup_close int dirfd = resolve(st->rootfd, clean, RES_MKDIR);
    if (dirfd < 0)
        return ka_fail_errno(e, -dirfd, "resolve %s in the rootfs", clean);
    mode_t perm = d->filemode & 07777 ? d->filemode & 07777 : 0666;
    dev_t rdev = fmt == S_IFIFO ? 0 : makedev((unsigned)d->major, (unsigned)d->minor);
    struct dev_node n = {slash + 1, d->path, fmt | perm, rdev, d->uid, d->gid};
    return make_node(st, dirfd, &n, e);
}

static int dev_ptmx(int devfd, ka_err *e)
{
    if (unlinkat(devfd, "ptmx", 0) < 0 && errno != ENOENT)
        return ka_fail_errno(e, errno, "remove /dev/ptmx");
    if (symlinkat("pts/ptmx", devfd, "ptmx") < 0)
        return ka_fail_errno(e, errno, "symlink /dev/ptmx");
    return 0;
}

static int dev_nodes(const struct rootfs_state *st, int devfd, ka_err *e)
{
    const Grpc__Linux *l = st->ctx->spec->linux;
    if (dev_default_nodes(st, devfd, e) < 0)
        return -1;
    for (size_t i = 0; l && i < l->n_devices; i++)
        if (dev_spec_node(st, l->devices[i], e) < 0)
            return -1;
    return 0;
}

/* Symlinks, default and spec nodes, ptmx; nothing when /dev is a bind mount (it is the host's to manage). */
static int setup_dev(struct rootfs_state *st, ka_err *e)
{
    if (st->dev_bind)
        return 0;
    cleanup_close int devfd = resolve(st->rootfd, "/dev", RES_MKDIR);
    if (devfd < 0)
        return ka_fail_errno(e, -devfd, "resolve /dev in the rootfs");
    if (dev_symlinks(devfd, e) < 0)
        return ka_wrap(e, "/dev");
    mode_t old = umask(0);
    int rc = dev_nodes(st, devfd, e);
    umask(old);
    if (rc < 0 || dev_ptmx(devfd, e) < 0)
        return ka_wrap(e, "/dev");
    return 0;
}

int rootfs_prepare(const struct rootfs_ctx *ctx, ka_err *e)
{
    if (!ctx || !ctx->spec || !ctx->rootfs || ctx->rootfs[0] != '/')
        return ka_fail(e, KA_INVALID_ARGUMENT, "rootfs: no spec or rootfs path");
    if (set_root_propagation(ctx->spec, e) < 0 || make_parent_private(ctx->rootfs, e) < 0 ||
        bind_rootfs(ctx->rootfs, e) < 0)
        return ka_wrap(e, "rootfs");
    struct rootfs_state st = {.ctx = ctx, .rootfd = open(ctx->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC)};
    if (st.rootfd < 0)
        return ka_fail_errno(e, errno, "open rootfs %s", ctx->rootfs);
    int rc = mount_all(&st, e);
    if (rc == 0)
        rc = setup_dev(&st, e);
    close(st.rootfd);
    return rc;
}

/* ---- finish: cwd, sysctls, masked and read-only paths, read-only root ---- */

static int make_cwd(int rootfd, const Grpc__Spec *spec, ka_err *e)
{
    const char *cwd = spec->process ? spec->process->cwd : NULL;
    if (!cwd || cwd[0] != '/')
        return 0;
    int fd = resolve(rootfd, cwd, RES_MKDIR);
    if (fd < 0)
        return ka_fail_errno(e, -fd, "create cwd %s", cwd);
    close(fd);
    return 0;
}

static int open_sysctl(int sysfd, const char *key)
{
    char rel[PATH_MAX];
    snprintf(rel, sizeof(rel), "%s", key);
    for (char *p = rel; *p; p++)
        if (*p == '.')
            *p = '/';
    struct open_how how = {
        .flags = O_WRONLY | O_CLOEXEC | O_NOCTTY,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV,
    };
    int fd = (int)syscall(SYS_openat2, sysfd, rel, &how, sizeof(how));
    if (fd < 0 && errno == ENOSYS)
        fd = openat(sysfd, rel, O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
    return fd;
}

/* Written through the agent's procfs (sysctls follow the writer's namespaces, and the container's /proc may
 * be absent or made read-only below); a key the kernel lacks is skipped, as upstream does. */
static int write_sysctls(const Grpc__Spec *spec, ka_err *e)
{
    const Grpc__Linux *l = spec->linux;
    if (!l || !l->n_sysctl)
        return 0;
    cleanup_close int sysfd = open("/proc/sys", O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct statfs sfs;
    if (sysfd < 0 || fstatfs(sysfd, &sfs) < 0 || sfs.f_type != PROC_SUPER_MAGIC)
        return ka_fail(e, KA_INTERNAL, "sysctls: /proc/sys is not procfs");
    for (size_t i = 0; i < l->n_sysctl; i++) {
        const char *k = l->sysctl[i]->key, *v = l->sysctl[i]->value ? l->sysctl[i]->value : "";
        if (!sysctl_key_ok(k))
            return ka_fail(e, KA_INVALID_ARGUMENT, "invalid sysctl '%s'", k ? k : "");
        cleanup_close int fd = open_sysctl(sysfd, k);
        if (fd < 0 && errno == ENOENT) {
            log_debug("rootfs", "sysctl %s does not exist; skipped", k);
            continue;
        }
        if (fd < 0)
            return ka_fail_errno(e, errno, "open sysctl %s", k);
        if (write(fd, v, strlen(v)) < 0)
            return ka_fail_errno(e, errno, "write sysctl %s", k);
    }
    return 0;
}

/* Files get /dev/null bound over them; directories an empty read-only tmpfs (as runc; upstream skips them).
 */
static int mask_path(int rootfd, const char *path, ka_err *e)
{
    char clean[PATH_MAX];
    if (check_abs("masked path", path, clean, sizeof(clean), e) < 0)
        return -1;
    cleanup_close int fd = resolve(rootfd, clean, RES_EXISTING);
    if (fd == -ENOENT || fd == -ENOTDIR)
        return 0;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return ka_fail_errno(e, fd < 0 ? -fd : errno, "masked path %s", clean);
    int r = S_ISDIR(st.st_mode)
                ? mount_fd("tmpfs", fd, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755")
                : mount_fd("/dev/null", fd, NULL, MS_BIND, NULL);
    return r < 0 ? ka_fail_errno(e, -r, "mask %s", clean) : 0;
}

static int readonly_path(int rootfd, const char *path, ka_err *e)
{
    char clean[PATH_MAX];
    if (check_abs("readonly path", path, clean, sizeof(clean), e) < 0)
        return -1;
    cleanup_close int fd = resolve(rootfd, clean, RES_EXISTING);
    if (fd == -ENOENT || fd == -ENOTDIR)
        return 0;
    if (fd < 0)
        return ka_fail_errno(e, -fd, "readonly path %s", clean);
    char p[FD_PATH_LEN];
    fd_path(fd, p);
    if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0)
        return ka_fail_errno(e, errno, "bind %s", clean);
    return remount_path(rootfd, clean, MS_RDONLY, 0, e);
}

static int masked_and_readonly(int rootfd, const Grpc__Linux *l, ka_err *e)
{
    for (size_t i = 0; l && i < l->n_maskedpaths; i++)
        if (mask_path(rootfd, l->maskedpaths[i], e) < 0)
            return -1;
    for (size_t i = 0; l && i < l->n_readonlypaths; i++)
        if (readonly_path(rootfd, l->readonlypaths[i], e) < 0)
            return -1;
    return 0;
}

/* A spec /dev mount with "ro" was mounted rw for the nodes; make it read-only now. */
static int dev_readonly(int rootfd, const Grpc__Spec *spec, ka_err *e)
{
    struct spec_mount *sm = malloc(sizeof(*sm));
    bool ro = false;
    if (!sm)
        return ka_fail_errno(e, ENOMEM, "/dev");
    for (size_t i = 0; i < spec->n_mounts; i++)
        if (check_mount(spec->mounts[i], sm, e) == 0 && strcmp(sm->dest, "/dev") == 0)
            ro = (sm->f.set & MS_RDONLY) != 0;
    free(sm);
    return ro ? remount_path(rootfd, "/dev", MS_RDONLY, 0, e) : 0;
}

static int root_readonly(int rootfd, ka_err *e)
{
    int r = mount_fd(NULL, rootfd, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | mnt_flags_of(rootfd), NULL);
    return r < 0 ? ka_fail_errno(e, -r, "remount / read-only") : 0;
}

/* ---- finish: switching root ---- */

static int pivot_to(const char *rootfs, ka_err *e)
{
    cleanup_close int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    cleanup_close int newroot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (oldroot < 0 || newroot < 0)
        return ka_fail_errno(e, errno, "open roots");
    if (fchdir(newroot) < 0)
        return ka_fail_errno(e, errno, "chdir %s", rootfs);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return ka_fail_errno(e, errno, "pivot_root %s", rootfs);
    if (fchdir(oldroot) < 0)
        return ka_fail_errno(e, errno, "chdir old root");
    if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
        return ka_fail_errno(e, errno, "make old root slave");
    if (umount2(".", MNT_DETACH) < 0)
        return ka_fail_errno(e, errno, "detach old root");
    return 0;
}

/* Full proc/sysfs mounts outside the rootfs are detached (or covered) before the move, as runc does. */
static int hide_pseudofs(const struct mntinfo *mi, void *arg, ka_err *e)
{
    const char *rootfs = arg;
    if (strcmp(mi->root, "/") != 0 || (strcmp(mi->fstype, "proc") != 0 && strcmp(mi->fstype, "sysfs") != 0) ||
        path_under(mi->mountpoint, rootfs))
        return 0;
    if (mount(NULL, mi->mountpoint, NULL, MS_SLAVE | MS_REC, NULL) < 0)
        return errno == ENOENT ? 0 : ka_fail_errno(e, errno, "make %s slave", mi->mountpoint);
    if (umount2(mi->mountpoint, MNT_DETACH) == 0)
        return 0;
    if (errno != EINVAL && errno != EPERM)
        return ka_fail_errno(e, errno, "detach %s", mi->mountpoint);
    if (mount("tmpfs", mi->mountpoint, "tmpfs", 0, NULL) < 0)
        return ka_fail_errno(e, errno, "cover %s", mi->mountpoint);
    return 0;
}

static int move_root(const char *rootfs, ka_err *e)
{
    if (chdir(rootfs) < 0)
        return ka_fail_errno(e, errno, "chdir %s", rootfs);
    if (mountinfo_each(hide_pseudofs, (void *)rootfs, e) < 0)
        return -1;
    if (mount(rootfs, "/", NULL, MS_MOVE, NULL) < 0)
        return ka_fail_errno(e, errno, "move %s to /", rootfs);
    if (chroot(".") < 0)
        return ka_fail_errno(e, errno, "chroot %s", rootfs);
    return 0;
}

static int finish_in_rootfs(const struct rootfs_ctx *ctx, int rootfd, ka_err *e)
{
    const Grpc__Spec *spec = ctx->spec;
    if (make_cwd(rootfd, spec, e) < 0 || write_sysctls(spec, e) < 0 ||
        masked_and_readonly(rootfd, spec->linux, e) < 0 || dev_readonly(rootfd, spec, e) < 0)
        return -1;
    if (spec->root && spec->root->readonly)
        return root_readonly(rootfd, e);
    return 0;
}

/* Everything that targets paths is done before switching root, through the agent's /proc (only a trusted
 * procfs serves /proc/self/fd) and fds resolved in the rootfs; pivot_root then moves the finished tree. */
/* An explicit rootfs propagation also applies to the new / (the rootfs bind came from a private parent), as
 * runc does; recursive only for the r- words. */
static int apply_root_propagation(const Grpc__Spec *spec, ka_err *e)
{
    const char *s = spec->linux ? spec->linux->rootfspropagation : NULL;
    if (!s || !*s)
        return 0;
    const struct mnt_word *k = mnt_word_find(s, strlen(s));
    if (!k || !k->propagation)
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid rootfs propagation '%s'", s);
    if (mount(NULL, "/", NULL, k->flag, NULL) < 0)
        return ka_fail_errno(e, errno, "set propagation of the container's /");
    return 0;
}

int rootfs_finish(const struct rootfs_ctx *ctx, ka_err *e)
{
    if (!ctx || !ctx->spec || !ctx->rootfs || ctx->rootfs[0] != '/')
        return ka_fail(e, KA_INVALID_ARGUMENT, "rootfs: no spec or rootfs path");
    int rootfd = open(ctx->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return ka_fail_errno(e, errno, "open rootfs %s", ctx->rootfs);
    int rc = finish_in_rootfs(ctx, rootfd, e);
    close(rootfd);
    if (rc < 0)
        return ka_wrap(e, "rootfs");
    if ((ctx->no_pivot ? move_root(ctx->rootfs, e) : pivot_to(ctx->rootfs, e)) < 0)
        return ka_wrap(e, "rootfs");
    if (chdir("/") < 0)
        return ka_fail_errno(e, errno, "chdir /");
    if (apply_root_propagation(ctx->spec, e) < 0)
        return ka_wrap(e, "rootfs");
    umask(022);
    return 0;
}
