/* CopyFile: chunked, confined file/directory/symlink creation below the base directory (see copyfile.h). */
#include "copyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "../util/fs.h"
#include "../util/log.h"

#define SUB           "copyfile"
#define TMP_TRIES     16
#define SWEEP_EVERY   (60ull * 1000000000ull)
#define DEFAULT_DMODE 0755

struct xfer {
    char *key; /* parent "/" name, relative to the base */
    char *parent, *name;
    int dirfd, fd; /* destination directory, temp file */
    bool named;    /* tmpname exists in dirfd */
    char tmpname[NAME_MAX + 1];
    dev_t dir_dev;
    ino_t dir_ino;
    uint64_t size, high; /* expected size, bytes received without a gap */
    uint64_t last_ns;
};

struct copyfile {
    struct loop *l;
    char *base;
    uint64_t stale_ns;
    size_t max;
    bool no_tmpfile;
    size_t n;
    struct xfer **x;
    struct loop_timer timer;
};

/* ---- lexical path split ---- */

/* Next component of *s, skipping slashes and "." components; NULL at the end. */
static const char *next_comp(const char **s, size_t *len)
{
    for (;;) {
        while (**s == '/')
            (*s)++;
        if (!**s)
            return NULL;
        const char *c = *s;
        while (**s && **s != '/')
            (*s)++;
        *len = (size_t)(*s - c);
        if (!(*len == 1 && c[0] == '.'))
            return c;
    }
}

int copyfile_split(const char *base, const char *path, char **parent, char **name, ka_err *e)
{
    *parent = *name = NULL;
    if (!path || path[0] != '/')
        return ka_fail(e, KA_INVALID_ARGUMENT, "Path \"%s\" is not absolute", path ? path : "");
    if (strlen(path) >= PATH_MAX)
        return ka_fail(e, KA_INVALID_ARGUMENT, "Path is longer than %d bytes", PATH_MAX - 1);
    const char *b = base, *p = path, *cb, *cp;
    size_t lb, lp;
    while ((cb = next_comp(&b, &lb))) {
        cp = next_comp(&p, &lp);
        if (!cp || lp != lb || memcmp(cp, cb, lb) != 0)
            return ka_fail(e, KA_INVALID_ARGUMENT, "Path \"%s\" does not start with %s", path, base);
    }
    char rest[PATH_MAX];
    size_t n = 0, last = 0, ncomp = 0;
    while ((cp = next_comp(&p, &lp))) {
        last = n;
        if (n)
            rest[n++] = '/';
        memcpy(rest + n, cp, lp);
        n += lp;
        ncomp++;
    }
    rest[n] = '\0';
    if (ncomp == 0)
        return ka_fail(e, KA_INVALID_ARGUMENT, "Path \"%s\" names %s itself", path, base);
    const char *nm = rest + last + (ncomp > 1);
    if (strcmp(nm, "..") == 0)
        return ka_fail(e, KA_INVALID_ARGUMENT, "Path \"%s\" does not name a file", path);
    *name = strdup(nm);
    if (ncomp > 1) {
        rest[last] = '\0';
        *parent = strdup(rest);
    } else {
        *parent = strdup(".");
    }
    if (!*name || !*parent) {
        free(*name);
        free(*parent);
        *parent = *name = NULL;
        return ka_fail_errno(e, ENOMEM, "copy file");
    }
    return 0;
}

/* ---- confined resolution ---- */

static int open_beneath(int basefd, const char *rel, uint64_t flags, uint64_t resolve)
{
    struct open_how how = {
        .flags = flags | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | resolve,
    };
    for (int i = 0; i < 16; i++) { /* EAGAIN: a concurrent rename or mount raced a ".." lookup */
        int fd = (int)syscall(SYS_openat2, basefd, rel, &how, sizeof(how));
        if (fd >= 0 || errno != EAGAIN)
            return fd;
    }
    return -1;
}

static int resolve_fail(ka_err *e, int err, const char *rel)
{
    switch (err) {
    case EXDEV:
    case ELOOP:
        return ka_fail(e, KA_PERMISSION_DENIED,
                       "\"%s\" resolves outside the base directory (\"..\", a symlink or a magic link)", rel);
    case ENOENT:
        return ka_fail(e, KA_NOT_FOUND, "\"%s\" does not exist", rel);
    case ENOTDIR:
        return ka_fail(e, KA_FAILED_PRECONDITION, "\"%s\": a component is not a directory", rel);
    case EACCES:
        return ka_fail(e, KA_PERMISSION_DENIED, "\"%s\": permission denied", rel);
    case ENAMETOOLONG:
        return ka_fail(e, KA_INVALID_ARGUMENT, "\"%s\": name too long", rel);
    default:
        return ka_fail_errno(e, err, "open \"%s\"", rel);
    }
}

/* Create the missing directories of rel one by one; each is re-opened from the base, so a component that
 * is (or becomes) a symlink is still resolved beneath it. */
static int mkdir_beneath(int basefd, const char *rel, mode_t mode, ka_err *e)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", rel);
    int prev = basefd;
    const char *s = buf, *c;
    size_t len;
    while ((c = next_comp(&s, &len))) {
        char *end = (char *)c + len, saved = *end;
        *end = '\0';
        int fd = open_beneath(basefd, buf, O_RDONLY | O_DIRECTORY, 0);
        if (fd < 0 && errno == ENOENT) {
            if (mkdirat(prev, c, 0700) < 0 && errno != EEXIST) {
                int err = errno;
                if (prev != basefd)
                    close(prev);
                return ka_fail_errno(e, err, "mkdir \"%s\"", buf);
            }
            fd = open_beneath(basefd, buf, O_RDONLY | O_DIRECTORY, 0);
            if (fd >= 0 && fchmod(fd, mode) < 0)
                log_warn(SUB, "chmod %s: %s", buf, strerror(errno));
        }
        int err = errno;
        if (prev != basefd)
            close(prev);
        if (fd < 0)
            return resolve_fail(e, err, buf);
        prev = fd;
        *end = saved;
    }
    return prev;
}

int copyfile_open_dir(int basefd, const char *rel, bool create, mode_t mode, ka_err *e)
{
    int fd = open_beneath(basefd, rel, O_RDONLY | O_DIRECTORY, 0);
    if (fd >= 0)
        return fd;
    if (errno != ENOENT || !create)
        return resolve_fail(e, errno, rel);
    return mkdir_beneath(basefd, rel, mode, e);
}

/* The base itself is trusted configuration: created when missing. */
static int open_base(const struct copyfile *cf, ka_err *e)
{
    int fd = open(cf->base, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        if (fs_mkdir_p(cf->base, 0755, e) < 0)
            return -1;
        fd = open(cf->base, O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    if (fd < 0)
        return ka_fail_errno(e, errno, "open %s", cf->base);
    return fd;
}

static int open_parent(const struct copyfile *cf, const char *parent, uint32_t dir_mode, ka_err *e)
{
    cleanup_close int basefd = open_base(cf, e);
    if (basefd < 0)
        return -1;
    mode_t mode = dir_mode & 07777;
    return copyfile_open_dir(basefd, parent, true, mode ? mode : DEFAULT_DMODE, e);
}

/* ---- temp names ---- */

static void tmp_name(char *out, const char *name)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r ^= loop_now_ns() * 0x9e3779b97f4a7c15ull;
    snprintf(out, NAME_MAX + 1, ".%.200s.kata-copy-%016llx", name, (unsigned long long)r);
}

/* ---- transfers ---- */

static void xfer_free(struct xfer *x)
{
    if (!x)
        return;
    if (x->named && unlinkat(x->dirfd, x->tmpname, 0) < 0 && errno != ENOENT)
        log_warn(SUB, "remove %s/%s: %s", x->parent, x->tmpname, strerror(errno));
    if (x->fd >= 0)
        close(x->fd);
    if (x->dirfd >= 0)
        close(x->dirfd);
    free(x->key);
    free(x->parent);
    free(x->name);
    free(x);
}

static struct xfer *xfer_find(struct copyfile *cf, const char *key, size_t *idx)
{
    for (size_t i = 0; i < cf->n; i++) {
        if (strcmp(cf->x[i]->key, key) == 0) {
            *idx = i;
            return cf->x[i];
        }
    }
    return NULL;
}

static void xfer_remove(struct copyfile *cf, size_t idx)
{
    cf->x[idx] = cf->x[--cf->n];
    if (cf->n == 0 && cf->l)
        loop_timer_stop(cf->l, &cf->timer);
}

static int space_check(int dirfd, uint64_t size, ka_err *e)
{
    struct statfs st;
    if (size == 0 || fstatfs(dirfd, &st) < 0 || st.f_blocks == 0)
        return 0;
    uint64_t avail = (uint64_t)st.f_bavail * (uint64_t)st.f_bsize;
    if (size > avail)
        return ka_fail(e, KA_RESOURCE_EXHAUSTED, "no room for %llu bytes (%llu available)",
                       (unsigned long long)size, (unsigned long long)avail);
    return 0;
}

/* The temp file: an unnamed O_TMPFILE inode, else a named one created exclusively (never a symlink). */
static int tmp_create(const struct copyfile *cf, struct xfer *x, ka_err *e)
{
    if (!cf->no_tmpfile) {
        x->fd = openat(x->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
        if (x->fd >= 0)
            return 0;
        if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
            return ka_fail_errno(e, errno, "create a temporary file in %s", x->parent);
    }
    for (int i = 0; i < TMP_TRIES; i++) {
        tmp_name(x->tmpname, x->name);
        x->fd = openat(x->dirfd, x->tmpname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (x->fd >= 0) {
            x->named = true;
            return 0;
        }
        if (errno != EEXIST)
            break;
    }
    return ka_fail_errno(e, errno, "create a temporary file in %s", x->parent);
}

static struct xfer *xfer_start(struct copyfile *cf, const char *parent, const char *name, const char *key,
                               const struct copyfile_req *r, ka_err *e)
{
    struct xfer *x = calloc(1, sizeof(*x));
    if (!x) {
        ka_fail_errno(e, ENOMEM, "copy file");
        return NULL;
    }
    x->fd = x->dirfd = -1;
    x->size = (uint64_t)r->file_size;
    x->key = strdup(key);
    x->parent = strdup(parent);
    x->name = strdup(name);
    if (!x->key || !x->parent || !x->name) {
        xfer_free(x);
        ka_fail_errno(e, ENOMEM, "copy file");
        return NULL;
    }
    struct stat st, dst;
    x->dirfd = open_parent(cf, parent, r->dir_mode, e);
    if (x->dirfd < 0)
        goto fail;
    if (fstat(x->dirfd, &st) < 0) {
        ka_fail_errno(e, errno, "stat %s", parent);
        goto fail;
    }
    if (fstatat(x->dirfd, name, &dst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(dst.st_mode)) {
        ka_fail(e, KA_FAILED_PRECONDITION, "the destination is a directory");
        goto fail;
    }
    if (space_check(x->dirfd, x->size, e) < 0 || tmp_create(cf, x, e) < 0)
        goto fail;
    x->dir_dev = st.st_dev;
    x->dir_ino = st.st_ino;
    return x;
fail:
    xfer_free(x);
    return NULL;
}

static int write_all(struct xfer *x, const uint8_t *p, size_t len, uint64_t off, ka_err *e)
{
    while (len) {
        ssize_t n = pwrite(x->fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = n < 0 ? errno : EIO;
            if (err == ENOSPC || err == EDQUOT)
                return ka_fail(e, KA_RESOURCE_EXHAUSTED, "write: %s", strerror(err));
            return ka_fail_errno(e, err, "write");
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Give the O_TMPFILE inode a temporary name next to the destination. */
static int tmp_link(struct xfer *x, ka_err *e)
{
    for (int i = 0; i < TMP_TRIES; i++) {
        tmp_name(x->tmpname, x->name);
        int rc = linkat(x->fd, "", x->dirfd, x->tmpname, AT_EMPTY_PATH);
        if (rc < 0 && (errno == ENOENT || errno == EPERM)) { /* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH */
            char proc[64];
            snprintf(proc, sizeof(proc), "/proc/self/fd/%d", x->fd);
            rc = linkat(AT_FDCWD, proc, x->dirfd, x->tmpname, AT_SYMLINK_FOLLOW);
        }
        if (rc == 0) {
            x->named = true;
            return 0;
        }
        if (errno != EEXIST)
            break;
    }
    return ka_fail_errno(e, errno, "link the temporary file");
}

/* The parent directory must still be the one resolved beneath the base at offset 0. */
static int parent_unmoved(const struct copyfile *cf, const struct xfer *x, ka_err *e)
{
    cleanup_close int basefd = open_base(cf, e);
    if (basefd < 0)
        return -1;
    cleanup_close int fd = copyfile_open_dir(basefd, x->parent, false, 0, e);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_dev != x->dir_dev || st.st_ino != x->dir_ino)
        return ka_fail(e, KA_FAILED_PRECONDITION, "the destination directory changed during the transfer");
    return 0;
}

static int xfer_finish(const struct copyfile *cf, struct xfer *x, const struct copyfile_req *r, ka_err *e)
{
    if (parent_unmoved(cf, x, e) < 0)
        return -1;
    if (fchown(x->fd, (uid_t)r->uid, (gid_t)r->gid) < 0)
        return ka_fail_errno(e, errno, "chown");
    if (fchmod(x->fd, r->file_mode & 07777) < 0) /* after chown, which clears set-id bits */
        return ka_fail_errno(e, errno, "chmod");
    if (!x->named && tmp_link(x, e) < 0)
        return -1;
    if (renameat(x->dirfd, x->tmpname, x->dirfd, x->name) < 0)
        return errno == EISDIR || errno == ENOTEMPTY
                   ? ka_fail(e, KA_FAILED_PRECONDITION, "the destination is a directory")
                   : ka_fail_errno(e, errno, "rename into place");
    x->named = false;
    return 0;
}

static void arm_timer(struct copyfile *cf)
{
    if (cf->l && cf->n && !loop_timer_armed(&cf->timer))
        loop_timer_start(cf->l, &cf->timer, cf->stale_ns < SWEEP_EVERY ? cf->stale_ns : SWEEP_EVERY);
}

static int check_chunk(const struct copyfile_req *r, ka_err *e)
{
    if (r->file_size < 0 || (uint64_t)r->file_size > COPYFILE_MAX_SIZE)
        return ka_fail(e, KA_INVALID_ARGUMENT, "file_size %lld is out of range (0 to %llu)",
                       (long long)r->file_size, (unsigned long long)COPYFILE_MAX_SIZE);
    if (r->offset < 0 || r->len > COPYFILE_MAX_CHUNK)
        return ka_fail(e, KA_INVALID_ARGUMENT, "bad chunk: offset %lld, %zu bytes", (long long)r->offset,
                       r->len);
    if ((uint64_t)r->offset + r->len > (uint64_t)r->file_size)
        return ka_fail(e, KA_INVALID_ARGUMENT, "chunk [%lld, +%zu) ends beyond file_size %lld",
                       (long long)r->offset, r->len, (long long)r->file_size);
    return 0;
}

/* Find or start the transfer this chunk belongs to. */
static struct xfer *chunk_xfer(struct copyfile *cf, const char *parent, const char *name, const char *key,
                               const struct copyfile_req *r, ka_err *e)
{
    size_t idx;
    struct xfer *x = xfer_find(cf, key, &idx);
    if (r->offset == 0) {
        if (x) { /* a new transfer of the same path restarts it */
            xfer_remove(cf, idx);
            xfer_free(x);
        }
        bool completes = r->len == (uint64_t)r->file_size;
        if (!completes && cf->n >= cf->max && copyfile_sweep(cf, loop_now_ns()) == 0) {
            ka_fail(e, KA_RESOURCE_EXHAUSTED, "too many file transfers in progress (%zu)", cf->max);
            return NULL;
        }
        return xfer_start(cf, parent, name, key, r, e);
    }
    if (!x) {
        ka_fail(e, KA_FAILED_PRECONDITION, "no transfer in progress (transfers start at offset 0)");
        return NULL;
    }
    xfer_remove(cf, idx);
    if (x->size != (uint64_t)r->file_size) {
        ka_fail(e, KA_INVALID_ARGUMENT, "file_size changed from %llu to %lld during the transfer",
                (unsigned long long)x->size, (long long)r->file_size);
    } else if ((uint64_t)r->offset > x->high) {
        ka_fail(e, KA_FAILED_PRECONDITION, "chunk at offset %lld leaves a gap after %llu bytes",
                (long long)r->offset, (unsigned long long)x->high);
    } else {
        return x;
    }
    xfer_free(x); /* an inconsistent transfer is abandoned */
    return NULL;
}

static int file_chunk(struct copyfile *cf, const char *parent, const char *name, const struct copyfile_req *r,
                      ka_err *e)
{
    if (check_chunk(r, e) < 0)
        return -1;
    char key[PATH_MAX * 2];
    snprintf(key, sizeof(key), "%s/%s", parent, name);
    struct xfer *x = chunk_xfer(cf, parent, name, key, r, e);
    if (!x)
        return -1;
    /* x is out of the table here: it goes back only if more chunks are expected */
    if (write_all(x, r->data, r->len, (uint64_t)r->offset, e) < 0) {
        xfer_free(x);
        return -1;
    }
    if ((uint64_t)r->offset + r->len > x->high)
        x->high = (uint64_t)r->offset + r->len;
    if (x->high == x->size) {
        int rc = xfer_finish(cf, x, r, e);
        xfer_free(x);
        return rc;
    }
    x->last_ns = loop_now_ns();
    cf->x[cf->n++] = x; /* room: chunk_xfer checked it (or x came out of the table) */
    arm_timer(cf);
    return 0;
}

/* ---- directories and symlinks ---- */

static int make_dir(struct copyfile *cf, const char *parent, const char *name, const struct copyfile_req *r,
                    ka_err *e)
{
    cleanup_close int dirfd = open_parent(cf, parent, r->dir_mode, e);
    if (dirfd < 0)
        return -1;
    if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
        return ka_fail_errno(e, errno, "mkdir");
    cleanup_close int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOTDIR || errno == ELOOP
                   ? ka_fail(e, KA_ALREADY_EXISTS, "the destination exists and is not a directory")
                   : ka_fail_errno(e, errno, "open");
    if (fchown(fd, (uid_t)r->uid, (gid_t)r->gid) < 0)
        return ka_fail_errno(e, errno, "chown");
    if (fchmod(fd, r->file_mode & 07777) < 0)
        return ka_fail_errno(e, errno, "chmod");
    return 0;
}

static int make_symlink(struct copyfile *cf, const char *parent, const char *name,
                        const struct copyfile_req *r, ka_err *e)
{
    char target[PATH_MAX];
    if (r->len == 0 || r->len >= sizeof(target) || memchr(r->data, '\0', r->len))
        return ka_fail(e, KA_INVALID_ARGUMENT, "a symlink target must be 1 to %zu bytes without NUL",
                       sizeof(target) - 1);
    memcpy(target, r->data, r->len);
    target[r->len] = '\0';
    cleanup_close int dirfd = open_parent(cf, parent, r->dir_mode, e);
    if (dirfd < 0)
        return -1;
    char tmp[NAME_MAX + 1];
    int rc = -1;
    for (int i = 0; i < TMP_TRIES && rc < 0; i++) {
        tmp_name(tmp, name);
        rc = symlinkat(target, dirfd, tmp);
        if (rc < 0 && errno != EEXIST)
            break;
    }
    if (rc < 0)
        return ka_fail_errno(e, errno, "symlink");
    if (fchownat(dirfd, tmp, (uid_t)r->uid, (gid_t)r->gid, AT_SYMLINK_NOFOLLOW) < 0 ||
        renameat(dirfd, tmp, dirfd, name) < 0) {
        int err = errno;
        unlinkat(dirfd, tmp, 0);
        return ka_fail_errno(e, err, "symlink");
    }
    return 0;
}

/* ---- public ---- */

int copyfile_chunk(struct copyfile *cf, const struct copyfile_req *r, ka_err *e)
{
    cleanup_free char *parent = NULL;
    cleanup_free char *name = NULL;
    if (copyfile_split(cf->base, r->path, &parent, &name, e) < 0)
        return -1;
    int rc;
    switch (r->file_mode & S_IFMT) {
    case 0:
    case S_IFREG:
        rc = file_chunk(cf, parent, name, r, e);
        break;
    case S_IFDIR:
        rc = make_dir(cf, parent, name, r, e);
        break;
    case S_IFLNK:
        rc = make_symlink(cf, parent, name, r, e);
        break;
    default:
        rc = ka_fail(e, KA_INVALID_ARGUMENT, "file type 0%o is not supported", r->file_mode & S_IFMT);
    }
    return rc < 0 ? ka_wrap(e, "copy %s", r->path) : 0;
}

size_t copyfile_sweep(struct copyfile *cf, uint64_t now_ns)
{
    size_t dropped = 0;
    for (size_t i = 0; i < cf->n;) {
        struct xfer *x = cf->x[i];
        if (now_ns - x->last_ns < cf->stale_ns) {
            i++;
            continue;
        }
        log_info(SUB, "dropping the stale transfer of %s/%s (%llu of %llu bytes)", x->parent, x->name,
                 (unsigned long long)x->high, (unsigned long long)x->size);
        xfer_remove(cf, i);
        xfer_free(x);
        dropped++;
    }
    return dropped;
}

size_t copyfile_pending(const struct copyfile *cf)
{
    return cf->n;
}

static void on_timer(struct loop_timer *t)
{
    struct copyfile *cf = container_of(t, struct copyfile, timer);
    copyfile_sweep(cf, loop_now_ns());
    arm_timer(cf);
}

struct copyfile *copyfile_new(struct loop *l, const struct copyfile_opts *o, ka_err *e)
{
    struct copyfile *cf = calloc(1, sizeof(*cf));
    if (!cf)
        goto oom;
    cf->l = l;
    cf->stale_ns = o->stale_ns ? o->stale_ns : COPYFILE_STALE_NS;
    cf->max = o->max_transfers ? o->max_transfers : COPYFILE_MAX_TRANSFERS;
    cf->no_tmpfile = o->no_tmpfile;
    cf->base = strdup(o->base_dir);
    cf->x = calloc(cf->max, sizeof(*cf->x));
    if (!cf->base || !cf->x)
        goto oom;
    loop_timer_init(&cf->timer, on_timer);
    return cf;
oom:
    if (cf) {
        free(cf->base);
        free(cf->x);
        free(cf);
    }
    ka_fail_errno(e, ENOMEM, "copy file");
    return NULL;
}

void copyfile_free(struct copyfile *cf)
{
    if (!cf)
        return;
    if (cf->l)
        loop_timer_stop(cf->l, &cf->timer);
    for (size_t i = 0; i < cf->n; i++)
        xfer_free(cf->x[i]);
    free(cf->x);
    free(cf->base);
    free(cf);
}
